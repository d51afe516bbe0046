//! Accumulator values as the REST API shows them (`accumulatorUpdates` of stages and tasks).
//!
//! Spark logs every named accumulator a stage or task touched (`Accumulables` of `Stage Info`
//! and `Task Info`), its own task metrics (`internal.metrics.*`, marked `Internal`) and SQL
//! metrics (`Metadata: "sql"`) included. Its REST API (`LiveEntityHelpers.newAccumulatorInfos`)
//! leaves out the internal and SQL ones, and reads each value with Jackson's `asText`:
//! strings as they are (user accumulators are always logged as strings), numbers and
//! booleans as their text, objects and arrays as the empty string, `null` as absent.
//!
//! A task keeps its list in log order (a `Seq` in Spark). A stage's are a Scala
//! `mutable.HashMap` keyed by id, filled from the log's list, so the API lists them in that
//! map's iteration order, which depends on every id in it, the hidden ones too, and on the
//! Scala version of the server: [`StageAccumulables`] keeps the ids as inserted and orders
//! at serving time.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::scala_order::{long_hash, mutable_order, ScalaVersion};

/// One accumulator as the API shows it (Spark's `v1.AccumulableInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccumulableInfo {
    pub id: i64,
    pub name: Option<String>,
    pub update: Option<String>,
    pub value: Option<String>,
}

/// A stage's accumulators: every id in the order it went into Spark's map (repeats
/// included: a repeated id still counts for the map's growth), and the ones the API shows.
#[derive(Clone, Debug, Default)]
pub struct StageAccumulables {
    inserted: Vec<i64>,
    shown: Vec<AccumulableInfo>,
}

impl StageAccumulables {
    /// From a `Stage Info`'s `Accumulables` (absent or malformed: none, as Spark reads it).
    pub fn from_stage_info(list: Option<&Value>) -> Self {
        let mut out = StageAccumulables::default();
        let Some(Value::Array(items)) = list else {
            return out;
        };
        for item in items {
            let Ok(raw) = RawAccumulable::deserialize(item) else {
                continue;
            };
            let id = raw.id;
            out.inserted.push(id);
            if let Some(info) = raw.shown() {
                // the map keeps one entry per id: the last value wins, in the first place
                match out.shown.iter_mut().find(|a| a.id == info.id) {
                    Some(slot) => *slot = info,
                    None => out.shown.push(info),
                }
            } else {
                out.shown.retain(|a| a.id != id);
            }
        }
        out
    }

    /// The shown accumulators in the order a History Server built on `scala` lists them.
    pub fn in_order(&self, scala: ScalaVersion) -> Vec<&AccumulableInfo> {
        if self.shown.is_empty() {
            return Vec::new();
        }
        let hashes: Vec<i32> = self.inserted.iter().map(|id| long_hash(*id)).collect();
        let mut out = Vec::with_capacity(self.shown.len());
        for pos in mutable_order(&hashes, scala) {
            let id = self.inserted[pos];
            if let Some(a) = self.shown.iter().find(|a| a.id == id) {
                if !out.iter().any(|o: &&AccumulableInfo| o.id == id) {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// One entry of an `Accumulables` list, as `JsonProtocol.accumulableInfoFromJson` reads it.
#[derive(Debug, Default, Deserialize)]
struct RawAccumulable {
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "Name", default)]
    name: Option<JsonText>,
    #[serde(rename = "Update", default)]
    update: Option<JsonText>,
    #[serde(rename = "Value", default)]
    value: Option<JsonText>,
    #[serde(rename = "Internal", default)]
    internal: Option<bool>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<JsonText>,
}

impl RawAccumulable {
    /// The API's view, `None` for internal and SQL accumulators.
    fn shown(self) -> Option<AccumulableInfo> {
        if self.internal == Some(true) || self.metadata.as_ref().is_some_and(|m| m.0 == "sql") {
            return None;
        }
        Some(AccumulableInfo {
            id: self.id,
            name: self.name.map(|t| t.0),
            update: self.update.map(|t| t.0),
            value: self.value.map(|t| t.0),
        })
    }
}

/// Any JSON value as Jackson's `JsonNode.asText` renders it (`null` is left to `Option`).
#[derive(Debug, Default)]
struct JsonText(String);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonText, E> {
                Ok(JsonText(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonText, E> {
                Ok(JsonText(java_double(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<JsonText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonText(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<JsonText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A double as Java's `Double.toString` writes it (what `asText` gives for one).
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let t = format!("{v}");
        if t.contains('.') {
            t
        } else {
            format!("{t}.0")
        }
    } else {
        let t = format!("{v:e}");
        let (mant, exp) = t.split_once('e').unwrap_or((&t, "0"));
        let mant = if mant.contains('.') {
            mant.to_string()
        } else {
            format!("{mant}.0")
        };
        format!("{mant}E{exp}")
    }
}

/// `deserialize_with` for a task's `Accumulables`: the ones the API shows, in log order.
pub fn shown_accumulables<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<AccumulableInfo>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<AccumulableInfo>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of accumulables")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(raw) = s.next_element::<RawAccumulable>()? {
                out.extend(raw.shown());
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_accumulators_are_left_out_and_values_read_as_text() {
        let v: Value = serde_json::from_str(
            r#"[{"ID":5,"Name":"internal.metrics.executorRunTime","Value":12,"Internal":true},
                {"ID":7,"Name":"number of output rows","Value":"3","Metadata":"sql"},
                {"ID":1,"Name":"records","Update":"4","Value":"400","Internal":false},
                {"ID":2,"Name":"w","Value":2.5},
                {"ID":3,"Value":[1,2]},
                {"ID":4,"Name":null,"Value":true}]"#,
        )
        .unwrap();
        let s = StageAccumulables::from_stage_info(Some(&v));
        let got: Vec<_> = s
            .in_order(ScalaVersion::V2_13)
            .into_iter()
            .map(|a| (a.id, a.name.clone(), a.update.clone(), a.value.clone()))
            .collect();
        let want = [
            (
                1,
                Some("records".into()),
                Some("4".into()),
                Some("400".into()),
            ),
            (2, Some("w".into()), None, Some("2.5".into())),
            (3, None, None, Some(String::new())),
            (4, None, None, Some("true".into())),
        ];
        assert_eq!(got, want);
        let tasks: Vec<AccumulableInfo> = shown_accumulables(&v).expect("a list of accumulables");
        assert_eq!(tasks.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn stage_order_is_the_scala_maps() {
        // ids inserted in this order; Spark 3.5 (Scala 2.12) and 4.x (2.13) list them as
        // their scala-library's mutable.HashMap iterates them
        let v: Value = serde_json::from_str(
            r#"[{"ID":5,"Name":"a","Value":"1"},{"ID":3,"Name":"b","Value":"1"},
                {"ID":100,"Name":"c","Value":"1"},{"ID":7,"Name":"d","Value":"1"},
                {"ID":1,"Name":"e","Value":"1"}]"#,
        )
        .unwrap();
        let s = StageAccumulables::from_stage_info(Some(&v));
        let ids = |sv| s.in_order(sv).iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(ScalaVersion::V2_12), [5, 100, 7, 1, 3]);
        assert_eq!(ids(ScalaVersion::V2_13), [1, 3, 100, 5, 7]);
    }
}
