//! A real Prometheus (Debian's `prometheus`) on a free loopback port, scraping given
//! `/metrics` targets every second, and a small client of its HTTP API. Used to prove
//! that the chart's dashboards and alerts query metrics that exist.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::Proc;

pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    http: reqwest::Client,
}

/// What Prometheus answered for one instant query.
#[derive(Debug)]
pub enum Answer {
    /// The query ran; this many series came back.
    Series(usize),
    /// Prometheus refused it (`errorType`: `error`), e.g. a parse error.
    Refused(String),
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `targets` (`host:port` of `/metrics`) as job
    /// `fjord`, and waits until its API answers.
    pub async fn start(dir: &Path, targets: &[String]) -> anyhow::Result<Self> {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("prometheus not found: install Debian's prometheus (scripts/test.sh does)")?;
        std::fs::create_dir_all(dir)?;
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: fjord\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )?;
        let port = crate::free_port();
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".into(),
        ];
        let proc = Proc::spawn_args("prometheus", &bin, args, &dir.join("prometheus.log"))?;
        let p = Self {
            proc,
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let ready = format!("{}/-/ready", p.url());
        let up = crate::eventually(Duration::from_secs(30), "prometheus to be ready", || {
            let http = p.http.clone();
            let ready = ready.clone();
            async move { crate::http_ok(&http, &ready).await }
        })
        .await;
        if up.is_err() || !p.proc.is_running() {
            bail!(
                "prometheus did not start; see {}",
                p.proc.log_path().display()
            );
        }
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Scrape targets that are not (yet) up, with Prometheus' last error for each.
    pub async fn targets_down(&self) -> anyhow::Result<Vec<String>> {
        let v: Value = self
            .http
            .get(format!("{}/api/v1/targets", self.url()))
            .send()
            .await?
            .json()
            .await?;
        let active = v["data"]["activeTargets"]
            .as_array()
            .context("targets answer without data.activeTargets")?;
        Ok(active
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| format!("{} ({}: {})", t["scrapeUrl"], t["health"], t["lastError"]))
            .collect())
    }

    /// Runs `query` as an instant query now.
    pub async fn query(&self, query: &str) -> anyhow::Result<Answer> {
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await?;
        let v: Value = resp.json().await?;
        if v["status"] == "success" {
            let n = match &v["data"]["result"] {
                Value::Array(series) => series.len(),
                // A scalar or string result is one value.
                Value::Null => 0,
                _ => 1,
            };
            return Ok(Answer::Series(n));
        }
        Ok(Answer::Refused(format!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or("?"),
            v["error"].as_str().unwrap_or("?")
        )))
    }
}
