//! The environment page (`.../environment/`): runtime, Spark, resource profile, Hadoop,
//! system and metrics properties and the classpath, each a sortable, filterable table.
//! Values are redacted as the REST API redacts them (Spark's default
//! `spark.redaction.regex`), by the same function.

use std::fmt::Write;

use axum::response::Response;

use super::html::{esc, th};
use super::layout::{render, Tab};
use super::Ctx;
use crate::api::json::environment;

fn table(id: &str, title: &str, rows: &[(String, String)], open: bool, b: &mut String) {
    let _ = write!(
        b,
        "<details id=\"{id}-d\"{}><summary><h2 id=\"{id}-h\">{} ({})</h2></summary>\
<p><input type=\"search\" class=\"filter\" data-table=\"{id}\" placeholder=\"Filter rows\" aria-label=\"Filter {}\"></p>\
<table id=\"{id}\" class=\"listing sortable kv\"><thead><tr>{}{}</tr></thead><tbody>",
        if open { " open" } else { "" },
        esc(title),
        rows.len(),
        esc(title),
        th("Name", false),
        th("Value", false),
    );
    let mut sorted: Vec<&(String, String)> = rows.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        let _ = write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    b.push_str("</tbody></table></details>");
}

pub fn page(ctx: &Ctx) -> Response {
    let a = ctx.app();
    let Some(env) = &a.environment else {
        return render(
            Some(ctx),
            Tab::Environment,
            "Environment",
            "<p>No environment was logged.</p>",
        );
    };
    let shown = environment(env, a);
    let mut b = String::new();
    let runtime = vec![
        (
            "Java Version".to_string(),
            shown.runtime.java_version.clone().unwrap_or_default(),
        ),
        (
            "Java Home".to_string(),
            shown.runtime.java_home.clone().unwrap_or_default(),
        ),
        (
            "Scala Version".to_string(),
            shown.runtime.scala_version.clone().unwrap_or_default(),
        ),
    ];
    table("runtime", "Runtime information", &runtime, true, &mut b);
    table(
        "spark-props",
        "Spark properties",
        &shown.spark_properties,
        true,
        &mut b,
    );
    // resource profiles, one row per requested resource
    let mut profiles = Vec::new();
    for p in &shown.resource_profiles {
        for (name, r) in &p.executor_resources.0 {
            profiles.push((
                format!("profile {} · executor {name}", p.id),
                format!(
                    "{}{}{}",
                    r.amount,
                    if r.discovery_script.is_empty() {
                        String::new()
                    } else {
                        format!(", discovery script {}", r.discovery_script)
                    },
                    if r.vendor.is_empty() {
                        String::new()
                    } else {
                        format!(", vendor {}", r.vendor)
                    }
                ),
            ));
        }
        for (name, r) in &p.task_resources.0 {
            profiles.push((
                format!("profile {} · task {name}", p.id),
                r.amount.to_string(),
            ));
        }
    }
    table(
        "resource-profiles",
        "Resource profiles",
        &profiles,
        false,
        &mut b,
    );
    table(
        "hadoop-props",
        "Hadoop properties",
        &shown.hadoop_properties,
        false,
        &mut b,
    );
    table(
        "system-props",
        "System properties",
        &shown.system_properties,
        false,
        &mut b,
    );
    table(
        "metrics-props",
        "Metrics properties",
        &shown.metrics_properties,
        false,
        &mut b,
    );
    table(
        "classpath",
        "Classpath entries",
        &shown.classpath_entries,
        false,
        &mut b,
    );
    render(Some(ctx), Tab::Environment, "Environment", &b)
}
