//! A small bounded cache of verdicts that expire (on tokens, on driver pods), so a client
//! repeating a request costs the API server nothing more until the verdict expires, and a
//! client inventing new keys cannot grow it without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Verdicts by key, each good until its deadline; at most `max` of them.
#[derive(Debug)]
pub struct Verdicts<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> Verdicts<K, V> {
    pub fn new(max: usize) -> Self {
        Verdicts {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// The verdict on `key`, if one is still good.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let m = self.map.lock().ok()?;
        m.get(key)
            .filter(|(_, until)| now < *until)
            .map(|(v, _)| v.clone())
    }

    /// Keeps `verdict` on `key` for `ttl`. When full, expired verdicts go first, and if that
    /// frees too little, all of them (a flood of new keys evicts, it does not grow).
    pub fn put(&self, key: K, verdict: V, ttl: Duration) {
        let now = Instant::now();
        let Ok(mut m) = self.map.lock() else {
            return;
        };
        if m.len() >= self.max {
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= self.max / 2 {
                m.clear();
            }
        }
        m.insert(key, (verdict, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_expire_and_stay_bounded() {
        let v: Verdicts<u32, bool> = Verdicts::new(4);
        v.put(1, true, Duration::from_secs(60));
        v.put(2, false, Duration::ZERO);
        assert_eq!(v.get(&1), Some(true));
        assert_eq!(v.get(&2), None);
        for k in 10..100 {
            v.put(k, true, Duration::from_secs(60));
        }
        assert!(v.map.lock().unwrap().len() <= 4);
    }
}
