//! Numbers as a person reads them: durations (ms / s / min / h / d), sizes in binary units
//! (B / KiB / MiB / GiB ...), counts with thousands separators, CPU times converted from
//! nanoseconds, percentages and dates. The `*_text` functions give the bare text; the cell
//! helpers wrap it in a `<span>` whose `title` holds the exact raw value, so hovering shows
//! what the REST API reports. A missing value (`None`, NaN, infinite) reads "–".
//!
//! Rounding happens before a unit is chosen, so a value never shows as "1000 ms" or
//! "1024.0 KiB": it moves up to "1.0 s" / "1.0 MiB".

use std::fmt::Write;

/// What a missing value reads as.
pub const NA: &str = "–";

/// A duration given in milliseconds.
pub fn duration_text(ms: f64) -> String {
    if !ms.is_finite() {
        return NA.into();
    }
    let sign = if ms < 0.0 { "-" } else { "" };
    let a = ms.abs();
    // sub-10 ms fractions (from nanosecond metrics, or averages) keep one decimal
    if a < 10.0 && a.fract() != 0.0 {
        let tenths = (a * 10.0).round() as u64;
        if tenths < 100 {
            return format!("{sign}{}.{} ms", tenths / 10, tenths % 10);
        }
    }
    let whole = a.round() as u64;
    if whole < 1000 {
        return format!("{sign}{whole} ms");
    }
    let tenths = (a / 100.0).round() as u64;
    if tenths < 100 {
        return format!("{sign}{}.{} s", tenths / 10, tenths % 10);
    }
    let secs = (a / 1000.0).round() as u64;
    if secs < 60 {
        return format!("{sign}{secs} s");
    }
    if secs < 3600 {
        return format!("{sign}{} min {:02} s", secs / 60, secs % 60);
    }
    let mins = (a / 60_000.0).round() as u64;
    if mins < 24 * 60 {
        return format!("{sign}{} h {:02} min", mins / 60, mins % 60);
    }
    let hours = (a / 3_600_000.0).round() as u64;
    format!("{sign}{} d {:02} h", hours / 24, hours % 24)
}

/// A duration given in nanoseconds (Spark's CPU times): below a millisecond in µs or ns.
pub fn nanos_text(ns: f64) -> String {
    if !ns.is_finite() {
        return NA.into();
    }
    let a = ns.abs();
    let sign = if ns < 0.0 { "-" } else { "" };
    if a.round() < 1000.0 {
        return format!("{sign}{} ns", a.round() as u64);
    }
    let micros = (a / 1000.0).round();
    if micros < 1000.0 {
        return format!("{sign}{} µs", micros as u64);
    }
    duration_text(ns / 1e6)
}

const BYTE_UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A size in bytes, in binary units with one decimal above 1 KiB.
pub fn bytes_text(b: f64) -> String {
    if !b.is_finite() {
        return NA.into();
    }
    let sign = if b < 0.0 { "-" } else { "" };
    let a = b.abs();
    if a.round() < 1024.0 {
        return format!("{sign}{} B", a.round() as u64);
    }
    let mut x = a;
    for (i, unit) in BYTE_UNITS.iter().enumerate() {
        x /= 1024.0;
        let tenths = (x * 10.0).round();
        if tenths < 10240.0 || i == BYTE_UNITS.len() - 1 {
            return format!("{sign}{:.1} {unit}", tenths / 10.0);
        }
    }
    unreachable!("the last unit always answers")
}

/// A count, rounded to a whole number, with thousands separators: `1,234,567`.
pub fn count_text(n: f64) -> String {
    if !n.is_finite() {
        return NA.into();
    }
    group(n.round() as i64)
}

/// An integer with thousands separators.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio (0.25) as a percentage: one decimal below 10 %, none above.
pub fn percent_text(ratio: f64) -> String {
    if !ratio.is_finite() {
        return NA.into();
    }
    let p = ratio * 100.0;
    if p.abs() < 9.95 {
        format!("{p:.1} %")
    } else {
        format!("{p:.0} %")
    }
}

/// A point in time (ms since the epoch) as `2024-05-01 12:34:56` (UTC); missing when not
/// positive, as Spark's -1 / 0 placeholders.
pub fn date_text(ms: i64) -> String {
    if ms <= 0 {
        return NA.into();
    }
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => NA.into(),
    }
}

/// The same instant, exactly (for `title` and `datetime`).
pub fn date_iso(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => String::new(),
    }
}

/// The kind of a number, which decides its text and the unit of its raw value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Nanoseconds.
    Ns,
    Bytes,
    Count,
}

impl Unit {
    pub fn text(self, v: f64) -> String {
        match self {
            Unit::Ms => duration_text(v),
            Unit::Ns => nanos_text(v),
            Unit::Bytes => bytes_text(v),
            Unit::Count => count_text(v),
        }
    }

