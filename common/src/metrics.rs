//! Process-level metrics every daemon exports next to its own: resident memory, CPU time
//! and open file descriptors, read from /proc at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // fields after the parenthesised command name; utime/stime are 14th/15th, rss the 24th
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = 100.0; // USER_HZ is 100 on every Linux we run on
        let page = 4096u64;
        let cpu = (num(11) + num(12)) as f64 / ticks;
        let rss = num(21) * page;
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);

        let c = ConstCounter::new(cpu);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent",
            None,
            c.metric_type(),
        )?)?;
        let g = ConstGauge::new(rss as i64);
        g.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(fds as i64);
        g.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

pub(crate) fn register_process_metrics(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}
