//! The JSON documents of the REST API, field for field and in field order as Spark's
//! `status/api/v1` classes serialise them (Jackson, `Option` fields left out when empty),
//! and a writer that lays them out the way Jackson's default pretty printer does.

use std::io;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::dialect::Dialect;
use crate::model::accumulables::AccumulableInfo;
use crate::model::scala_order::{immutable_order_of, java_string_hash, spark4_json_map_order};
use crate::model::{Environment, Executor, Job, EXECUTOR_METRICS};

/// Spark's REST date format: `yyyy-MM-dd'T'HH:mm:ss.SSS'GMT'`.
pub fn date(ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp_millis(ms) {
        // the common case written directly (a list of 100,000 applications has 300,000)
        Some(t) if (0..=9999).contains(&t.year()) => {
            let mut b = *b"0000-00-00T00:00:00.000GMT";
            let mut put = |at: usize, width: usize, mut v: u32| {
                for i in (at..at + width).rev() {
                    b[i] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(0, 4, t.year() as u32);
            put(5, 2, t.month());
            put(8, 2, t.day());
            put(11, 2, t.hour());
            put(14, 2, t.minute());
            put(17, 2, t.second());
            put(20, 3, t.timestamp_subsec_millis());
            b.iter().map(|&c| c as char).collect()
        }
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fGMT").to_string(),
        None => String::new(),
    }
}

/// Serialises like Jackson's `DefaultPrettyPrinter`: objects one field per line indented by
/// two spaces, arrays inline (`[ a, b ]`), `" : "` between key and value.
pub fn to_jackson<T: Serialize>(v: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    to_jackson_into(&mut out, v)?;
    Ok(out)
}

/// [`to_jackson`], appended to `out`.
pub fn to_jackson_into<T: Serialize>(out: &mut Vec<u8>, v: &T) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, JacksonFormatter::default());
    v.serialize(&mut ser)
}

#[derive(Default)]
struct JacksonFormatter {
    /// Object nesting depth (arrays do not indent).
    depth: usize,
    /// For each open container: has it had an element yet.
    nonempty: Vec<bool>,
}

impl JacksonFormatter {
    fn indent<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for JacksonFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.nonempty.push(false);
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.nonempty.pop();
        w.write_all(b" ]")
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if let Some(last) = self.nonempty.last_mut() {
            *last = true;
        }
        w.write_all(if first { b" " } else { b", " })
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.nonempty.push(false);
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        if self.nonempty.pop().unwrap_or(false) {
            self.indent(w)?;
            w.write_all(b"}")
        } else {
            w.write_all(b" }")
        }
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if let Some(last) = self.nonempty.last_mut() {
            *last = true;
        }
        if !first {
            w.write_all(b",")?;
        }
        self.indent(w)
    }
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: f64) -> io::Result<()> {
        if v.is_finite() {
            w.write_all(java_double(v).as_bytes())
        } else {
            // Jackson quotes what is not a JSON number (QUOTE_NON_NUMERIC_NUMBERS)
            write!(w, "\"{}\"", java_double(v))
        }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }
}

/// A double as Java's `Double.toString` (what Jackson writes): `1656.0`, `5.7519355E7`.
pub use crate::model::accumulables::java_double;

/// A JSON object whose keys keep their order.
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
pub struct VersionInfo {
    pub spark: String,
}

#[derive(Serialize)]
pub struct ApplicationInfo {
    pub id: String,
    pub name: String,
    pub attempts: Vec<AttemptInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
    pub start_time: String,
    pub end_time: String,
    pub last_updated: String,
    pub duration: i64,
    pub spark_user: String,
    pub completed: bool,
    pub app_spark_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Spark 4 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_source_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_source_full_path: Option<String>,
    pub start_time_epoch: i64,
    pub end_time_epoch: i64,
    pub last_updated_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub job_id: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    pub stage_ids: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_group: Option<String>,
    pub job_tags: Vec<String>,
    pub status: &'static str,
    pub num_tasks: i64,
    pub num_active_tasks: i64,
    pub num_completed_tasks: i64,
    pub num_skipped_tasks: i64,
    pub num_failed_tasks: i64,
    pub num_killed_tasks: i64,
    pub num_completed_indices: i64,
    pub num_active_stages: i64,
    pub num_completed_stages: i64,
    pub num_skipped_stages: i64,
    pub num_failed_stages: i64,
    pub killed_tasks_summary: Ordered<i64>,
}

