//! Directed graphs drawn as SVG: a layered layout (each node one layer after the furthest of
//! its inputs, nodes ordered within a layer by the mean position of their neighbours to cut
//! crossings) used for a job's stage DAG (left to right) and a SQL plan (top to bottom).
//! The job DAG is here; the plan, which has clusters and metrics, in [`super::plan`].

use std::collections::HashMap;
use std::fmt::Write;

use super::html::{esc, shorten};
use super::{fmt, Ctx};
use crate::model::{Job, Stage, StageStatus};

/// A node to place: its size.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub w: f64,
    pub h: f64,
}

/// Where the layout put a node (top-left corner).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pos {
    pub x: f64,
    pub y: f64,
}

/// Layout direction: layers as columns (left to right) or rows (top to bottom).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Right,
    Down,
}

/// Places `sizes.len()` nodes with `edges` (from, to) as index pairs; returns positions and
/// the drawing's total width and height. Edges that would close a cycle (corrupt input) are
/// ignored for layering.
pub fn layout(
    sizes: &[Size],
    edges: &[(usize, usize)],
    flow: Flow,
    gap_layer: f64,
    gap_node: f64,
) -> (Vec<Pos>, f64, f64) {
    let n = sizes.len();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(f, t) in edges {
        if f < n && t < n && f != t {
            preds[t].push(f);
            succs[f].push(t);
        }
    }
    // Kahn's order; what a cycle leaves over follows in index order
    let mut indeg: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut order: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let v = order[head];
        head += 1;
        for &s in &succs[v] {
            indeg[s] -= 1;
            if indeg[s] == 0 {
                order.push(s);
            }
        }
    }
    let mut placed = vec![false; n];
    for &v in &order {
        placed[v] = true;
    }
    order.extend((0..n).filter(|&i| !placed[i]));
    let mut rank_of = vec![usize::MAX; n];
    for (r, &v) in order.iter().enumerate() {
        rank_of[v] = r;
    }
    let mut layer = vec![0usize; n];
    for &v in &order {
        layer[v] = preds[v]
            .iter()
            .filter(|&&p| rank_of[p] < rank_of[v])
            .map(|&p| layer[p] + 1)
            .max()
            .unwrap_or(0);
    }
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for v in 0..n {
        rows[layer[v]].push(v);
    }
    // barycentre sweeps: down by predecessors, up by successors
    let mut pos_in: Vec<f64> = vec![0.0; n];
    let reindex = |rows: &Vec<Vec<usize>>, pos_in: &mut Vec<f64>| {
        for r in rows {
            for (i, &v) in r.iter().enumerate() {
                pos_in[v] = i as f64;
            }
        }
    };
    reindex(&rows, &mut pos_in);
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let range: Vec<usize> = if down {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for l in range {
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&v| {
                    let nb = if down { &preds[v] } else { &succs[v] };
                    let k = if nb.is_empty() {
                        pos_in[v]
                    } else {
                        nb.iter().map(|&u| pos_in[u]).sum::<f64>() / nb.len() as f64
                    };
                    (k, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            rows[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in rows[l].iter().enumerate() {
                pos_in[v] = i as f64;
            }
        }
    }
    // coordinates: layers along the flow, nodes across it, each layer centred
    let along = |s: &Size| if flow == Flow::Right { s.w } else { s.h };
    let across = |s: &Size| if flow == Flow::Right { s.h } else { s.w };
    let layer_depth: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().map(|&v| along(&sizes[v])).fold(0.0, f64::max))
        .collect();
    let layer_breadth: Vec<f64> = rows
        .iter()
        .map(|r| {
            r.iter().map(|&v| across(&sizes[v])).sum::<f64>()
                + gap_node * r.len().saturating_sub(1) as f64
        })
        .collect();
    let breadth = layer_breadth.iter().copied().fold(0.0, f64::max);
    let mut pos = vec![Pos::default(); n];
    let mut at_layer = 0.0;
    for (l, r) in rows.iter().enumerate() {
        let mut at = (breadth - layer_breadth[l]) / 2.0;
        for &v in r {
            let s = &sizes[v];
            // centred within the layer's depth
            let off = (layer_depth[l] - along(s)) / 2.0;
            pos[v] = if flow == Flow::Right {
                Pos {
                    x: at_layer + off,
                    y: at,
                }
            } else {
                Pos {
                    x: at,
                    y: at_layer + off,
                }
            };
            at += across(s) + gap_node;
        }
        at_layer += layer_depth[l] + gap_layer;
    }
    let depth = (at_layer - gap_layer).max(0.0);
    if flow == Flow::Right {
        (pos, depth, breadth)
    } else {
        (pos, breadth, depth)
    }
}

/// A cubic curve from the exit of `a` to the entry of `b`.
pub fn edge_path(a: Pos, sa: Size, b: Pos, sb: Size, flow: Flow) -> String {
    if flow == Flow::Right {
        let (x1, y1) = (a.x + sa.w, a.y + sa.h / 2.0);
        let (x2, y2) = (b.x, b.y + sb.h / 2.0);
        let mx = (x1 + x2) / 2.0;
        format!("M{x1:.1},{y1:.1} C{mx:.1},{y1:.1} {mx:.1},{y2:.1} {x2:.1},{y2:.1}")
    } else {
        let (x1, y1) = (a.x + sa.w / 2.0, a.y + sa.h);
        let (x2, y2) = (b.x + sb.w / 2.0, b.y);
        let my = (y1 + y2) / 2.0;
        format!("M{x1:.1},{y1:.1} C{x1:.1},{my:.1} {x2:.1},{my:.1} {x2:.1},{y2:.1}")
    }
}

/// The arrow-head marker every graph uses.
pub const ARROW_DEFS: &str = "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>";

/// A stage name with its call site's directory left out: `count at /a/b/job.py:12` ->
/// `count at job.py:12` (the full name is in the tooltip).
pub fn short_site(name: &str) -> String {
    match name.rsplit_once(" at ") {
        Some((op, site)) => match site.rsplit_once('/') {
            Some((_, file)) => format!("{op} at {file}"),
            None => name.to_string(),
        },
        None => name.to_string(),
    }
}

/// The latest attempt of each stage.
fn latest(stages: &std::collections::BTreeMap<(i64, i64), Stage>, id: i64) -> Option<&Stage> {
    stages
        .range((id, i64::MIN)..=(id, i64::MAX))
        .next_back()
        .map(|(_, s)| s)
}

/// The stage DAG of `job`: one node per stage of the job (skipped ones dashed and grey),
/// an edge from each stage to each stage of the job that reads its output.
pub fn job_dag(ctx: &Ctx, job: &Job) -> String {
    let a = ctx.app();
    let mut ids: Vec<i64> = job.stage_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return String::new();
    }
    let index: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let stages: Vec<Option<&Stage>> = ids.iter().map(|s| latest(&a.stages, *s)).collect();
    let mut edges = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        if let Some(st) = st {
            for p in &st.parent_ids {
                if let Some(&pi) = index.get(p) {
                    edges.push((pi, i));
                }
            }
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let size = Size { w: 190.0, h: 62.0 };
    let sizes = vec![size; ids.len()];
    let (pos, w, h) = layout(&sizes, &edges, Flow::Right, 60.0, 18.0);
    let pad = 8.0;
    let mut s = format!(
        "<svg id=\"job-dag\" class=\"dag\" viewBox=\"{} {} {:.0} {:.0}\" width=\"{:.0}\" role=\"img\" aria-label=\"Stage DAG\">{ARROW_DEFS}",
        -pad,
        -pad,
        w + 2.0 * pad,
        h + 2.0 * pad,
        (w + 2.0 * pad).min(1400.0)
    );
    for &(f, t) in &edges {
        let _ = write!(
            s,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow)\"/>",
            ids[f],
            ids[t],
            edge_path(pos[f], size, pos[t], size, Flow::Right)
        );
    }
    for (i, id) in ids.iter().enumerate() {
        let p = pos[i];
        let st = stages[i];
        let skipped =
            job.skipped_stages.contains(id) || st.is_none_or(|s| s.status == StageStatus::Skipped);
        let status = if skipped {
            "SKIPPED"
        } else {
            st.map_or("PENDING", |s| s.status.as_str())
        };
        let class = match status {
            "COMPLETE" => "ok",
            "FAILED" => "bad",
            "ACTIVE" => "run",
            "SKIPPED" => "skipped",
            _ => "skip",
        };
        let name = st.map(|s| s.name.as_str()).unwrap_or("");
        let tasks = st
            .map(|s| {
                if skipped {
                    format!("{} tasks, skipped", fmt::group(s.num_tasks))
                } else {
                    format!(
                        "{}/{} tasks{}",
                        fmt::group(s.completed_indices.len() as i64),
                        fmt::group(s.num_tasks),
                        if s.failed_tasks > 0 {
                            format!(", {} failed", fmt::group(s.failed_tasks))
                        } else {
                            String::new()
                        }
                    )
                }
            })
            .unwrap_or_default();
        let attempts = a.stages.range((*id, i64::MIN)..=(*id, i64::MAX)).count();
        let _ = write!(
            s,
            "<g class=\"node {class}\" data-stage=\"{id}\"><title>Stage {id} ({status}){}: {}\n{}</title>",
            if attempts > 1 {
                format!(", {attempts} attempts")
            } else {
                String::new()
            },
            esc(name),
            esc(&tasks)
        );
        if let Some(st) = st {
            let _ = write!(s, "<a href=\"{}\">", ctx.stage_href(*id, st.attempt_id));
        }
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{}\" rx=\"4\"/>\
<text class=\"title\" x=\"{:.1}\" y=\"{:.1}\">Stage {id}{}</text>\
<text x=\"{:.1}\" y=\"{:.1}\">{}</text><text class=\"small\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            p.x,
            p.y,
            size.w,
            size.h,
            p.x + 8.0,
            p.y + 17.0,
            if skipped { " · skipped" } else { "" },
            p.x + 8.0,
            p.y + 35.0,
            esc(&shorten(&short_site(name), 28)),
            p.x + 8.0,
            p.y + 52.0,
            esc(&tasks),
        );
        if st.is_some() {
            s.push_str("</a>");
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_the_longest_path() {
        let s = Size { w: 10.0, h: 10.0 };
        // 0 -> 1 -> 3, 0 -> 2 -> 3, 0 -> 3
        let (pos, w, h) = layout(
            &[s; 4],
            &[(0, 1), (1, 3), (0, 2), (2, 3), (0, 3)],
            Flow::Right,
            20.0,
            5.0,
        );
        assert_eq!(pos[0].x, 0.0);
        assert_eq!(pos[1].x, 30.0);
        assert_eq!(pos[2].x, 30.0);
        assert_eq!(pos[3].x, 60.0);
        assert_ne!(pos[1].y, pos[2].y);
        assert_eq!((w, h), (70.0, 25.0));
    }

    #[test]
    fn call_sites_lose_their_directory() {
        assert_eq!(short_site("count at /a/b/job.py:12"), "count at job.py:12");
        assert_eq!(short_site("collect at x.py:1"), "collect at x.py:1");
        assert_eq!(short_site("map"), "map");
    }

    #[test]
    fn cycles_and_bad_edges_do_not_hang() {
        let s = Size { w: 10.0, h: 10.0 };
        let (pos, _, _) = layout(
            &[s; 3],
            &[(0, 1), (1, 0), (2, 9), (2, 2)],
            Flow::Down,
            10.0,
            5.0,
        );
        assert_eq!(pos.len(), 3);
    }
}
