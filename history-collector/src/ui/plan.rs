//! A SQL execution's plan as SVG, from the REST API's nodes and edges: data flows from the
//! scans at the top down to the final operator, each node boxed with its metrics, the
//! operators of one `WholeStageCodegen` stage drawn inside one box (as Spark's UI draws
//! them). Whole codegen clusters are laid out as one block, so their members stay together.

use std::collections::HashMap;
use std::fmt::Write;

use super::dag::{layout, Flow, Pos, Size, ARROW_DEFS};
use super::html::{esc, shorten};
use crate::api::sql::{Edge, Node};

const NODE_W: f64 = 250.0;
const TITLE_H: f64 = 22.0;
const METRIC_H: f64 = 14.0;
/// Metric lines drawn in a node (all of them are in its tooltip and the table below).
const MAX_METRIC_LINES: usize = 6;
const PAD: f64 = 8.0;
const CLUSTER_TOP: f64 = 20.0;
const GAP_IN: f64 = 16.0;

/// A metric's total: Spark's value strings are either the value (`1,024`) or a header line
/// and `total (min, med, max ...)` on the next line.
pub fn metric_total(value: &str) -> &str {
    let v = value.trim();
    match v.split_once('\n') {
        Some((_, second)) => second.split(" (").next().unwrap_or(second).trim(),
        None => v,
    }
}

fn node_height(n: &Node) -> f64 {
    TITLE_H + METRIC_H * n.metrics.len().min(MAX_METRIC_LINES) as f64 + 6.0
}

/// Is this the node standing for a whole codegen cluster (it has no edges of its own)?
fn is_cluster(n: &Node) -> bool {
    n.node_name.starts_with("WholeStageCodegen")
}

