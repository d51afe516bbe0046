//! Structured logging through `tracing`, human-readable or JSON, and the settings every
//! daemon shares (log format and level, shutdown deadline).

use std::time::Duration;

use tracing_subscriber::{fmt, EnvFilter};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// Settings every daemon has; flattened into each daemon's own arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// Log format.
    #[arg(long, env = "SIDECARS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `debug,hyper=warn`).
    #[arg(long, env = "SIDECARS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// On SIGTERM, how long in-flight work may take before the daemon exits anyway.
    #[arg(long, env = "SIDECARS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = crate::config::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Installs the global subscriber. Fails if the filter does not parse.
pub fn init(args: &CommonArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level `{}`: {e}", args.log_level))?;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    res.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
