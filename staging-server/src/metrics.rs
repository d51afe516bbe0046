//! The staging server's Prometheus metrics: bundles held, bytes stored, uploads, downloads,
//! cleanups, and the WebHDFS files and their deduplicated contents.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Default)]
pub struct Metrics {
    pub bundles: Gauge,
    pub bytes_stored: Gauge,
    pub uploads: Family<ResultLabel, Counter>,
    pub downloads: Family<KindLabel, Counter>,
    pub cleanups: Family<ReasonLabel, Counter>,
    pub webhdfs_files: Gauge,
    pub blobs: Gauge,
    pub blob_bytes: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("staging");
        r.register("bundles", "Bundles currently stored", self.bundles.clone());
        r.register(
            "stored_bytes",
            "Bytes stored (archives plus individual files)",
            self.bytes_stored.clone(),
        );
        r.register("uploads", "Upload attempts by result", self.uploads.clone());
        r.register(
            "downloads",
            "Successful downloads by kind (bundle, file)",
            self.downloads.clone(),
        );
        r.register(
            "cleanups",
            "Bundles and WebHDFS uploads deleted by the cleaner, by reason",
            self.cleanups.clone(),
        );
        r.register(
            "webhdfs_files",
            "Files stored through WebHDFS",
            self.webhdfs_files.clone(),
        );
        r.register(
            "blobs",
            "Distinct file contents stored for WebHDFS files (identical files share one)",
            self.blobs.clone(),
        );
        r.register(
            "blob_bytes",
            "Bytes of those contents",
            self.blob_bytes.clone(),
        );
    }

    pub fn upload_result(&self, result: &str) {
        self.uploads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn download(&self, kind: &str) {
        self.downloads
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn cleanup(&self, reason: &str) {
        self.cleanups
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn bundle_added(&self, bytes: u64) {
        self.bundles.inc();
        self.bytes_stored.inc_by(bytes as i64);
    }
}
