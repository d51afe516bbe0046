//! String maps read in the order the log lists them.
//!
//! `serde_json::Value` sorts object keys, but Spark's History Server keeps the log's order
//! for the small maps it reads into Scala immutable maps of up to four entries (an
//! executor's log URLs and attributes): `stdout` before `stderr`, as Spark wrote them. The
//! few events that carry such maps are read again from their line for that order; the API
//! then lays out maps of more than four entries in Scala's hash order.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// A map's entries, in order.
pub type Entries = Vec<(String, String)>;

/// An object's entries in log order; a value that is not a string is kept as its JSON
/// text (as [`super::App`] keeps them from a `Value`).
#[derive(Debug, Default)]
pub struct Pairs(pub Entries);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<Pairs, E> {
                Ok(Pairs::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ExecutorInfo {
    #[serde(rename = "Log Urls", default)]
    log_urls: Pairs,
    #[serde(rename = "Attributes", default)]
    attributes: Pairs,
}

#[derive(Debug, Default, Deserialize)]
struct ExecutorAdded {
    #[serde(rename = "Executor Info", default)]
    info: ExecutorInfo,
}

#[derive(Debug, Default, Deserialize)]
struct ApplicationStart {
    #[serde(rename = "Driver Logs", default)]
    logs: Pairs,
    #[serde(rename = "Driver Attributes", default)]
    attributes: Pairs,
}

/// The log URLs and attributes of an `SparkListenerExecutorAdded` line, in log order.
pub fn executor_added(line: &[u8]) -> Option<(Entries, Entries)> {
    let ev: ExecutorAdded = serde_json::from_slice(line).ok()?;
    Some((ev.info.log_urls.0, ev.info.attributes.0))
}

/// The driver's log URLs and attributes of a `SparkListenerApplicationStart` line.
pub fn application_start(line: &[u8]) -> Option<(Entries, Entries)> {
    let ev: ApplicationStart = serde_json::from_slice(line).ok()?;
    Some((ev.logs.0, ev.attributes.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_logs_order() {
        let line = br#"{"Event":"SparkListenerExecutorAdded","Executor Info":{"Host":"h","Log Urls":{"stdout":"o","stderr":"e"},"Attributes":{"b":"1","a":2}}}"#;
        let (logs, attrs) = executor_added(line).expect("parses");
        assert_eq!(
            logs,
            [("stdout".into(), "o".into()), ("stderr".into(), "e".into())]
        );
        assert_eq!(attrs, [("b".into(), "1".into()), ("a".into(), "2".into())]);
    }
}