    fn raw_suffix(self) -> &'static str {
        match self {
            Unit::Ms => " ms",
            Unit::Ns => " ns",
            Unit::Bytes => " bytes",
            Unit::Count => "",
        }
    }
}

/// The exact value: integers without a fraction, others with what they have.
pub fn raw(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `<span title="raw">text</span>`; "–" for a missing value.
pub fn cell(unit: Unit, v: Option<f64>) -> String {
    match v.filter(|x| x.is_finite()) {
        Some(x) => format!(
            "<span title=\"{}{}\">{}</span>",
            raw(x),
            unit.raw_suffix(),
            unit.text(x)
        ),
        None => format!("<span class=\"na\" title=\"not recorded\">{NA}</span>"),
    }
}

pub fn ms(v: i64) -> String {
    cell(Unit::Ms, Some(v as f64))
}

pub fn ns(v: i64) -> String {
    cell(Unit::Ns, Some(v as f64))
}

pub fn bytes(v: i64) -> String {
    cell(Unit::Bytes, Some(v as f64))
}

pub fn count(v: i64) -> String {
    cell(Unit::Count, Some(v as f64))
}

/// A size and a record count, as Spark shows them: `1.2 MiB / 10,000`.
pub fn bytes_records(b: i64, records: i64) -> String {
    format!("{} / {}", bytes(b), count(records))
}

/// A table cell (`<td class="num">`) with the value for client-side sorting in `data-v`.
pub fn td(unit: Unit, v: Option<f64>) -> String {
    let mut s = String::from("<td class=\"num\"");
    if let Some(x) = v.filter(|x| x.is_finite()) {
        let _ = write!(s, " data-v=\"{}\"", raw(x));
    }
    s.push('>');
    s.push_str(&cell(unit, v));
    s.push_str("</td>");
    s
}

/// A date as a `<time>` element (UTC text, the exact instant in `datetime` and `title`).
pub fn date(ms: i64) -> String {
    if ms <= 0 {
        return format!("<span class=\"na\">{NA}</span>");
    }
    let iso = date_iso(ms);
    format!(
        "<time datetime=\"{iso}\" title=\"{iso}\">{}</time>",
        date_text(ms)
    )
}

/// A date cell sortable by its epoch milliseconds, short (`11-14 22:13:20`; the year and
/// milliseconds on hover).
pub fn date_td(ms: i64) -> String {
    if ms <= 0 {
        return format!("<td data-v=\"{ms}\"><span class=\"na\">{NA}</span></td>");
    }
    let short = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let iso = date_iso(ms);
    format!(
        "<td class=\"date\" data-v=\"{ms}\"><time datetime=\"{iso}\" title=\"{iso}\">{short}</time></td>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_at_unit_boundaries() {
        assert_eq!(duration_text(0.0), "0 ms");
        assert_eq!(duration_text(1.0), "1 ms");
        assert_eq!(duration_text(999.0), "999 ms");
        // rounding first: 999.6 ms is a second, not "1000 ms"
        assert_eq!(duration_text(999.6), "1.0 s");
        assert_eq!(duration_text(1000.0), "1.0 s");
        assert_eq!(duration_text(1049.0), "1.0 s");
        assert_eq!(duration_text(1050.0), "1.1 s");
        assert_eq!(duration_text(9949.0), "9.9 s");
        assert_eq!(duration_text(9960.0), "10 s");
        assert_eq!(duration_text(59_499.0), "59 s");
        assert_eq!(duration_text(59_500.0), "1 min 00 s");
        assert_eq!(duration_text(61_000.0), "1 min 01 s");
        assert_eq!(duration_text(3_599_000.0), "59 min 59 s");
        assert_eq!(duration_text(3_599_600.0), "1 h 00 min");
        assert_eq!(duration_text(5_400_000.0), "1 h 30 min");
        assert_eq!(duration_text(86_399_999.0), "1 d 00 h");
        assert_eq!(duration_text(90_000_000.0), "1 d 01 h");
        assert_eq!(duration_text(400.0 * 86_400_000.0), "400 d 00 h");
    }

    #[test]
    fn durations_fractional_negative_and_missing() {
        assert_eq!(duration_text(0.25), "0.3 ms");
        assert_eq!(duration_text(2.5), "2.5 ms");
        assert_eq!(duration_text(9.96), "10 ms");
        assert_eq!(duration_text(12.5), "13 ms");
        assert_eq!(duration_text(-1.0), "-1 ms");
        assert_eq!(duration_text(-1500.0), "-1.5 s");
        assert_eq!(duration_text(-61_000.0), "-1 min 01 s");
        assert_eq!(duration_text(f64::NAN), NA);
        assert_eq!(duration_text(f64::INFINITY), NA);
        assert_eq!(duration_text(f64::NEG_INFINITY), NA);
    }

    #[test]
    fn nanoseconds() {
        assert_eq!(nanos_text(0.0), "0 ns");
        assert_eq!(nanos_text(999.0), "999 ns");
        assert_eq!(nanos_text(999.5), "1 µs");
        assert_eq!(nanos_text(1000.0), "1 µs");
        assert_eq!(nanos_text(999_499.0), "999 µs");
        assert_eq!(nanos_text(999_500.0), "1.0 ms");
        assert_eq!(nanos_text(1_500_000.0), "1.5 ms");
        // the example: executorCpuTime 6.8138071E7 ns
        assert_eq!(nanos_text(6.8138071e7), "68 ms");
        assert_eq!(nanos_text(6.8138071e10), "1 min 08 s");
        assert_eq!(nanos_text(-2000.0), "-2 µs");
        assert_eq!(nanos_text(f64::NAN), NA);
    }

    #[test]
    fn bytes_at_unit_boundaries() {
        assert_eq!(bytes_text(0.0), "0 B");
        assert_eq!(bytes_text(1023.0), "1023 B");
        assert_eq!(bytes_text(1023.6), "1.0 KiB");
        assert_eq!(bytes_text(1024.0), "1.0 KiB");
        assert_eq!(bytes_text(1536.0), "1.5 KiB");
        assert_eq!(bytes_text(1024.0 * 1023.9), "1023.9 KiB");
        // rounds up into the next unit rather than "1024.0 KiB"
        assert_eq!(bytes_text(1024.0 * 1023.96), "1.0 MiB");
        assert_eq!(bytes_text(1048576.0), "1.0 MiB");
        assert_eq!(bytes_text(1073741824.0), "1.0 GiB");
        assert_eq!(bytes_text(1.5 * 1099511627776.0), "1.5 TiB");
        assert_eq!(bytes_text(i64::MAX as f64), "8.0 EiB");
        assert_eq!(bytes_text(1e30), "867361737988.4 EiB");
    }

    #[test]
    fn bytes_negative_and_missing() {
        assert_eq!(bytes_text(-1.0), "-1 B");
        assert_eq!(bytes_text(-2048.0), "-2.0 KiB");
        assert_eq!(bytes_text(f64::NAN), NA);
        assert_eq!(bytes_text(f64::INFINITY), NA);
    }

    #[test]
    fn counts() {
        assert_eq!(count_text(0.0), "0");
        assert_eq!(count_text(999.0), "999");
        assert_eq!(count_text(1000.0), "1,000");
        assert_eq!(count_text(999_999.0), "999,999");
        assert_eq!(count_text(1_000_000.0), "1,000,000");
        assert_eq!(count_text(1234.5), "1,235");
        assert_eq!(count_text(-1.0), "-1");
        assert_eq!(count_text(-1234567.0), "-1,234,567");
        assert_eq!(count_text(f64::NAN), NA);
        assert_eq!(group(i64::MIN), "-9,223,372,036,854,775,808");
        assert_eq!(group(i64::MAX), "9,223,372,036,854,775,807");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent_text(0.0), "0.0 %");
        assert_eq!(percent_text(0.0994), "9.9 %");
        assert_eq!(percent_text(0.0996), "10 %");
        assert_eq!(percent_text(0.5), "50 %");
        assert_eq!(percent_text(1.0), "100 %");
        assert_eq!(percent_text(-0.05), "-5.0 %");
        assert_eq!(percent_text(f64::NAN), NA);
        assert_eq!(percent_text(f64::INFINITY), NA);
    }

    #[test]
    fn dates() {
        assert_eq!(date_text(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(date_iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(date_text(0), NA);
        assert_eq!(date_text(-1), NA);
        assert!(date(-1).contains(NA));
    }

    #[test]
    fn cells_carry_the_raw_value() {
        assert_eq!(
            cell(Unit::Ns, Some(6.8138071e7)),
            "<span title=\"68138071 ns\">68 ms</span>"
        );
        assert_eq!(
            cell(Unit::Bytes, Some(1536.0)),
            "<span title=\"1536 bytes\">1.5 KiB</span>"
        );
        assert_eq!(
            cell(Unit::Ms, Some(12.5)),
            "<span title=\"12.5 ms\">13 ms</span>"
        );
        assert_eq!(
            cell(Unit::Count, Some(1e6)),
            "<span title=\"1000000\">1,000,000</span>"
        );
        for missing in [None, Some(f64::NAN), Some(f64::INFINITY)] {
            assert!(cell(Unit::Ms, missing).contains(NA));
            assert!(!td(Unit::Ms, missing).contains("data-v"));
        }
        assert_eq!(
            td(Unit::Bytes, Some(-1.0)),
            "<td class=\"num\" data-v=\"-1\"><span title=\"-1 bytes\">-1 B</span></td>"
        );
    }
}
