//! Event timelines drawn as inline SVG: bars on a shared time axis, in named groups
//! (executors, jobs, stages, tasks), packed into as few lanes as keep them from overlapping.
//! Each bar carries a `<title>` (the browser's tooltip, no script needed), a link when it has
//! a page, and a `data-*` attribute naming what it stands for (the tests compare those with
//! the REST API).

use std::fmt::Write;

use super::fmt;
use super::html::esc;

/// Drawing width in SVG units (the picture scales to the page width).
const WIDTH: f64 = 1200.0;
/// Left column for group names.
const LEFT: f64 = 110.0;
const RIGHT: f64 = 12.0;
const LANE: f64 = 18.0;
const BAR: f64 = 13.0;
const AXIS: f64 = 22.0;

/// One bar.
pub struct Item {
    pub start: i64,
    /// The end; for something still running when the log ends, the end of the timeline.
    pub end: i64,
    /// Still running (drawn open-ended).
    pub open: bool,
    /// CSS class: the colour (`ok`, `bad`, `run`, `skip`, `exec`, `exec-dead`).
    pub class: &'static str,
    /// Short text drawn on the bar when it fits.
    pub label: String,
    /// The tooltip.
    pub title: String,
    pub href: Option<String>,
    /// `data-<name>="<value>"`.
    pub data: (&'static str, String),
    /// A marker at the end (an executor's removal).
    pub end_mark: bool,
}

/// A named group of bars.
pub struct Group {
    pub name: String,
    pub items: Vec<Item>,
    /// At most this many lanes; further overlapping bars share the last one.
    pub max_lanes: usize,
}

/// Lane of each item (items sorted by start), packing greedily; `gap` is the time two bars
/// on one lane must be apart.
fn pack(items: &[Item], gap: i64, max_lanes: usize) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].start, items[i].end));
    let mut lane_end: Vec<i64> = Vec::new();
    let mut lanes = vec![0; items.len()];
    for i in order {
        let it = &items[i];
        let lane = match lane_end.iter().position(|&e| e + gap <= it.start) {
            Some(l) => l,
            None if lane_end.len() < max_lanes.max(1) => {
                lane_end.push(i64::MIN);
                lane_end.len() - 1
            }
            // out of lanes: the one that frees first
            None => lane_end
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| **e)
                .map(|(l, _)| l)
                .unwrap_or(0),
        };
        lane_end[lane] = lane_end[lane].max(it.end);
        lanes[i] = lane;
    }
    let n = lane_end.len();
    (lanes, n)
}

/// A "nice" tick step for a span of `span` ms, about `want` ticks.
fn tick_step(span: i64, want: i64) -> i64 {
    const STEPS: [i64; 27] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000,
        21_600_000, 43_200_000, 86_400_000,
    ];
    let raw = span / want.max(1);
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or(86_400_000 * (raw / 86_400_000 + 1))
}

fn tick_label(t: i64, step: i64) -> String {
    let Some(d) = chrono::DateTime::from_timestamp_millis(t) else {
        return String::new();
    };
    if step < 1000 {
        d.format("%H:%M:%S%.3f").to_string()
    } else if step >= 86_400_000 {
        d.format("%m-%d %H:%M").to_string()
    } else {
        d.format("%H:%M:%S").to_string()
    }
}

