//! The Grafana dashboard and the Prometheus alert rules in `configs/monitoring/` name only metrics
//! the daemon exposes, and every metric the daemon exposes is watched by one of them. A renamed or
//! removed metric fails here instead of leaving an empty panel or an alert that never fires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use roadsight::telemetry::Metrics;

const DASHBOARD: &str = "configs/monitoring/roadsight-dashboard.json";
const RULES: &str = "configs/monitoring/roadsight-alerts.yml";
const PREFIX: &str = "roadsight_";

/// Families the daemon exposes on purpose with neither a panel nor an alert, each with the reason.
/// Empty: every family is watched. Add a family here only with a comment saying why.
const UNWATCHED: &[&str] = &[];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The daemon's exposition: family name (as on its `# TYPE` line) → the sample names it may
/// carry. prometheus-client writes `# HELP`/`# TYPE` for every registered family, with or without
/// series, so families whose series need a running stage (uplink) are listed too.
fn exposed() -> BTreeMap<String, Vec<String>> {
    let metrics = Metrics::new();
    let _north = metrics.camera("north");
    let text = metrics.encode();
    let mut families = BTreeMap::new();
    for line in text.lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|t| t.split_once(' ')) else { continue };
        let samples: Vec<String> = match kind {
            // prometheus-client 0.23 writes no `_created` sample for a plain Counter.
            "counter" => vec![format!("{name}_total")],
            "gauge" | "unknown" => vec![name.to_owned()],
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
            "info" => vec![format!("{name}_info")],
            other => panic!("`{name}` has type `{other}`: teach this test the sample names of that type"),
        };
        families.insert(name.to_owned(), samples);
    }
    // The suffix rules above must describe what the encoder really writes.
    let legal: BTreeSet<&str> = families.values().flatten().map(String::as_str).collect();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(legal.contains(sample), "sample `{sample}` is not derived from any # TYPE line:\n{text}");
    }
    assert!(
        families.contains_key("roadsight_uplink_backlog_entries"),
        "a family without series (uplink, not running) still has its # TYPE line:\n{text}"
    );
    families
}

/// Every `roadsight_[a-z0-9_]+` token in `text`, with its line number (1-based).
fn metric_tokens(text: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(PREFIX) {
            let glued = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
            if !glued {
                tokens.push((n + 1, tail[..len].to_owned()));
            }
            rest = &tail[len..];
        }
    }
    tokens
}

#[test]
fn dashboard_and_rules_name_only_metrics_the_daemon_exposes() {
    let families = exposed();
    let legal: BTreeSet<&str> = families.values().flatten().map(String::as_str).collect();
    let mut unknown = Vec::new();
    for file in [DASHBOARD, RULES] {
        let tokens = metric_tokens(&read(file));
        assert!(!tokens.is_empty(), "{file} names no roadsight_ metric");
        for (line, token) in tokens {
            if !legal.contains(token.as_str()) {
                unknown.push(format!("{file}:{line}: {token}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not a sample name the daemon exposes:\n  {}\nexposed: {legal:?}",
        unknown.join("\n  ")
    );
}

#[test]
fn every_exposed_family_has_a_panel_or_an_alert() {
    let families = exposed();
    let named: BTreeSet<String> =
        [DASHBOARD, RULES].iter().flat_map(|f| metric_tokens(&read(f))).map(|(_, token)| token).collect();
    for family in UNWATCHED {
        assert!(families.contains_key(*family), "UNWATCHED lists `{family}`, which the daemon no longer exposes");
    }
    let unwatched: Vec<&str> = families
        .iter()
        .filter(|(family, samples)| {
            !UNWATCHED.contains(&family.as_str()) && !samples.iter().any(|s| named.contains(s))
        })
        .map(|(family, _)| family.as_str())
        .collect();
    assert!(
        unwatched.is_empty(),
        "exposed but in neither {DASHBOARD} nor {RULES} (watch them, or list them in UNWATCHED with a reason): {unwatched:?}"
    );
}

#[test]
fn dashboard_is_json_grafana_can_import() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"));
    let panels = dashboard["panels"].as_array().unwrap_or_else(|| panic!("{DASHBOARD} has no `panels` array"));
    assert!(!panels.is_empty(), "{DASHBOARD}: `panels` is empty");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{DASHBOARD}: a panel without an id: {panel}"));
        assert!(ids.insert(id), "{DASHBOARD}: panel id {id} is used twice");
        assert!(panel["gridPos"].is_object(), "{DASHBOARD}: panel {id} has no gridPos");
    }
    // Imports anywhere: Prometheus is always picked through a variable, never a fixed uid.
    let mut fixed = Vec::new();
    find_fixed_datasources(&dashboard, &mut fixed);
    assert!(fixed.is_empty(), "{DASHBOARD}: data sources bound to a fixed uid: {fixed:?}");
}

fn find_fixed_datasources(value: &serde_json::Value, fixed: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(ds) = map.get("datasource").filter(|ds| ds["type"] == "prometheus") {
                let uid = ds["uid"].as_str().unwrap_or_default();
                if !uid.starts_with("${") {
                    fixed.push(uid.to_owned());
                }
            }
            map.values().for_each(|v| find_fixed_datasources(v, fixed));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| find_fixed_datasources(v, fixed)),
        _ => {}
    }
}

#[test]
fn every_alert_rule_has_an_expression_a_duration_and_a_severity() {
    let rules = read(RULES);
    assert!(rules.lines().any(|l| l.trim_end() == "groups:"), "{RULES} has no top-level `groups:`");
    // Line-based: an alert runs from its `- alert:` line to the next rule or group.
    let mut alerts: Vec<(String, Vec<&str>)> = Vec::new();
    let mut in_alert = false;
    for line in rules.lines() {
        let item = line.trim_start();
        if let Some(name) = item.strip_prefix("- alert:") {
            alerts.push((name.trim().to_owned(), Vec::new()));
            in_alert = true;
        } else if item.starts_with("- record:") || item.starts_with("- name:") {
            in_alert = false;
        } else if in_alert && let Some((_, body)) = alerts.last_mut() {
            body.push(item);
        }
    }
    assert!(!alerts.is_empty(), "{RULES} has no `- alert:` rule");
    let mut problems = Vec::new();
    for (name, body) in &alerts {
        for key in ["expr:", "for:", "summary:", "description:"] {
            if !body.iter().any(|l| l.starts_with(key)) {
                problems.push(format!("{name}: no `{key}`"));
            }
        }
        let severity = body.iter().find_map(|l| l.strip_prefix("severity:")).map(str::trim);
        if !matches!(severity, Some("critical" | "warning" | "info")) {
            problems.push(format!("{name}: severity {severity:?}, expected critical, warning or info"));
        }
    }
    assert!(problems.is_empty(), "{RULES}:\n  {}", problems.join("\n  "));
}
