//! The storage pages: cached RDDs (`.../storage/`) and one RDD's distribution over the
//! executors and its partitions (`.../storage/rdd/?id=N`), from the REST API's `rdd_info`.

use std::fmt::Write;

use axum::response::Response;

use super::fmt::{self, Unit};
use super::html::{esc, th};
use super::layout::{render, Tab};
use super::{app_not_found, bad_request, Ctx};
// the UI reads the REST shapes as Spark 4 answers them (every field); the dialect only
// matters to clients wanting byte-identical JSON
use crate::api::sql::{rdd_info, rdd_list};

pub fn page(ctx: &Ctx) -> Response {
    let a = ctx.app();
    let rdds = rdd_list(a, super::DIALECT);
    let mut b = String::new();
    if rdds.is_empty() {
        b.push_str("<p id=\"no-rdds\">No RDD was cached when the application's log ended (Spark logs block updates only with <code>spark.eventLog.logBlockUpdates.enabled=true</code>; cached data that was unpersisted is gone).</p>");
        return render(Some(ctx), Tab::Storage, "Storage", &b);
    }
    let _ = write!(
        b,
        "<table id=\"rdds\" class=\"listing sortable\"><thead><tr>{}{}{}{}{}{}{}</tr></thead><tbody>",
        th("ID", true),
        th("RDD name", false),
        th("Storage level", false),
        th("Cached partitions", true),
        th("Fraction cached", true),
        th("Size in memory", true),
        th("Size on disk", true),
    );
    for r in &rdds {
        let frac = if r.num_partitions > 0 {
            r.num_cached_partitions as f64 / r.num_partitions as f64
        } else {
            0.0
        };
        let _ = write!(
            b,
            "<tr data-rdd=\"{id}\"><td class=\"num\" data-v=\"{id}\">{id}</td><td><a href=\"{}\">{}</a></td><td>{}</td>{}<td class=\"num\" data-v=\"{frac}\">{}</td>{}{}</tr>",
            ctx.href(&format!("storage/rdd/?id={}", r.id)),
            esc(&r.name),
            esc(&r.storage_level),
            fmt::td(Unit::Count, Some(r.num_cached_partitions as f64)),
            fmt::percent_text(frac),
            fmt::td(Unit::Bytes, Some(r.memory_used as f64)),
            fmt::td(Unit::Bytes, Some(r.disk_used as f64)),
            id = r.id,
        );
    }
    b.push_str("</tbody></table>");
    render(Some(ctx), Tab::Storage, "Storage", &b)
}

pub fn rdd_page(ctx: &Ctx) -> Response {
    let Some(id) = ctx.query.int("id") else {
        return bad_request(ctx, Tab::Storage, "The RDD page needs ?id=<RDD id>.");
    };
    let Some(rdd) = ctx.app().storage.rdds.get(&id) else {
        return app_not_found(ctx, Tab::Storage, &format!("Unknown RDD {id}."));
    };
    let r = rdd_info(rdd);
    let mut b = String::new();
    let _ = write!(
        b,
        "<dl class=\"facts\"><div><dt>Storage level</dt><dd>{}</dd></div><div><dt>Cached partitions</dt><dd>{} of {}</dd></div><div><dt>Memory</dt><dd>{}</dd></div><div><dt>Disk</dt><dd>{}</dd></div></dl>",
        esc(&r.storage_level),
        fmt::group(r.num_cached_partitions),
        fmt::group(r.num_partitions),
        fmt::bytes(r.memory_used),
        fmt::bytes(r.disk_used),
    );
    if let Some(dist) = &r.data_distribution {
        let _ = write!(
            b,
            "<h2 id=\"distribution-h\">Data distribution on {} executors</h2><table id=\"distribution\" class=\"listing sortable\"><thead><tr>{}{}{}{}</tr></thead><tbody>",
            dist.len(),
            th("Address", false),
            th("Memory used", true),
            th("Memory remaining", true),
            th("Disk used", true),
        );
        for d in dist {
            let _ = write!(
                b,
                "<tr><td>{}</td>{}{}{}</tr>",
                esc(&d.address),
                fmt::td(Unit::Bytes, Some(d.memory_used as f64)),
                fmt::td(Unit::Bytes, Some(d.memory_remaining as f64)),
                fmt::td(Unit::Bytes, Some(d.disk_used as f64)),
            );
        }
        b.push_str("</tbody></table>");
    }
    let parts = r.partitions.as_deref().unwrap_or(&[]);
    let _ = write!(
        b,
        "<h2 id=\"partitions-h\">{} partitions</h2><table id=\"partitions\" class=\"listing sortable\"><thead><tr>{}{}{}{}{}</tr></thead><tbody>",
        parts.len(),
        th("Block", false),
        th("Storage level", false),
        th("Size in memory", true),
        th("Size on disk", true),
        th("Executors", false),
    );
    for p in parts {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td>{}{}<td>{}</td></tr>",
            esc(&p.block_name),
            esc(&p.storage_level),
            fmt::td(Unit::Bytes, Some(p.memory_used as f64)),
            fmt::td(Unit::Bytes, Some(p.disk_used as f64)),
            esc(&p.executors.join(", ")),
        );
    }
    b.push_str("</tbody></table>");
    render(
        Some(ctx),
        Tab::Storage,
        &format!("RDD {}: {}", r.id, r.name),
        &b,
    )
}
