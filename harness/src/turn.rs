//! coturn (Debian's `coturn`, its `turnserver`) on loopback for the TURN tests: TURN over
//! UDP and TCP on one port, credentials from a shared secret (the TURN REST scheme of the
//! controller's `[turn]`), relaying to loopback peers (the media nodes). No TLS, no CLI,
//! no database but a file in its directory.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::process::Proc;

pub struct Coturn {
    proc: Proc,
    pub port: u16,
    secret_file: PathBuf,
}

impl Coturn {
    /// Starts coturn with its files in `dir`; returns once it accepts TCP.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let secret = crate::pki::random_hex(32);
        let secret_file = dir.join("turn-secret");
        std::fs::write(&secret_file, format!("{secret}\n"))?;
        let port = crate::free_port();
        let d = dir.display();
        let args = [
            "-n".to_owned(),
            "--listening-ip=127.0.0.1".into(),
            format!("--listening-port={port}"),
            "--relay-ip=127.0.0.1".into(),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={secret}"),
            "--realm=fjord.test".into(),
            // The media nodes of the tests live on loopback.
            "--allow-loopback-peers".into(),
            "--no-cli".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--no-multicast-peers".into(),
            format!("--userdb={d}/turndb"),
            format!("--pidfile={d}/turnserver.pid"),
            "--simple-log".into(),
            format!("--log-file={d}/turnserver.log"),
            "--verbose".into(),
        ];
        let proc = Proc::spawn_args(
            "coturn",
            Path::new("/usr/bin/turnserver"),
            args.to_vec(),
            &dir.join("turnserver.out"),
        )
        .context("starting coturn (Debian's coturn package)")?;
        crate::eventually(Duration::from_secs(10), "coturn accepts TCP", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await?;
        Ok(Self {
            proc,
            port,
            secret_file,
        })
    }

    /// The controllers' `[turn]` for this server, offered in `region` over TCP only.
    pub fn controller_config(&self, region: &str) -> serde_json::Value {
        json!({
            "secret_file": self.secret_file,
            "servers": { region: [format!("turn:127.0.0.1:{}?transport=tcp", self.port)] },
        })
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}
