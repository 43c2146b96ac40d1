//! Meeting participants on aiortc (Python), the third WebRTC stack of the media tests:
//! `tests/media/peer.py` run in the tools' venv (`target/py-tools`, which
//! `scripts/test.sh` makes). Each peer runs for a fixed time and then reports, as JSON,
//! every frame it sent and what it received per publisher and RTP timestamp.
use std::collections::HashMap;
use std::process::Stdio;

use anyhow::Context;
use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::{py_tools, repo_root};

/// How an aiortc peer takes part.
#[derive(Clone, Debug, Default)]
pub struct PeerSpec {
    pub name: String,
    /// Publish Opus and a VP8 test pattern (320×240, 15 fps).
    pub publish: bool,
    /// The pattern carries a moving block of random luma, so VP8 spends its whole
    /// target bitrate (≈ 500 kbps in aiortc) instead of a few kbps on a ramp.
    pub noise: bool,
    /// The VP8 encoder's target in kbps (aiortc's default: 500).
    pub bitrate_kbps: Option<u32>,
    /// Answer the node's offers with every m-line `inactive`.
    pub answer_inactive: bool,
    /// Send an offer that is no SDP before the real one.
    pub bad_first_offer: bool,
    /// Seconds to stay once the node answered.
    pub seconds: f64,
    /// Run as this user (with `setpriv`), for example one whose UDP a test blocks.
    pub uid: Option<u32>,
}

/// What a peer reported.
#[derive(Debug, Deserialize)]
pub struct PeerReport {
    pub participant_id: String,
    /// The `error` messages the node sent it.
    pub errors: Vec<serde_json::Value>,
    /// Per kind (`audio`, `video`): (RTP timestamp, packets, Unix ms) of every frame sent.
    pub sent: HashMap<String, Vec<(u32, u32, u64)>>,
    /// Per publisher and kind: packets received per RTP timestamp.
    pub received: HashMap<String, HashMap<String, HashMap<u32, u32>>>,
    /// Per publisher and kind: when (Unix ms) the last packet of each RTP timestamp came.
    #[serde(default)]
    pub completed: HashMap<String, HashMap<String, HashMap<u32, u64>>>,
    /// RTP packets received on any m-line.
    pub rtp_received: u64,
    /// How many TURN servers the join answer offered.
    pub ice_servers: usize,
    /// The type of the peer's side of the candidate pair ICE chose (`host`, `relay`, …).
    pub local_candidate: Option<String>,
}

pub struct AiortcPeer {
    child: Child,
    name: String,
}

impl AiortcPeer {
    pub fn spawn(controller: &str, meeting: &str, spec: &PeerSpec) -> anyhow::Result<Self> {
        let python = py_tools().join("bin/python");
        anyhow::ensure!(
            python.exists(),
            "{} is missing: run scripts/test.sh (ensure_python_tools makes it)",
            python.display()
        );
        let mut cmd = match spec.uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .args(["--clear-groups", "--"])
                    .arg(python);
                c
            }
            None => Command::new(python),
        };
        cmd.arg(repo_root().join("tests/media/peer.py"))
            .args(["--controller", controller, "--meeting", meeting])
            .args(["--name", &spec.name])
            .args(["--duration", &spec.seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if spec.publish {
            cmd.arg("--publish");
        }
        if spec.noise {
            cmd.arg("--noise");
        }
        if let Some(kbps) = spec.bitrate_kbps {
            cmd.args(["--bitrate", &kbps.to_string()]);
        }
        if spec.answer_inactive {
            cmd.args(["--answer", "inactive"]);
        }
        if spec.bad_first_offer {
            cmd.arg("--bad-first-offer");
        }
        let child = cmd.spawn().context("start tests/media/peer.py")?;
        Ok(Self {
            child,
            name: spec.name.clone(),
        })
    }

    /// Waits for the peer to finish and reads its report.
    pub async fn report(self) -> anyhow::Result<PeerReport> {
        let out = self.child.wait_with_output().await?;
        anyhow::ensure!(
            out.status.success(),
            "aiortc peer {} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "aiortc peer {}: report {:?}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
