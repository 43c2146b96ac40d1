//! The chart's Grafana dashboards and alerts against a live cluster: bots in a meeting that
//! is being recorded, Debian's Prometheus scraping every binary. Every dashboard query
//! (panels and template variables) parses and returns at least one series, every alert
//! expression parses, and every metric they name is exported by some binary.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use harness::prometheus::{Answer, Prometheus};
use serde_json::Value;

use crate::recording;

fn chart_dir() -> PathBuf {
    harness::repo_root().join("helm/fjord")
}

/// Every query of every dashboard: (dashboard, panel or variable, PromQL as Prometheus
/// gets it, with Grafana's variables replaced by what "All" and the default interval mean).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards: {files:?}");
    for f in files {
        let d: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let board = d["title"].as_str().unwrap().to_owned();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap();
                out.push((
                    board.clone(),
                    p["title"].to_string(),
                    grafana_to_promql(expr),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            // label_values(selector, label): the selector must find series.
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(sel, _)| sel)
                .unwrap_or_else(|| panic!("{board}: variable query {q} is not label_values"));
            out.push((
                board.clone(),
                format!("variable {}", v["name"]),
                grafana_to_promql(inner),
            ));
        }
    }
    out
}

fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$region", ".*")
        .replace("$node", ".*")
}

/// Every alert of the rules file the chart's PrometheusRule carries: (name, expression).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push((
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(out.len() >= 6, "alerts: {out:?}");
    out
}

/// The `fjord_*` metric names a query uses (a histogram's `_bucket` series by its name).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("fjord_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Whether `text` (a `/metrics` page) has a sample of `name`.
fn exported(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_returns_series_and_every_alert_parses_against_live_metrics() {
    let (c, api, base, meeting, host_key, bots) = recording::recorded_meeting(1).await;
    // A participant in another region: the meeting spans two media nodes (relay links).
    let far = crate::join_bot(&base, &meeting, "Far", Some("stockholm"), None).await;
    let rec = recording::start(&api, &base, &meeting, &host_key).await;

    // Every binary's /metrics: the controllers', the media nodes' and the recording node's.
    let mut targets: Vec<String> = c
        .controllers
        .iter()
        .map(|k| format!("127.0.0.1:{}", k.port))
        .collect();
    targets.extend(
        c.media
            .iter()
            .chain(c.recording.iter())
            .map(|n| format!("127.0.0.1:{}", n.http)),
    );
    let prom = Prometheus::start(&c.dir.join("prometheus"), &targets)
        .await
        .unwrap();
    let scraped = harness::eventually(Duration::from_secs(30), "every target scraped", || async {
        prom.targets_down()
            .await
            .ok()
            .filter(|down| down.is_empty())
            .map(|_| ())
    })
    .await;
    if let Err(e) = scraped {
        panic!("{e}: {:?}", prom.targets_down().await);
    }
    // rate() needs two samples of a series inside its window; scraped every second.
    harness::eventually(
        Duration::from_secs(15),
        "two scrapes of every target",
        || async {
            match prom.query("count_over_time(up[1m]) >= 2").await {
                Ok(Answer::Series(n)) => (n == targets.len()).then_some(()),
                _ => None,
            }
        },
    )
    .await
    .unwrap();

    let queries = dashboard_queries();
    let alerts = alert_rules();
    let mut failures = Vec::new();
    for (board, panel, q) in &queries {
        // Series appear as the cluster runs (the leader's census, the first rates):
        // give each query a few seconds before calling it empty.
        let got = harness::eventually(Duration::from_secs(15), q, || async {
            match prom.query(q).await {
                Ok(Answer::Series(n)) if n > 0 => Some(Ok(n)),
                Ok(Answer::Refused(e)) => Some(Err(e)),
                _ => None,
            }
        })
        .await;
        match got {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(format!("{board} / {panel}: {q}: refused: {e}")),
            Err(_) => failures.push(format!("{board} / {panel}: {q}: no series")),
        }
    }
    for (name, expr) in &alerts {
        match prom.query(expr).await.unwrap() {
            Answer::Series(_) => {}
            Answer::Refused(e) => failures.push(format!("alert {name}: {expr}: refused: {e}")),
        }
    }
    // Every metric named anywhere is exported by some binary (read from the live pages,
    // now that the meeting and the recording have run a while).
    let mut pages = Vec::new();
    for t in &targets {
        pages.push(crate::metrics_text(&format!("http://{t}")).await);
    }
    let mut names = BTreeSet::new();
    for q in queries
        .iter()
        .map(|(_, _, q)| q)
        .chain(alerts.iter().map(|(_, e)| e))
    {
        names.extend(metric_names(q));
    }
    assert!(names.len() > 20, "{names:?}");
    for n in &names {
        if !pages.iter().any(|p| exported(p, n)) {
            failures.push(format!("metric {n} is exported by no binary"));
        }
    }
    eprintln!(
        "{} dashboard queries, {} alerts, {} metric names checked",
        queries.len(),
        alerts.len(),
        names.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    recording::stop(
        &api,
        &base,
        rec["recording_id"].as_str().unwrap(),
        &host_key,
    )
    .await;
    for (b, _) in bots {
        b.leave().await;
    }
    far.leave().await;
}

#[test]
fn metric_names_are_found_whole_in_a_query() {
    let names = metric_names(
        "sum by (le) (rate(fjord_a_bucket{node=~\"x\"}[1m])) / on (node) fjord_b and not_fjord_c",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["fjord_a_bucket".to_string(), "fjord_b".to_string()]
    );
    assert!(exported("fjord_b{node=\"n\"} 1\nfjord_bc 2", "fjord_b"));
    assert!(!exported("# HELP fjord_b x\nfjord_bc 2", "fjord_b"));
}
