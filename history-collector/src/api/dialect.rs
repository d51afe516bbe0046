//! Which Spark History Server the REST API answers as.
//!
//! Spark 3.5's and Spark 4's History Servers answer differently for the same event log:
//! 4 adds fields (an attempt's `logSourceName`/`logSourceFullPath`, a SQL execution's
//! `errorMessage`, `rootExecutionId` and `modifiedConfigs`, a plan node's `desc`), reports
//! two more executor memory metrics (`ConcurrentGCCount`, `ConcurrentGCTime`), redacts
//! more environment entries by default (`credentials?`-like names), and, built on Scala
//! 2.13 rather than 2.12, lists hash maps (a stage's tasks and executor summaries, its
//! accumulators, resource requests) in another order. Clients written against one of them
//! get the same bytes from this server when it is told which (`--spark-api`); Spark 4's is
//! the default.

use std::fmt;
use std::str::FromStr;

use crate::model::scala_order::ScalaVersion;

/// The History Server version answered as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Spark 3.5.x (Scala 2.12).
    Spark35,
    /// Spark 4.x (Scala 2.13).
    #[default]
    Spark4,
}

impl Dialect {
    /// What `/api/v1/version` reports.
    pub fn version(self) -> &'static str {
        match self {
            Dialect::Spark35 => "3.5.7",
            Dialect::Spark4 => "4.3.0",
        }
    }

    /// The Scala library the server's collections come from.
    pub fn scala(self) -> ScalaVersion {
        match self {
            Dialect::Spark35 => ScalaVersion::V2_12,
            Dialect::Spark4 => ScalaVersion::V2_13,
        }
    }

    /// How many of [`crate::model::EXECUTOR_METRICS`] the server knows (3.5 has no
    /// concurrent-GC metrics).
    pub fn executor_metric_count(self) -> usize {
        match self {
            Dialect::Spark35 => 21,
            Dialect::Spark4 => 23,
        }
    }

    /// Whether this is Spark 4's server (the fields only it reports).
    pub fn is_spark4(self) -> bool {
        self == Dialect::Spark4
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "3.5" | "3.5.7" | "spark-3.5" => Ok(Dialect::Spark35),
            "4" | "4.3" | "4.3.0" | "spark-4" => Ok(Dialect::Spark4),
            _ => Err(format!(
                "unknown Spark History Server version {s:?}: expected 3.5 or 4"
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Dialect::Spark35 => "3.5",
            Dialect::Spark4 => "4",
        })
    }
}
