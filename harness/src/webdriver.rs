//! Headless browsers driven through the W3C WebDriver HTTP API, with fake camera and
//! microphone: Chromium through chromedriver (Debian's `chromium` and `chromium-driver`)
//! and Firefox through geckodriver (Debian's `firefox-esr`; geckodriver from crates.io,
//! which scripts/deps.sh installs). Enough to open a page, run scripts in it and read
//! results; every browser and driver stops on drop.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Proc,
    profile: tempfile::TempDir,
}

fn find(candidates: &[PathBuf], missing: &str) -> anyhow::Result<PathBuf> {
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .context(missing.to_owned())
}

impl Browser {
    /// Starts chromedriver on a free port and one headless Chromium session.
    pub async fn start(log_dir: &std::path::Path, name: &str) -> anyhow::Result<Self> {
        Self::start_engine(Engine::Chromium, log_dir, name).await
    }

    /// [`Browser::start`] for a reader of `lang` (e.g. `nb`): the browser's language and
    /// its `Accept-Language`.
    pub async fn start_lang(
        log_dir: &std::path::Path,
        name: &str,
        lang: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(Engine::Chromium, log_dir, name, Some(lang)).await
    }

    /// Starts the driver of `engine` on a free port and one headless browser session.
    pub async fn start_engine(
        engine: Engine,
        log_dir: &std::path::Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(engine, log_dir, name, None).await
    }

    async fn start_with(
        engine: Engine,
        log_dir: &std::path::Path,
        name: &str,
        lang: Option<&str>,
    ) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let profile = tempfile::Builder::new()
            .prefix("fjord-browser-")
            .tempdir()?;
        let (driver_bin, driver_args, caps) = match engine {
            Engine::Chromium => (
                find(
                    &[
                        "/usr/bin/chromedriver".into(),
                        "/usr/lib/chromium/chromedriver".into(),
                    ],
                    "chromedriver not found: install Debian's chromium-driver (scripts/test.sh does)",
                )?,
                vec![format!("--port={port}")],
                chromium_caps(&profile, lang),
            ),
            Engine::Firefox => {
                let home = std::env::var("CARGO_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|_| {
                        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
                    });
                (
                    find(
                        &[home.join("bin/geckodriver"), "/usr/bin/geckodriver".into()],
                        "geckodriver not found: scripts/deps.sh installs it with cargo install",
                    )?,
                    vec![
                        format!("--port={port}"),
                        "--host=127.0.0.1".into(),
                        // Its own profile copies go to the test's temporary directory.
                        format!("--profile-root={}", profile.path().display()),
                    ],
                    firefox_caps(),
                )
            }
        };
        let driver = Proc::spawn_args(
            &format!("webdriver-{name}"),
            &driver_bin,
            driver_args,
            &log_dir.join(format!("webdriver-{name}.log")),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let status = format!("{base}/status");
        crate::eventually(Duration::from_secs(15), "the WebDriver to answer", || {
            crate::http_ok(&http, &status)
        })
        .await?;
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let session = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("the WebDriver did not start a session: {resp}"))?
            .to_owned();
        Ok(Self {
            http,
            base,
            session,
            _driver: driver,
            profile,
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

    /// Where a page's downloads land (Chromium).
    pub fn downloads(&self) -> PathBuf {
        self.profile.path().join("downloads")
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

fn chromium_caps(profile: &tempfile::TempDir, lang: Option<&str>) -> Value {
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
    let downloads = profile.path().join("downloads");
    // What a page downloads lands in the profile, without asking.
    let mut prefs = json!({
        "download.default_directory": downloads.display().to_string(),
        "download.prompt_for_download": false,
        // A page may download more than one file (a second recording).
        "profile.default_content_setting_values.automatic_downloads": 1,
    });
    if let Some(l) = lang {
        args.push(format!("--lang={l}"));
        prefs["intl.accept_languages"] = json!(l);
    }
    json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            "prefs": prefs,
        },
    }}})
}

fn firefox_caps() -> Value {
    json!({ "capabilities": { "alwaysMatch": {
        "browserName": "firefox",
        "moz:firefoxOptions": {
            "binary": "/usr/bin/firefox-esr",
            "args": ["-headless"],
            "prefs": {
                // Fake camera and microphone, no permission prompt.
                "media.navigator.streams.fake": true,
                "media.navigator.permission.disabled": true,
                // Plain host candidates (no mDNS names). Firefox does not use loopback
                // for WebRTC: tests with it run in a network namespace (crate::netns).
                "media.peerconnection.ice.obfuscate_host_addresses": false,
                "media.autoplay.default": 0,
                "media.autoplay.blocking_policy": 0,
                // No downloads of the OpenH264 plugin and nothing else phoning home.
                "media.gmp-manager.updateEnabled": false,
                "app.update.enabled": false,
                "browser.shell.checkDefaultBrowser": false,
                "datareporting.policy.dataSubmissionEnabled": false,
                "toolkit.telemetry.enabled": false,
                "network.captive-portal-service.enabled": false,
                "browser.safebrowsing.downloads.remote.enabled": false,
            },
        },
    }}})
}