pub fn job_data(j: &Job) -> JobData {
    JobData {
        job_id: j.id,
        name: j.name.clone(),
        description: j.description.clone(),
        submission_time: j.submission_time.map(date),
        completion_time: j.completion_time.map(date),
        stage_ids: j.stage_ids.clone(),
        job_group: j.job_group.clone(),
        job_tags: j.job_tags.clone(),
        status: j.status.as_str(),
        num_tasks: j.num_tasks,
        num_active_tasks: j.active_tasks,
        num_completed_tasks: j.completed_tasks,
        num_skipped_tasks: j.skipped_tasks,
        num_failed_tasks: j.failed_tasks,
        num_killed_tasks: j.killed_tasks,
        num_completed_indices: j.completed_indices.len() as i64,
        num_active_stages: j.active_stages,
        num_completed_stages: j.completed_stages.len() as i64,
        num_skipped_stages: j.skipped_stages.len() as i64,
        num_failed_stages: j.failed_stages,
        killed_tasks_summary: Ordered(j.killed_summary.clone()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryMetrics {
    pub used_on_heap_storage_memory: i64,
    pub used_off_heap_storage_memory: i64,
    pub total_on_heap_storage_memory: i64,
    pub total_off_heap_storage_memory: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorSummary {
    pub id: String,
    pub host_port: String,
    pub is_active: bool,
    pub rdd_blocks: i64,
    pub memory_used: i64,
    pub disk_used: i64,
    pub total_cores: i64,
    pub max_tasks: i64,
    pub active_tasks: i64,
    pub failed_tasks: i64,
    pub completed_tasks: i64,
    pub total_tasks: i64,
    pub total_duration: i64,
    #[serde(rename = "totalGCTime")]
    pub total_gc_time: i64,
    pub total_input_bytes: i64,
    pub total_shuffle_read: i64,
    pub total_shuffle_write: i64,
    pub is_blacklisted: bool,
    pub max_memory: i64,
    pub add_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_reason: Option<String>,
    pub executor_logs: Ordered<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_metrics: Option<MemoryMetrics>,
    pub blacklisted_in_stages: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_metrics: Option<Ordered<i64>>,
    pub attributes: Ordered<String>,
    pub resources: Value,
    pub resource_profile_id: i64,
    pub is_excluded: bool,
    pub excluded_in_stages: Vec<i64>,
}

/// `app_run_ms`: how long the application has run (to its end, or to the last update while
/// it runs); the History Server reports that as the driver's task time, and the driver's
/// GC time from its memory metrics.
pub fn executor_summary(e: &Executor, app_run_ms: i64, dialect: Dialect) -> ExecutorSummary {
    let is_driver = e.id == "driver";
    ExecutorSummary {
        id: e.id.clone(),
        host_port: e
            .host_port
            .clone()
            .or_else(|| e.host.clone())
            .unwrap_or_default(),
        is_active: e.is_active,
        rdd_blocks: e.rdd_blocks,
        memory_used: e.memory_used,
        disk_used: e.disk_used,
        total_cores: e.total_cores,
        max_tasks: e.max_tasks,
        active_tasks: e.active_tasks,
        failed_tasks: e.failed_tasks,
        completed_tasks: e.completed_tasks,
        total_tasks: e.total_tasks,
        total_duration: if is_driver {
            app_run_ms
        } else {
            e.total_duration
        },
        total_gc_time: match (is_driver, &e.peak) {
            (true, Some(p)) => p[20],
            _ => e.total_gc_time,
        },
        total_input_bytes: e.total_input_bytes,
        total_shuffle_read: e.total_shuffle_read,
        total_shuffle_write: e.total_shuffle_write,
        is_blacklisted: e.is_excluded,
        max_memory: e.max_memory,
        add_time: date(e.add_time),
        remove_time: e.remove_time.map(date),
        remove_reason: e.remove_reason.clone(),
        executor_logs: scala_map(&e.executor_logs, dialect),
        memory_metrics: (e.total_on_heap >= 0).then_some(MemoryMetrics {
            used_on_heap_storage_memory: e.used_on_heap,
            used_off_heap_storage_memory: e.used_off_heap,
            total_on_heap_storage_memory: e.total_on_heap,
            total_off_heap_storage_memory: e.total_off_heap,
        }),
        blacklisted_in_stages: e.excluded_in_stages.iter().copied().collect(),
        peak_memory_metrics: e.peak.as_ref().map(|p| peak_map(p, dialect)),
        attributes: scala_map(&e.attributes, dialect),
        resources: e.resources.clone(),
        resource_profile_id: e.resource_profile_id,
        is_excluded: e.is_excluded,
        excluded_in_stages: e.excluded_in_stages.iter().copied().collect(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub java_version: Option<String>,
    pub java_home: Option<String>,
    pub scala_version: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentInfo {
    pub runtime: RuntimeInfo,
    pub spark_properties: Vec<(String, String)>,
    pub hadoop_properties: Vec<(String, String)>,
    pub system_properties: Vec<(String, String)>,
    pub metrics_properties: Vec<(String, String)>,
    pub classpath_entries: Vec<(String, String)>,
    pub resource_profiles: Vec<ResourceProfileInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProfileInfo {
    pub id: i64,
    pub executor_resources: Ordered<ExecutorResource>,
    pub task_resources: Ordered<TaskResource>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorResource {
    pub resource_name: String,
    pub amount: i64,
    pub discovery_script: String,
    pub vendor: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResource {
    pub resource_name: String,
    pub amount: f64,
}

/// Spark keeps a resource profile's requests in a hash map; for the built-in names this is
/// the order it prints them in.
fn resource_rank(name: &str) -> usize {
    ["memory", "offHeap", "cores", "pyspark.memory"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or(usize::MAX)
}

/// Spark 4's default `spark.redaction.regex`,
/// `(?i)secret|password|token|access[.]?key|credential`, applied to keys and values.
pub fn is_sensitive(text: &str) -> bool {
    is_sensitive_for(text, Dialect::Spark4)
}

/// The default `spark.redaction.regex` of a server: Spark 3.5's lacks `credential`.
pub fn is_sensitive_for(text: &str, dialect: Dialect) -> bool {
    let t = text.to_ascii_lowercase();
    ["secret", "password", "token", "accesskey", "access.key"]
        .iter()
        .any(|w| t.contains(w))
        || (dialect.is_spark4() && t.contains("credential"))
}

const REDACTED: &str = "*********(redacted)";

fn redact(kvs: &[(String, String)], dialect: Dialect) -> Vec<(String, String)> {
    kvs.iter()
        .map(|(k, v)| {
            if is_sensitive_for(k, dialect) || is_sensitive_for(v, dialect) {
                (k.clone(), REDACTED.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// The environment as Spark 4's server shows it.
pub fn environment(env: &Environment, app: &crate::model::App) -> EnvironmentInfo {
    environment_for(env, app, Dialect::Spark4)
}

/// The environment as `dialect`'s server shows it (redaction, resource order).
pub fn environment_for(
    env: &Environment,
    app: &crate::model::App,
    dialect: Dialect,
) -> EnvironmentInfo {
    let profiles = app
        .resource_profiles
        .iter()
        .map(|p| {
            let mut ex: Vec<(String, ExecutorResource)> = p
                .executor
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                ExecutorResource {
                                    resource_name: v["Resource Name"]
                                        .as_str()
                                        .unwrap_or(k)
                                        .to_string(),
                                    amount: v["Amount"].as_i64().unwrap_or(0),
                                    discovery_script: v["Discovery Script"]
                                        .as_str()
                                        .unwrap_or("")
                                        .to_string(),
                                    vendor: v["Vendor"].as_str().unwrap_or("").to_string(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            match dialect {
                Dialect::Spark4 => ex.sort_by_key(|(k, _)| resource_rank(k)),
                // Spark 3.5 builds an immutable map in the log's order
                Dialect::Spark35 => {
                    let hashes: Vec<i32> = ex.iter().map(|(k, _)| java_string_hash(k)).collect();
                    let mut slots: Vec<Option<(String, ExecutorResource)>> =
                        ex.into_iter().map(Some).collect();
                    ex = immutable_order_of(&hashes, dialect.scala())
                        .into_iter()
                        .filter_map(|i| slots[i].take())
                        .collect();
                }
            }
            let task = p
                .task
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                TaskResource {
                                    resource_name: v["Resource Name"]
                                        .as_str()
                                        .unwrap_or(k)
                                        .to_string(),
                                    amount: v["Amount"].as_f64().unwrap_or(0.0),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            ResourceProfileInfo {
                id: p.id,
                executor_resources: Ordered(ex),
                task_resources: Ordered(task),
            }
        })
        .collect();
    EnvironmentInfo {
        runtime: RuntimeInfo {
            java_version: env.java_version.clone(),
            java_home: env.java_home.clone(),
            scala_version: env.scala_version.clone(),
        },
        spark_properties: redact(&env.spark, dialect),
        hadoop_properties: redact(&env.hadoop, dialect),
        system_properties: redact(&env.system, dialect),
        metrics_properties: redact(&env.metrics, dialect),
        classpath_entries: env.classpath.clone(),
        resource_profiles: profiles,
    }
}

/// Executor memory metrics by name, as many as the server knows.
pub fn peak_map(p: &[i64; 23], dialect: Dialect) -> Ordered<i64> {
    Ordered(
        EXECUTOR_METRICS
            .iter()
            .zip(p.iter())
            .take(dialect.executor_metric_count())
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    )
}

/// A string map Spark's `JsonProtocol.mapFromJson` reads (an executor's log URLs and
/// attributes), in the order the server lists it: Spark 3.5 keeps the log's order up to
/// four entries, Spark 4 goes through a hash set (see [`spark4_json_map_order`]); beyond
/// four, Scala's immutable hash order.
pub fn scala_map(pairs: &[(String, String)], dialect: Dialect) -> Ordered<String> {
    let order = match dialect {
        Dialect::Spark4 => {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            spark4_json_map_order(&refs)
        }
        Dialect::Spark35 => {
            let hashes: Vec<i32> = pairs.iter().map(|(k, _)| java_string_hash(k)).collect();
            immutable_order_of(&hashes, dialect.scala())
        }
    };
    Ordered(order.into_iter().map(|i| pairs[i].clone()).collect())
}

/// Spark's `v1.AccumulableInfo` (`name` and `value` left out when null).
#[derive(Serialize)]
pub struct AccumulableData {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

pub fn accumulable_data(a: &AccumulableInfo) -> AccumulableData {
    AccumulableData {
        id: a.id,
        name: a.name.clone(),
        update: a.update.clone(),
        value: a.value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_chrono_formats_them() {
        let slow = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fGMT").to_string())
                .unwrap_or_default()
        };
        for ms in [
            0,
            1,
            -1,
            999,
            1_796_394_026_437,
            -62_167_219_200_001,
            253_402_300_799_999,
            253_402_300_800_000,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(date(ms), slow(ms), "{ms}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = (x % 400_000_000_000_000) as i64 - 100_000_000_000_000;
            assert_eq!(date(ms), slow(ms), "{ms}");
        }
    }

    #[test]
    fn doubles_as_java_prints_them() {
        assert_eq!(java_double(1656.0), "1656.0");
        assert_eq!(java_double(0.05), "0.05");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(57519355.0), "5.7519355E7");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(0.0001), "1.0E-4");
    }

    #[test]
    fn dates_use_spark_format() {
        assert_eq!(date(1795629768301), "2026-11-25T18:02:48.301GMT");
        assert_eq!(date(-1), "1969-12-31T23:59:59.999GMT");
    }

    #[test]
    fn layout_matches_jackson_pretty_printer() {
        let v = serde_json::json!([{"a": 1, "b": [1, 2], "c": {}, "d": []}]);
        let got = String::from_utf8(to_jackson(&v).unwrap()).unwrap();
        assert_eq!(
            got,
            "[ {\n  \"a\" : 1,\n  \"b\" : [ 1, 2 ],\n  \"c\" : { },\n  \"d\" : [ ]\n} ]"
        );
    }
}
