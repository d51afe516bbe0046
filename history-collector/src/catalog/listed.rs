//! The listed logs by name: a set of entries keyed by their own [`Entry::key`], so each
//! name is held once (at 100,000 logs a map from a second copy of every name to its entry
//! costs a few megabytes more).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::Entry;

/// An entry, hashed and compared by its key.
#[derive(Debug)]
struct Keyed(Arc<Entry>);

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // as `str` hashes, so that a set of these is looked up by `&str`
        self.0.key.as_str().hash(state)
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Keyed {}

impl Borrow<str> for Keyed {
    fn borrow(&self) -> &str {
        self.0.key.as_str()
    }
}

/// Every listed log's entry, by its key.
#[derive(Debug, Default)]
pub struct Listed(HashSet<Keyed>);

impl Listed {
    pub fn get(&self, key: &str) -> Option<&Arc<Entry>> {
        self.0.get(key).map(|k| &k.0)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }

    /// Lists `entry` under its key, in place of the entry listed there before.
    pub fn insert(&mut self, entry: Arc<Entry>) {
        self.0.replace(Keyed(entry));
    }

    pub fn remove(&mut self, key: &str) -> Option<Arc<Entry>> {
        self.0.take(key).map(|k| k.0)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<Entry>) -> bool) {
        self.0.retain(|k| keep(&k.0));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_values(self) -> impl Iterator<Item = Arc<Entry>> {
        self.0.into_iter().map(|k| k.0)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.0.iter().map(|k| &k.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::{LogSource, Origin};
    use crate::model::listing::Listing;

    fn entry(key: &str, loaded_ms: i64) -> Arc<Entry> {
        Arc::new(Entry {
            key: key.into(),
            source: LogSource {
                origin: Origin::Dir("/logs".into()),
                name: key.into(),
                files: Vec::new(),
                in_progress: false,
                max_line_bytes: 1,
                modified_ms: 0,
            },
            listing: Listing::default(),
            loaded_ms,
            retry: false,
            read_ms: 0,
        })
    }

    #[test]
    fn an_entry_is_found_by_its_key_and_replaced_by_a_newer_one() {
        let mut set = Listed::default();
        set.insert(entry("app-1", 1));
        set.insert(entry("app-2", 1));
        set.insert(entry("app-1", 2));
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("app-1").map(|e| e.loaded_ms), Some(2));
        assert!(set.contains("app-2") && !set.contains("app-3"));
        set.retain(|e| e.key != "app-2");
        assert_eq!(set.remove("app-1").map(|e| e.loaded_ms), Some(2));
        assert!(set.is_empty() && set.get("app-1").is_none());
    }
}
