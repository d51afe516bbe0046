//! The metrics a task end carries (`Task Metrics`, `Task Executor Metrics`) as the log
//! spells them, and their flattening into the metric vector the model sums.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::model::{m, Metrics, EXECUTOR_METRICS, METRIC_COUNT};

macro_rules! metric_struct {
    ($name:ident { $($field:ident = $key:literal),* $(,)? }) => {
        #[derive(Clone, Debug, Default, Deserialize)]
        pub struct $name {
            $(#[serde(rename = $key, default)] pub $field: i64,)*
        }
    };
}

metric_struct!(InputIn { bytes = "Bytes Read", records = "Records Read" });
metric_struct!(OutputIn { bytes = "Bytes Written", records = "Records Written" });
metric_struct!(WriteIn {
    bytes = "Shuffle Bytes Written",
    time = "Shuffle Write Time",
    records = "Shuffle Records Written",
});
metric_struct!(PushIn {
    corrupt = "Corrupt Merged Block Chunks",
    fallback = "Merged Fetch Fallback Count",
    remote_blocks = "Merged Remote Blocks Fetched",
    local_blocks = "Merged Local Blocks Fetched",
    remote_chunks = "Merged Remote Chunks Fetched",
    local_chunks = "Merged Local Chunks Fetched",
    remote_bytes = "Merged Remote Bytes Read",
    local_bytes = "Merged Local Bytes Read",
    remote_reqs = "Merged Remote Requests Duration",
});

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReadIn {
    #[serde(rename = "Remote Blocks Fetched", default)]
    pub remote_blocks: i64,
    #[serde(rename = "Local Blocks Fetched", default)]
    pub local_blocks: i64,
    #[serde(rename = "Fetch Wait Time", default)]
    pub fetch_wait: i64,
    #[serde(rename = "Remote Bytes Read", default)]
    pub remote_bytes: i64,
    #[serde(rename = "Remote Bytes Read To Disk", default)]
    pub remote_to_disk: i64,
    #[serde(rename = "Local Bytes Read", default)]
    pub local_bytes: i64,
    #[serde(rename = "Total Records Read", default)]
    pub records: i64,
    #[serde(rename = "Remote Requests Duration", default)]
    pub remote_reqs: i64,
    #[serde(rename = "Push Based Shuffle", default)]
    pub push: Option<PushIn>,
}

/// `Task Metrics` of a task end.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TaskMetricsIn {
    #[serde(rename = "Executor Deserialize Time", default)]
    pub deser_time: i64,
    #[serde(rename = "Executor Deserialize CPU Time", default)]
    pub deser_cpu: i64,
    #[serde(rename = "Executor Run Time", default)]
    pub run_time: i64,
    #[serde(rename = "Executor CPU Time", default)]
    pub cpu_time: i64,
    #[serde(rename = "Peak Execution Memory", default)]
    pub peak_mem: i64,
    #[serde(rename = "Result Size", default)]
    pub result_size: i64,
    #[serde(rename = "JVM GC Time", default)]
    pub gc_time: i64,
    #[serde(rename = "Result Serialization Time", default)]
    pub result_ser: i64,
    #[serde(rename = "Memory Bytes Spilled", default)]
    pub mem_spill: i64,
    #[serde(rename = "Disk Bytes Spilled", default)]
    pub disk_spill: i64,
    #[serde(rename = "Shuffle Read Metrics", default)]
    pub read: Option<ReadIn>,
    #[serde(rename = "Shuffle Write Metrics", default)]
    pub write: Option<WriteIn>,
    #[serde(rename = "Input Metrics", default)]
    pub input: Option<InputIn>,
    #[serde(rename = "Output Metrics", default)]
    pub output: Option<OutputIn>,
}

impl TaskMetricsIn {
    pub fn to_metrics(&self) -> Metrics {
        let mut v = [0; METRIC_COUNT];
        v[m::DESER_TIME] = self.deser_time;
        v[m::DESER_CPU] = self.deser_cpu;
        v[m::RUN_TIME] = self.run_time;
        v[m::CPU_TIME] = self.cpu_time;
        v[m::RESULT_SIZE] = self.result_size;
        v[m::GC_TIME] = self.gc_time;
        v[m::RESULT_SER] = self.result_ser;
        v[m::MEM_SPILL] = self.mem_spill;
        v[m::DISK_SPILL] = self.disk_spill;
        v[m::PEAK_EXEC_MEM] = self.peak_mem;
        if let Some(i) = &self.input {
            v[m::INPUT_BYTES] = i.bytes;
            v[m::INPUT_RECORDS] = i.records;
        }
        if let Some(o) = &self.output {
            v[m::OUTPUT_BYTES] = o.bytes;
            v[m::OUTPUT_RECORDS] = o.records;
        }
        if let Some(w) = &self.write {
            v[m::SHUFFLE_WRITE_BYTES] = w.bytes;
            v[m::SHUFFLE_WRITE_RECORDS] = w.records;
            v[m::SHUFFLE_WRITE_TIME] = w.time;
        }
        if let Some(r) = &self.read {
            v[m::SR_REMOTE_BLOCKS] = r.remote_blocks;
            v[m::SR_LOCAL_BLOCKS] = r.local_blocks;
            v[m::SR_FETCH_WAIT] = r.fetch_wait;
            v[m::SR_REMOTE_BYTES] = r.remote_bytes;
            v[m::SR_REMOTE_TO_DISK] = r.remote_to_disk;
            v[m::SR_LOCAL_BYTES] = r.local_bytes;
            v[m::SR_RECORDS] = r.records;
            v[m::SR_REMOTE_REQS_DURATION] = r.remote_reqs;
            if let Some(p) = &r.push {
                let push = [
                    p.corrupt,
                    p.fallback,
                    p.remote_blocks,
                    p.local_blocks,
                    p.remote_chunks,
                    p.local_chunks,
                    p.remote_bytes,
                    p.local_bytes,
                    p.remote_reqs,
                ];
                v[m::PUSH..m::PUSH + 9].copy_from_slice(&push);
            }
        }
        Metrics { v }
    }
}

/// Executor memory metrics as logged (`Task Executor Metrics`, `Executor Metrics`): the
/// ones present, by their place in [`EXECUTOR_METRICS`].
#[derive(Clone, Debug, Default)]
pub struct PeakMetrics(pub [Option<i64>; 23]);

impl<'de> Deserialize<'de> for PeakMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PeakMetrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of executor metrics")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PeakMetrics, A::Error> {
                let mut out = PeakMetrics::default();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match EXECUTOR_METRICS.iter().position(|n| *n == k) {
                        Some(i) => out.0[i] = Some(map.next_value::<i64>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl PeakMetrics {
    /// Raises `peak` to these values (creating it, zeros, if absent: once any metrics arrived
    /// Spark reports the peaks, zeros included).
    pub fn raise(&self, peak: &mut Option<[i64; 23]>) {
        let p = peak.get_or_insert([0; 23]);
        for (slot, v) in p.iter_mut().zip(self.0.iter()) {
            if let Some(v) = v {
                if *v > *slot {
                    *slot = *v;
                }
            }
        }
    }
}
