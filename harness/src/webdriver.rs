//! Headless Chromium driven through chromedriver's W3C WebDriver HTTP API (Debian's
//! `chromium` and `chromium-driver`), with fake camera and microphone. Enough to open a
//! page, run scripts in it and read results; every browser and driver stops on drop.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::Proc;

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and one headless Chromium session.
    pub async fn start(log_dir: &std::path::Path, name: &str) -> anyhow::Result<Self> {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context(
                "chromedriver not found: install Debian's chromium-driver (scripts/test.sh does)",
            )?;
        let port = crate::free_port();
        let driver = Proc::spawn_args(
            &format!("chromedriver-{name}"),
            &driver_bin,
            vec![format!("--port={port}")],
            &log_dir.join(format!("chromedriver-{name}.log")),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let status = format!("{base}/status");
        crate::eventually(Duration::from_secs(15), "chromedriver to answer", || {
            crate::http_ok(&http, &status)
        })
        .await?;
        let profile = tempfile::Builder::new()
            .prefix("fjord-chromium-")
            .tempdir()?;
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,800",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let session = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("chromedriver did not start a session: {resp}"))?
            .to_owned();
        Ok(Self {
            http,
            base,
            session,
            _driver: driver,
            _profile: profile,
        })
    }

    async fn call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let v: Value = self.http.post(url).json(&body).send().await?.json().await?;
        if let Some(err) = v["value"]["error"].as_str() {
            bail!("webdriver {path}: {err}: {}", v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("url", json!({ "url": url })).await.map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call("execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs an async function body whose last argument is the callback to call with the result.
    pub async fn eval_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call("execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// PNG screenshot of the page.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        use base64_decode as b64;
        let v = self.call_get("screenshot").await?;
        b64(v.as_str().unwrap_or_default())
    }

    async fn call_get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let v: Value = self.http.get(url).send().await?.json().await?;
        Ok(v["value"].clone())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: end the session so Chromium exits before the driver is killed.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let c = reqwest::Client::new();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(3), c.delete(url).send()).await;
                });
            }
        })
        .join();
    }
}

/// Standard base64 (what WebDriver screenshots use).
fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = T.iter().position(|t| *t == c).context("invalid base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
