//! Exclude-on-failure (formerly "blacklisting"), as Spark's `AppStatusListener` records it:
//! which executors are excluded for the application (`isExcluded`, `isBlacklisted`), for
//! which running stages (`excludedInStages`, `blacklistedInStages`), and which executors a
//! stage attempt excludes (its executor summaries' `isExcludedForStage`).
//!
//! Spark logs these events under their class names (`JsonProtocol` has no short name for
//! them), and 3.x logs each twice, once under the old "Blacklisted" name; a short name is
//! not a class, so Spark's History Server skips such a line, and so does this. Only live
//! executors and live stage attempts are touched: an executor's stage exclusion lasts until
//! the stage completes; a node's covers the executors known on that host then (never the
//! driver).

use serde_json::Value;

use super::App;

const PREFIX: &str = "org.apache.spark.scheduler.SparkListener";

/// What an exclusion event does.
#[derive(Debug, PartialEq, Eq)]
enum Change<'a> {
    Executor(&'a str, bool),
    Node(&'a str, bool),
    ExecutorForStage(&'a str, (i64, i64)),
    NodeForStage(&'a str, (i64, i64)),
}

/// Whether `kind` (an event's `Event` field) is one of the exclusion events.
pub fn is_exclusion_event(kind: &str) -> bool {
    kind.strip_prefix(PREFIX)
        .is_some_and(|k| k.starts_with("Executor") || k.starts_with("Node"))
        && (kind.contains("xclude") || kind.contains("lacklist"))
}

fn change<'a>(kind: &str, ev: &'a Value) -> Option<Change<'a>> {
    let name = kind.strip_prefix(PREFIX)?;
    let text = |k: &str| ev.get(k).and_then(Value::as_str);
    let stage = || {
        Some((
            ev.get("stageId")?.as_i64()?,
            ev.get("stageAttemptId")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        ))
    };
    Some(match name {
        "ExecutorExcluded" | "ExecutorBlacklisted" => Change::Executor(text("executorId")?, true),
        "ExecutorUnexcluded" | "ExecutorUnblacklisted" => {
            Change::Executor(text("executorId")?, false)
        }
        "NodeExcluded" | "NodeBlacklisted" => Change::Node(text("hostId")?, true),
        "NodeUnexcluded" | "NodeUnblacklisted" => Change::Node(text("hostId")?, false),
        "ExecutorExcludedForStage" | "ExecutorBlacklistedForStage" => {
            Change::ExecutorForStage(text("executorId")?, stage()?)
        }
        "NodeExcludedForStage" | "NodeBlacklistedForStage" => {
            Change::NodeForStage(text("hostId")?, stage()?)
        }
        _ => return None,
    })
}

impl App {
    /// Applies one exclusion event (see [`is_exclusion_event`]).
    pub(super) fn exclusion_event(&mut self, kind: &str, ev: &Value) {
        match change(kind, ev) {
            Some(Change::Executor(id, on)) => {
                if let Some(e) = self.executors.get_mut(id).filter(|e| e.is_active) {
                    e.is_excluded = on;
                }
            }
            Some(Change::Node(host, on)) => {
                for e in self.executors.values_mut() {
                    if e.is_active && e.id != "driver" && e.hostname() == Some(host) {
                        e.is_excluded = on;
                    }
                }
            }
            Some(Change::ExecutorForStage(id, stage)) => {
                self.exclude_for_stage(stage, &[id.to_string()]);
            }
            Some(Change::NodeForStage(host, stage)) => {
                // the stage's side compares the executor's host as added, the executors'
                // side its host name (from the block manager's address when not added)
                let ids: Vec<String> = self
                    .executors
                    .values()
                    .filter(|e| e.is_active && e.id != "driver" && e.host.as_deref() == Some(host))
                    .map(|e| e.id.clone())
                    .collect();
                self.exclude_stage_executors(stage, &ids);
                for e in self.executors.values_mut() {
                    if e.is_active && e.id != "driver" && e.hostname() == Some(host) {
                        e.excluded_in_stages.insert(stage.0);
                    }
                }
            }
            None => {}
        }
    }

    fn exclude_for_stage(&mut self, stage: (i64, i64), ids: &[String]) {
        self.exclude_stage_executors(stage, ids);
        for id in ids {
            if let Some(e) = self.executors.get_mut(id).filter(|e| e.is_active) {
                e.excluded_in_stages.insert(stage.0);
            }
        }
    }

    /// Marks `ids` excluded in a live stage attempt (their summaries created if need be).
    fn exclude_stage_executors(&mut self, stage: (i64, i64), ids: &[String]) {
        let Some(st) = self.stages.get_mut(&stage).filter(|s| s.live) else {
            return;
        };
        let sums = self.tasks.exec_summaries.entry(stage).or_default();
        for id in ids {
            sums.entry(id.clone()).or_default().is_excluded = true;
            st.excluded_executors.insert(id.clone());
        }
    }

    /// A completed stage attempt no longer excludes its executors from anything.
    pub(super) fn stage_exclusions_end(&mut self, stage: (i64, i64)) {
        let Some(st) = self.stages.get(&stage) else {
            return;
        };
        for id in &st.excluded_executors {
            if let Some(e) = self.executors.get_mut(id).filter(|e| e.is_active) {
                e.excluded_in_stages.remove(&stage.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_class_names_are_exclusion_events() {
        assert!(is_exclusion_event(
            "org.apache.spark.scheduler.SparkListenerExecutorExcludedForStage"
        ));
        assert!(is_exclusion_event(
            "org.apache.spark.scheduler.SparkListenerNodeBlacklisted"
        ));
        assert!(!is_exclusion_event("SparkListenerExecutorExcluded"));
        assert!(!is_exclusion_event(
            "org.apache.spark.scheduler.SparkListenerExecutorAdded"
        ));
        let ev: Value = serde_json::json!({"executorId": "3", "stageId": 2, "stageAttemptId": 1});
        assert_eq!(
            change(
                "org.apache.spark.scheduler.SparkListenerExecutorBlacklistedForStage",
                &ev
            ),
            Some(Change::ExecutorForStage("3", (2, 1)))
        );
    }
}
