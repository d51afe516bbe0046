//! Prometheus metrics of the shuffle service, named after Spark's own shuffle-service metrics
//! source (registered executors, open streams, block transfer rate, open-blocks latency) plus
//! errors by kind, and one counter per limit and authentication outcome.

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
    /// Requests and connections refused, by the limit or rule that refused them.
    pub refusals: Family<ErrorLabels, Counter>,
    /// Successful handshakes by protocol.
    pub auths: Family<ErrorLabels, Counter>,
    pub auth_failures: Counter,
    /// Applications whose secret was learned from their pods.
    pub secrets_known: Gauge,
    /// 1 while the registration database accepts writes.
    pub db_healthy: Gauge,
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
            refusals: Family::default(),
            auths: Family::default(),
            auth_failures: Counter::default(),
            secrets_known: Gauge::default(),
            db_healthy: {
                let g = Gauge::default();
                g.set(1);
                g
            },
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
            "Connections closed after --idle-timeout: nothing read or written, or replies not read",
            self.idle_closed.clone(),
        );
        r.register(
            "refused",
            "Requests and connections refused, by the limit or rule (reason) that refused them",
            self.refusals.clone(),
        );
        r.register(
            "authentications",
            "Connections authenticated, by protocol (sasl, sasl_auth_conf, auth_engine)",
            self.auths.clone(),
        );
        r.register(
            "authentication_failures",
            "Handshakes refused (wrong secret, unknown application, malformed)",
            self.auth_failures.clone(),
        );
        r.register(
            "secrets_learned",
            "Applications whose secret the service learned from their executor pods",
            self.secrets_known.clone(),
        );
        r.register(
            "state_db_healthy",
            "1 while the registration database accepts writes (0 after a failed write, e.g. a full disk)",
            self.db_healthy.clone(),
        );
    }

    /// Counts a refusal by the limit or rule behind it.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    pub fn authenticated(&self, protocol: &str) {
        self.auths
            .get_or_create(&vec![("protocol".to_owned(), protocol.to_owned())])
            .inc();
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }
}