/// The SVG of `groups` on the time span `t0..t1` (ms since the epoch), with `id` as its
/// element id. Empty groups are left out.
pub fn render(id: &str, t0: i64, t1: i64, groups: &[Group]) -> String {
    let t1 = t1.max(t0 + 1);
    let span = (t1 - t0) as f64;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |t: i64| LEFT + ((t.clamp(t0, t1) - t0) as f64 / span) * plot;
    // two pixels between bars on one lane
    let gap = ((2.0 / plot) * span).ceil() as i64;
    let packed: Vec<(Vec<usize>, usize)> = groups
        .iter()
        .map(|g| pack(&g.items, gap, g.max_lanes))
        .collect();
    let lanes_total: usize = packed
        .iter()
        .zip(groups)
        .filter(|(_, g)| !g.items.is_empty())
        .map(|((_, n), _)| n + 1)
        .sum();
    let height = AXIS + lanes_total as f64 * LANE + 6.0;
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg id=\"{}\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" role=\"img\" aria-label=\"Event timeline\">",
        esc(id)
    );
    // axis
    let step = tick_step(t1 - t0, 8);
    let mut t = (t0 / step + 1) * step;
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{AXIS}\" x2=\"{:.1}\" y2=\"{AXIS}\"/>",
        WIDTH - RIGHT
    );
    while t < t1 {
        let xt = x(t);
        let _ = write!(
            s,
            "<line class=\"tick\" x1=\"{xt:.1}\" y1=\"{}\" x2=\"{xt:.1}\" y2=\"{height:.0}\"/><text class=\"tick\" x=\"{xt:.1}\" y=\"14\">{}</text>",
            AXIS - 4.0,
            tick_label(t, step)
        );
        t += step;
    }
    let mut y = AXIS + 4.0;
    for (g, (lanes, n)) in groups.iter().zip(&packed) {
        if g.items.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            "<g class=\"group\"><text class=\"group\" x=\"4\" y=\"{:.1}\">{}</text>",
            y + BAR - 2.0,
            esc(&g.name)
        );
        for (it, lane) in g.items.iter().zip(lanes) {
            let x0 = x(it.start);
            let w = (x(it.end) - x0).max(2.0);
            let yb = y + *lane as f64 * LANE;
            let (dk, dv) = &it.data;
            let _ = write!(
                s,
                "<g class=\"bar {}{}\" data-{dk}=\"{}\">",
                it.class,
                if it.open { " open" } else { "" },
                esc(dv)
            );
            if let Some(h) = &it.href {
                let _ = write!(s, "<a href=\"{h}\">");
            }
            let _ = write!(
                s,
                "<title>{}</title><rect x=\"{x0:.1}\" y=\"{yb:.1}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"2\"/>",
                esc(&it.title)
            );
            // the label only where it fits (about 6 units per character)
            if !it.label.is_empty() && w > it.label.chars().count() as f64 * 6.5 + 6.0 {
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x0 + 3.0,
                    yb + BAR - 3.0,
                    esc(&it.label)
                );
            }
            if it.end_mark {
                let xe = x0 + w;
                let _ = write!(
                    s,
                    "<line class=\"end-mark\" x1=\"{xe:.1}\" y1=\"{:.1}\" x2=\"{xe:.1}\" y2=\"{:.1}\"/>",
                    yb - 1.0,
                    yb + BAR + 1.0
                );
            }
            if it.href.is_some() {
                s.push_str("</a>");
            }
            s.push_str("</g>");
        }
        s.push_str("</g>");
        y += (*n as f64 + 1.0) * LANE;
        let _ = write!(
            s,
            "<line class=\"sep\" x1=\"0\" y1=\"{:.1}\" x2=\"{WIDTH}\" y2=\"{:.1}\"/>",
            y - LANE / 2.0,
            y - LANE / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The phases of one task, in ms, in the order they happen (Spark's stage timeline).
pub struct TaskPhases {
    pub task_id: i64,
    pub index: i64,
    pub attempt: i64,
    pub executor: String,
    pub status: &'static str,
    pub launch: i64,
    pub duration: i64,
    pub scheduler_delay: i64,
    pub deserialize: i64,
    pub shuffle_read: i64,
    pub compute: i64,
    pub shuffle_write: i64,
    pub serialize: i64,
    pub getting_result: i64,
}

/// Phase names and CSS classes, in drawing order.
pub const PHASES: [(&str, &str); 7] = [
    ("Scheduler delay", "ph-sched"),
    ("Task deserialization", "ph-deser"),
    ("Shuffle read (blocked)", "ph-sread"),
    ("Executor computing", "ph-compute"),
    ("Shuffle write", "ph-swrite"),
    ("Result serialization", "ph-ser"),
    ("Getting result", "ph-result"),
];

/// Tasks as rows, each bar split into its phases, on a shared axis; links go to `href(task)`.
pub fn tasks(id: &str, rows: &[TaskPhases]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let t0 = rows.iter().map(|r| r.launch).min().unwrap_or(0);
    let t1 = rows
        .iter()
        .map(|r| r.launch + r.duration.max(1))
        .max()
        .unwrap_or(t0 + 1)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    let left = 150.0;
    let plot = WIDTH - left - RIGHT;
    let x = |t: f64| left + ((t - t0 as f64) / span) * plot;
    let height = AXIS + rows.len() as f64 * LANE + 4.0;
    let mut s = String::with_capacity(rows.len() * 600);
    let _ = write!(
        s,
        "<svg id=\"{}\" class=\"timeline tasks\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" role=\"img\" aria-label=\"Task timeline\">",
        esc(id)
    );
    let step = tick_step(t1 - t0, 8);
    let mut t = (t0 / step + 1) * step;
    while t < t1 {
        let xt = x(t as f64);
        let _ = write!(
            s,
            "<line class=\"tick\" x1=\"{xt:.1}\" y1=\"{}\" x2=\"{xt:.1}\" y2=\"{height:.0}\"/><text class=\"tick\" x=\"{xt:.1}\" y=\"14\">+{}</text>",
            AXIS - 4.0,
            esc(&fmt::duration_text((t - t0) as f64))
        );
        t += step;
    }
    for (i, r) in rows.iter().enumerate() {
        let y = AXIS + 2.0 + i as f64 * LANE;
        let _ = write!(
            s,
            "<g class=\"task\" data-task=\"{}\"><text class=\"group\" x=\"4\" y=\"{:.1}\">task {} ({}.{}) on {}</text>",
            r.task_id,
            y + BAR - 3.0,
            r.task_id,
            r.index,
            r.attempt,
            esc(&super::html::shorten(&r.executor, 8))
        );
        let parts = [
            r.scheduler_delay,
            r.deserialize,
            r.shuffle_read,
            r.compute,
            r.shuffle_write,
            r.serialize,
            r.getting_result,
        ];
        // the phases fill the task's duration in proportion (as Spark draws them)
        let sum: i64 = parts.iter().map(|p| (*p).max(0)).sum();
        let scale = if sum > 0 {
            r.duration.max(0) as f64 / sum as f64
        } else {
            0.0
        };
        let mut tip = format!(
            "Task {} (index {}, attempt {}) on executor {}: {}, {}",
            r.task_id,
            r.index,
            r.attempt,
            r.executor,
            r.status,
            fmt::duration_text(r.duration as f64)
        );
        for ((name, _), p) in PHASES.iter().zip(parts) {
            let _ = write!(tip, "\n{name}: {}", fmt::duration_text(p as f64));
        }
        let _ = write!(s, "<title>{}</title>", esc(&tip));
        let mut at = r.launch as f64;
        if sum == 0 {
            let _ = write!(
                s,
                "<rect class=\"ph-none\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{BAR}\"/>",
                x(at),
                (x(at + r.duration.max(1) as f64) - x(at)).max(1.0)
            );
        }
        for ((_, class), p) in PHASES.iter().zip(parts) {
            if p <= 0 || sum == 0 {
                continue;
            }
            let len = p as f64 * scale;
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{BAR}\"/>",
                x(at),
                (x(at + len) - x(at)).max(0.5)
            );
            at += len;
        }
        if r.status != "SUCCESS" {
            let _ = write!(
                s,
                "<text class=\"task-status\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                (x(r.launch as f64 + r.duration as f64) + 3.0).min(WIDTH - 60.0),
                y + BAR - 3.0,
                esc(r.status)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// The legend of [`tasks`].
pub fn task_legend() -> String {
    let mut s = String::from("<p class=\"legend\">");
    for (name, class) in PHASES {
        let _ = write!(
            s,
            "<span><svg viewBox=\"0 0 10 10\" aria-hidden=\"true\"><rect class=\"{class}\" width=\"10\" height=\"10\"/></svg>{name}</span>"
        );
    }
    s.push_str("</p>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(start: i64, end: i64) -> Item {
        Item {
            start,
            end,
            open: false,
            class: "ok",
            label: String::new(),
            title: String::new(),
            href: None,
            data: ("job", "0".into()),
            end_mark: false,
        }
    }

    #[test]
    fn packing_reuses_free_lanes() {
        let items = vec![item(0, 10), item(5, 20), item(11, 30), item(21, 40)];
        let (lanes, n) = pack(&items, 1, 10);
        assert_eq!(lanes, vec![0, 1, 0, 1]);
        assert_eq!(n, 2);
        // capped: the third overlapping bar shares a lane
        let items = vec![item(0, 10), item(0, 10), item(0, 10)];
        let (_, n) = pack(&items, 1, 2);
        assert_eq!(n, 2);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(60_000, 8), 10_000);
        assert_eq!(tick_step(5, 8), 1);
        assert_eq!(tick_step(3_600_000, 8), 600_000);
        assert!(tick_step(100 * 86_400_000, 8) >= 86_400_000 * 12);
    }

    #[test]
    fn bars_are_escaped_and_tagged() {
        let mut it = item(1000, 2000);
        it.title = "<script>x</script>".into();
        it.label = "<b>".into();
        it.data = ("job", "7".into());
        let svg = render(
            "t",
            0,
            3000,
            &[Group {
                name: "Jobs <i>".into(),
                items: vec![it],
                max_lanes: 5,
            }],
        );
        assert!(svg.contains("data-job=\"7\""));
        assert!(!svg.contains("<script>") && !svg.contains("<b>") && !svg.contains("<i>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