/// The plan graph; `node_href` links a node to something (none today).
pub fn graph(nodes: &[Node], edges: &[Edge]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    // real operators, and codegen clusters by id
    let ops: Vec<&Node> = nodes.iter().filter(|n| !is_cluster(n)).collect();
    let clusters: HashMap<i64, &Node> = nodes
        .iter()
        .filter(|n| is_cluster(n))
        .filter_map(|n| {
            let id = n
                .node_name
                .trim()
                .strip_prefix("WholeStageCodegen (")?
                .strip_suffix(')')?
                .parse()
                .ok()?;
            Some((id, n))
        })
        .collect();
    // blocks: one per cluster with members, one per operator outside any cluster
    let mut block_of: HashMap<i64, usize> = HashMap::new();
    let mut blocks: Vec<(Option<i64>, Vec<&Node>)> = Vec::new();
    let mut cluster_block: HashMap<i64, usize> = HashMap::new();
    // operators in id order, so the scans (high ids in Spark's numbering) come out stable
    let mut sorted = ops.clone();
    sorted.sort_by_key(|n| n.node_id);
    for n in sorted {
        let b = match n.whole_stage_codegen_id {
            Some(c) => *cluster_block.entry(c).or_insert_with(|| {
                blocks.push((Some(c), Vec::new()));
                blocks.len() - 1
            }),
            None => {
                blocks.push((None, Vec::new()));
                blocks.len() - 1
            }
        };
        blocks[b].1.push(n);
        block_of.insert(n.node_id, b);
    }
    // inside a cluster: members top to bottom in data-flow order (inputs first)
    for (_, members) in blocks.iter_mut() {
        if members.len() < 2 {
            continue;
        }
        let ids: Vec<i64> = members.iter().map(|n| n.node_id).collect();
        let idx: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, x)| (*x, i)).collect();
        let inner: Vec<(usize, usize)> = edges
            .iter()
            .filter_map(|e| Some((*idx.get(&e.from_id)?, *idx.get(&e.to_id)?)))
            .collect();
        let sizes = vec![Size { w: 1.0, h: 1.0 }; ids.len()];
        let (pos, _, _) = layout(&sizes, &inner, Flow::Down, 1.0, 1.0);
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by(|a, b| {
            pos[*a]
                .y
                .total_cmp(&pos[*b].y)
                .then(pos[*a].x.total_cmp(&pos[*b].x))
        });
        let old = members.clone();
        *members = order.into_iter().map(|i| old[i]).collect();
    }
    // block sizes and member offsets
    let mut sizes = Vec::new();
    let mut offsets: HashMap<i64, Pos> = HashMap::new();
    for (cluster, members) in &blocks {
        if cluster.is_some() {
            let mut y = CLUSTER_TOP;
            for n in members {
                offsets.insert(n.node_id, Pos { x: PAD, y });
                y += node_height(n) + GAP_IN;
            }
            sizes.push(Size {
                w: NODE_W + 2.0 * PAD,
                h: y - GAP_IN + PAD,
            });
        } else {
            let n = members[0];
            offsets.insert(n.node_id, Pos { x: 0.0, y: 0.0 });
            sizes.push(Size {
                w: NODE_W,
                h: node_height(n),
            });
        }
    }
    let mut block_edges: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|e| {
            let (f, t) = (*block_of.get(&e.from_id)?, *block_of.get(&e.to_id)?);
            (f != t).then_some((f, t))
        })
        .collect();
    block_edges.sort_unstable();
    block_edges.dedup();
    let (bpos, w, h) = layout(&sizes, &block_edges, Flow::Down, 46.0, 28.0);
    let node_pos = |id: i64| -> Option<(Pos, Size)> {
        let b = *block_of.get(&id)?;
        let off = offsets.get(&id)?;
        let n = ops.iter().find(|n| n.node_id == id)?;
        Some((
            Pos {
                x: bpos[b].x + off.x,
                y: bpos[b].y + off.y,
            },
            Size {
                w: NODE_W,
                h: node_height(n),
            },
        ))
    };

    let margin = 10.0;
    let mut s = format!(
        "<svg id=\"plan-graph\" class=\"dag plan\" viewBox=\"{} {} {:.0} {:.0}\" width=\"{:.0}\" role=\"img\" aria-label=\"Query plan\">{ARROW_DEFS}",
        -margin,
        -margin,
        w + 2.0 * margin,
        h + 2.0 * margin,
        w + 2.0 * margin
    );
    // cluster boxes first, under everything
    for (b, (cluster, _)) in blocks.iter().enumerate() {
        let Some(c) = cluster else { continue };
        let p = bpos[b];
        let sz = sizes[b];
        let title = clusters.get(c);
        let duration = title
            .and_then(|n| n.metrics.first())
            .map(|m| format!(" · {} {}", m.name, metric_total(&m.value)))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<g class=\"cluster\" data-codegen=\"{c}\"><title>WholeStageCodegen ({c}){}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\"/><text x=\"{:.1}\" y=\"{:.1}\">WholeStageCodegen ({c}){}</text></g>",
            esc(&duration),
            p.x,
            p.y,
            sz.w,
            sz.h,
            p.x + 6.0,
            p.y + 14.0,
            esc(&shorten(&duration, 34)),
        );
    }
    for e in edges {
        let (Some((a, sa)), Some((b, sb))) = (node_pos(e.from_id), node_pos(e.to_id)) else {
            continue;
        };
        let _ = write!(
            s,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow)\"/>",
            e.from_id,
            e.to_id,
            super::dag::edge_path(a, sa, b, sb, Flow::Down)
        );
    }
    for n in &ops {
        let Some((p, sz)) = node_pos(n.node_id) else {
            continue;
        };
        let mut tip = format!("{} (node {})", n.node_name, n.node_id);
        if let Some(desc) = n.desc.as_deref().filter(|d| !d.is_empty()) {
            let _ = write!(tip, "\n{}", shorten(desc, 600));
        }
        for m in &n.metrics {
            let _ = write!(tip, "\n{}: {}", m.name, m.value.trim());
        }
        let _ = write!(
            s,
            "<g class=\"node op\" data-node=\"{}\"><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"4\"/><text class=\"title\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            n.node_id,
            esc(&tip),
            p.x,
            p.y,
            sz.w,
            sz.h,
            p.x + 8.0,
            p.y + 16.0,
            esc(&shorten(&n.node_name, 30)),
        );
        for (i, m) in n.metrics.iter().take(MAX_METRIC_LINES).enumerate() {
            let _ = write!(
                s,
                "<text class=\"small\" x=\"{:.1}\" y=\"{:.1}\">{}: {}</text>",
                p.x + 8.0,
                p.y + TITLE_H + 10.0 + i as f64 * METRIC_H,
                esc(&shorten(&m.name, 22)),
                esc(&shorten(metric_total(&m.value), 16)),
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sql::Metric;

    fn node(id: i64, name: &str, cg: Option<i64>) -> Node {
        Node {
            node_id: id,
            node_name: name.into(),
            whole_stage_codegen_id: cg,
            metrics: vec![Metric {
                name: "rows".into(),
                value: "total (min, med, max (stageId: taskId))\n10 (1, 2, 3 (stage 1.0: task 4))"
                    .into(),
            }],
            desc: Some("<desc>".into()),
        }
    }

    #[test]
    fn totals_of_metric_strings() {
        assert_eq!(metric_total("1,024"), "1,024");
        assert_eq!(
            metric_total("total (min, med, max (stageId: taskId))\n4.0 KiB (1.0 KiB, 2.0 KiB, 3.0 KiB (stage 1.0: task 4))"),
            "4.0 KiB"
        );
    }

    #[test]
    fn every_node_and_edge_is_drawn_once() {
        let nodes = vec![
            node(0, "HashAggregate <x>", Some(2)),
            node(1, "WholeStageCodegen (2)", None),
            node(2, "Exchange", None),
            node(3, "HashAggregate", Some(1)),
            node(4, "Project", Some(1)),
            node(5, "WholeStageCodegen (1)", None),
            node(6, "Scan", None),
        ];
        let edges = vec![
            Edge {
                from_id: 6,
                to_id: 4,
            },
            Edge {
                from_id: 4,
                to_id: 3,
            },
            Edge {
                from_id: 3,
                to_id: 2,
            },
            Edge {
                from_id: 2,
                to_id: 0,
            },
        ];
        let svg = graph(&nodes, &edges);
        for id in [0, 2, 3, 4, 6] {
            assert_eq!(
                svg.matches(&format!("data-node=\"{id}\"")).count(),
                1,
                "{svg}"
            );
        }
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
        assert_eq!(svg.matches("class=\"cluster\"").count(), 2);
        assert!(!svg.contains("<x>") && !svg.contains("<desc>"));
    }
}
