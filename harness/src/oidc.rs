//! A real OpenID Connect provider for the sign-in tests: `tests/oidc/provider.mjs`
//! (panva's certified `oidc-provider`, installed by `scripts/test.sh` into
//! `tests/oidc/node_modules`) on a loopback port, with one confidential client.
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::process::Proc;
use crate::{free_port, repo_root};

pub const CLIENT_ID: &str = "fjord";
pub const CLIENT_SECRET: &str = "fjord-test-client-secret";

pub struct Provider {
    pub port: u16,
    _proc: Option<Proc>,
}

impl Provider {
    /// A port for a provider to come (the controllers' config names its issuer before it
    /// runs: it needs their callback address).
    pub fn reserve() -> Self {
        Self {
            port: free_port(),
            _proc: None,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The controllers' `[oidc]` for this provider, with the client secret written under
    /// `dir` and `admins` as administrators.
    pub fn controller_config(&self, dir: &Path, admins: &[&str]) -> anyhow::Result<Value> {
        let secret = dir.join("oidc-client-secret");
        std::fs::write(&secret, CLIENT_SECRET)?;
        Ok(json!({
            "issuer": self.issuer(),
            "client_id": CLIENT_ID,
            "client_secret_file": secret,
            "admin_emails": admins,
        }))
    }

    /// Starts the provider, which sends users back to `redirect_uri`; accounts' e-mail
    /// addresses are `<login>@<domain>`. Returns once it answers discovery.
    pub async fn start(
        &mut self,
        redirect_uri: &str,
        domain: &str,
        log: &Path,
    ) -> anyhow::Result<()> {
        self.start_with(redirect_uri, domain, None, log).await
    }

    /// [`Provider::start`] with a directory: claims of named accounts (keyed by login)
    /// over the defaults, such as `schacHomeOrganization`, `eduPersonAffiliation`,
    /// `groups`; written next to `log`.
    pub async fn start_with(
        &mut self,
        redirect_uri: &str,
        domain: &str,
        directory: Option<&Value>,
        log: &Path,
    ) -> anyhow::Result<()> {
        let script = repo_root().join("tests/oidc/provider.mjs");
        anyhow::ensure!(
            repo_root()
                .join("tests/oidc/node_modules/oidc-provider")
                .is_dir(),
            "tests/oidc/node_modules is missing: run scripts/test.sh (ensure_node_tools installs it)"
        );
        let node = ["/usr/bin/node", "/usr/bin/nodejs"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .context("node not found: install Debian's nodejs (scripts/test.sh does)")?;
        let mut args = [
            script.display().to_string(),
            self.port.to_string(),
            CLIENT_ID.into(),
            CLIENT_SECRET.into(),
            redirect_uri.into(),
            domain.into(),
        ]
        .to_vec();
        if let Some(d) = directory {
            let file = log.with_extension("directory.json");
            std::fs::write(&file, d.to_string())?;
            args.push(file.display().to_string());
        }
        self._proc = Some(Proc::spawn_args(
            "oidc-provider",
            Path::new(node),
            args,
            log,
        )?);
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the OIDC provider did not answer {url} in 10 s; see {}",
            log.display()
        )
    }

    /// Signs `login` in at the controller `base` over plain HTTP, as a browser would
    /// (the controller's `/auth/login`, the provider's login form, its redirects back to
    /// `/auth/callback`): the session cookie (`name=value`).
    pub async fn sign_in_http(&self, base: &str, login: &str) -> anyhow::Result<String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // Cookies by name (everything is on 127.0.0.1; the names do not collide).
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut url = format!("{base}/auth/login");
        let mut form: Option<Vec<(&str, &str)>> = None;
        for _ in 0..20 {
            let cookies = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let req = match form.take() {
                Some(f) => http.post(&url).form(&f),
                None => http.get(&url),
            };
            let resp = req.header("cookie", cookies).send().await?;
            for c in resp.headers().get_all("set-cookie") {
                let pair = c.to_str()?.split(';').next().unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    jar.retain(|(n, _)| n != k);
                    if !v.is_empty() {
                        jar.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
            // Our callback opened the session.
            if url.starts_with(base)
                && let Some((k, v)) = jar.iter().find(|(k, _)| k == "fjord_session")
            {
                return Ok(format!("{k}={v}"));
            }
            let status = resp.status();
            if status.is_redirection() {
                let to = resp.headers()["location"].to_str()?;
                url = reqwest::Url::parse(&url)?.join(to)?.to_string();
                continue;
            }
            let body = resp.text().await?;
            anyhow::ensure!(status.is_success(), "{url}: {status}: {body}");
            // The provider's login page: fill its form in.
            let action = body
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .with_context(|| format!("no login form at {url}: {body}"))?;
            url = reqwest::Url::parse(&url)?.join(action)?.to_string();
            form = Some(vec![("login", login), ("password", "any password")]);
        }
        anyhow::bail!("the sign-in of {login} did not come back to {base}")
    }

    /// An ID token signed with the provider's own key, with `claims` (the tests make
    /// expired ones with it).
    pub async fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let resp = reqwest::Client::new()
            .post(format!("{}/test/sign", self.issuer()))
            .body(claims.to_string())
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "signing: {}", resp.status());
        Ok(resp.text().await?)
    }
}
