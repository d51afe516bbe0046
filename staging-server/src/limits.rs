//! What one client may make the server spend: uploads per credential (or per client address,
//! for the unauthenticated v0 API) per minute, failed authentication attempts per address per
//! minute, and bytes stored per namespace.
//!
//! Both are kept in memory. The namespace usage is recomputed from the store by every cleanup
//! pass (so replicas sharing a bucket converge, and a restart starts from the truth), and
//! charged as uploads arrive in between, so a burst of uploads cannot overshoot the quota by
//! more than what is in flight on other replicas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Events per key per minute, in fixed one-minute windows.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u64,
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Keys kept before old windows are pruned.
const MAX_KEYS: usize = 10_000;

impl RateLimiter {
    /// `per_minute` 0 means no limit.
    pub fn new(per_minute: u64) -> Self {
        Self {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> u64 {
        self.per_minute
    }

    /// Counts one event for `key`; `Err(seconds)` (until the window ends) when the key has
    /// used up its minute.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_KEYS {
            w.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
        }
        let entry = w.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0).as_secs() >= 60 {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_minute {
            let left = 60u64.saturating_sub(now.duration_since(entry.0).as_secs());
            return Err(left.max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Bytes stored per namespace, against a quota.
#[derive(Debug)]
pub struct Usage {
    quota: u64,
    state: Mutex<UsageState>,
}

#[derive(Debug, Default)]
struct UsageState {
    /// As counted by the last cleanup pass, plus uploads finished since.
    stored: HashMap<String, u64>,
    /// Charged by uploads still in flight.
    inflight: HashMap<String, u64>,
}

/// A refused charge: the namespace would go over its quota.
#[derive(Debug, thiserror::Error)]
#[error("namespace `{namespace}` would exceed its quota of {quota} bytes (--namespace-quota; {used} bytes stored or being uploaded)")]
pub struct QuotaExceeded {
    pub namespace: String,
    pub quota: u64,
    pub used: u64,
}

impl Usage {
    /// `quota` 0 means no limit.
    pub fn new(quota: u64) -> Self {
        Self {
            quota,
            state: Mutex::default(),
        }
    }

    /// Charges `bytes` of an upload in flight to `namespace`, if that keeps it within quota.
    pub fn charge(&self, namespace: &str, bytes: u64) -> Result<(), QuotaExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let used = s.stored.get(namespace).copied().unwrap_or(0)
            + s.inflight.get(namespace).copied().unwrap_or(0);
        if self.quota > 0 && used.saturating_add(bytes) > self.quota {
            return Err(QuotaExceeded {
                namespace: namespace.to_string(),
                quota: self.quota,
                used,
            });
        }
        *s.inflight.entry(namespace.to_string()).or_default() += bytes;
        Ok(())
    }

    /// Ends an upload that charged `charged` bytes: they move to stored when `kept` is the
    /// number of bytes it now occupies, and are given back otherwise.
    pub fn settle(&self, namespace: &str, charged: u64, kept: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = s.inflight.get_mut(namespace) {
            *v = v.saturating_sub(charged);
        }
        if kept > 0 {
            *s.stored.entry(namespace.to_string()).or_default() += kept;
        }
    }

    /// Takes `bytes` off a namespace (a deletion).
    pub fn release(&self, namespace: &str, bytes: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = s.stored.get_mut(namespace) {
            *v = v.saturating_sub(bytes);
        }
    }

    /// Replaces the stored bytes with a cleanup pass's count.
    pub fn set_stored(&self, stored: HashMap<String, u64>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stored = stored;
    }

    pub fn stored(&self, namespace: &str) -> u64 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.stored.get(namespace).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_per_key() {
        let r = RateLimiter::new(3);
        for _ in 0..3 {
            r.check("a").unwrap();
        }
        let wait = r.check("a").unwrap_err();
        assert!((1..=60).contains(&wait));
        r.check("b").unwrap();
        assert!(RateLimiter::new(0).check("a").is_ok());
    }

    #[test]
    fn quota_counts_inflight_and_stored() {
        let u = Usage::new(100);
        u.charge("ns", 60).unwrap();
        let e = u.charge("ns", 50).unwrap_err();
        assert_eq!((e.quota, e.used), (100, 60));
        assert!(!e.to_string().contains("50"), "{e}");
        u.settle("ns", 60, 60);
        assert_eq!(u.stored("ns"), 60);
        u.charge("ns", 40).unwrap();
        u.settle("ns", 40, 0);
        u.charge("other", 100).unwrap();
        u.release("ns", 60);
        u.charge("ns", 100).unwrap();
    }
}
