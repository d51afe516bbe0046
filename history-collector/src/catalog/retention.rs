//! Which logs to delete, as Spark's History Server cleaner (`spark.history.fs.cleaner.*`)
//! chooses them, plus a bound on total bytes:
//! - every attempt last updated longer than `max_age` ago, finished or not (Spark's
//!   `maxAge`: a driver that died without ending its log is cleaned up by age too);
//! - then, while more than `max_apps` attempts remain (Spark's `maxNum`) or they hold more
//!   than `max_bytes`, the least recently updated *finished* attempts; logs still being
//!   written are never deleted to meet a count or a size, only by age.
//!
//! The choice is a pure function of the listing; the catalog carries it out.

use std::time::Duration;

/// The retention settings; `None` is no limit of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_apps: Option<usize>,
    pub max_bytes: Option<u64>,
}

/// What retention looks at of one listed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub key: String,
    pub last_updated: i64,
    pub completed: bool,
    pub bytes: u64,
}

impl Retention {
    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.max_age.is_some() || self.max_apps.is_some() || self.max_bytes.is_some()
    }

    /// The keys of the logs to delete among `all`, at `now_ms`, oldest first.
    pub fn doomed(&self, all: &[Candidate], now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut kept: Vec<&Candidate> = Vec::with_capacity(all.len());
        let cutoff = self
            .max_age
            .map(|a| now_ms.saturating_sub(i64::try_from(a.as_millis()).unwrap_or(i64::MAX)));
        for c in all {
            match cutoff {
                Some(t) if c.last_updated < t => out.push(c),
                _ => kept.push(c),
            }
        }
        out.sort_by_key(|c| c.last_updated);
        let mut out: Vec<String> = out.into_iter().map(|c| c.key.clone()).collect();
        let mut count = kept.len();
        let mut bytes: u64 = kept.iter().map(|c| c.bytes).sum();
        let over = |count: usize, bytes: u64| {
            self.max_apps.is_some_and(|m| count > m) || self.max_bytes.is_some_and(|m| bytes > m)
        };
        if over(count, bytes) {
            let mut finished: Vec<&Candidate> = kept.into_iter().filter(|c| c.completed).collect();
            finished.sort_by(|a, b| a.last_updated.cmp(&b.last_updated).then(a.key.cmp(&b.key)));
            for c in finished {
                if !over(count, bytes) {
                    break;
                }
                count -= 1;
                bytes -= c.bytes;
                out.push(c.key.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, last_updated: i64, completed: bool, bytes: u64) -> Candidate {
        Candidate {
            key: key.into(),
            last_updated,
            completed,
            bytes,
        }
    }

    #[test]
    fn nothing_set_deletes_nothing() {
        let all = [c("a", 0, true, 1), c("b", 0, false, 1)];
        assert!(Retention::default().doomed(&all, i64::MAX).is_empty());
        assert!(!Retention::default().enabled());
    }

    #[test]
    fn age_takes_finished_and_running_alike() {
        let r = Retention {
            max_age: Some(Duration::from_millis(100)),
            ..Retention::default()
        };
        let all = [
            c("old-done", 10, true, 1),
            c("old-running", 5, false, 1),
            c("new", 950, true, 1),
        ];
        assert_eq!(r.doomed(&all, 1000), ["old-running", "old-done"]);
    }

    #[test]
    fn count_and_bytes_take_the_oldest_finished_only() {
        let all = [
            c("running-oldest", 1, false, 100),
            c("b", 3, true, 10),
            c("a", 2, true, 10),
            c("d", 5, true, 10),
            c("c", 4, true, 10),
        ];
        let by_count = Retention {
            max_apps: Some(3),
            ..Retention::default()
        };
        assert_eq!(by_count.doomed(&all, 10), ["a", "b"]);
        let by_bytes = Retention {
            max_bytes: Some(115),
            ..Retention::default()
        };
        assert_eq!(by_bytes.doomed(&all, 10), ["a", "b", "c"]);
        // the running log alone is over the bound: every finished one goes, it stays
        let tiny = Retention {
            max_bytes: Some(1),
            ..Retention::default()
        };
        assert_eq!(tiny.doomed(&all, 10), ["a", "b", "c", "d"]);
    }
}
