//! Prometheus metrics of the shuffle service, named after Spark's own shuffle-service metrics
//! source (registered executors, open streams, block transfer rate, open-blocks latency) plus
//! errors by kind.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub type ErrorLabels = Vec<(String, String)>;

#[derive(Clone)]
pub struct Metrics {
    pub registered_executors: Gauge,
    pub open_streams: Gauge,
    pub connections: Gauge,
    pub registrations: Counter,
    pub blocks_sent: Counter,
    pub bytes_sent: Counter,
    pub open_blocks_latency: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    pub apps_removed: Counter,
    pub idle_closed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            registered_executors: Gauge::default(),
            open_streams: Gauge::default(),
            connections: Gauge::default(),
            registrations: Counter::default(),
            blocks_sent: Counter::default(),
            bytes_sent: Counter::default(),
            open_blocks_latency: Histogram::new(exponential_buckets(0.000_05, 4.0, 10)),
            errors: Family::default(),
            apps_removed: Counter::default(),
            idle_closed: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("shuffle");
        r.register(
            "registered_executors",
            "Executors currently registered with the service",
            self.registered_executors.clone(),
        );
        r.register(
            "open_streams",
            "Fetch streams opened and not yet fully read",
            self.open_streams.clone(),
        );
        r.register(
            "connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "registrations",
            "RegisterExecutor requests accepted",
            self.registrations.clone(),
        );
        r.register(
            "blocks_sent",
            "Blocks (chunks and streams) sent",
            self.blocks_sent.clone(),
        );
        r.register("sent_bytes", "Block bytes sent", self.bytes_sent.clone());
        r.register(
            "open_blocks_latency_seconds",
            "Time to answer OpenBlocks and FetchShuffleBlocks",
            self.open_blocks_latency.clone(),
        );
        r.register(
            "errors",
            "Failures answered or connections closed, by kind",
            self.errors.clone(),
        );
        r.register(
            "apps_removed",
            "Applications whose registrations and files were removed",
            self.apps_removed.clone(),
        );
        r.register(
            "idle_connections_closed",
            "Connections closed after --idle-timeout with nothing pending",
            self.idle_closed.clone(),
        );
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }
}
