//! Meeting participants on aiortc (Python), the third WebRTC stack of the media tests:
//! `tests/media/peer.py` run in the tools' venv (`target/py-tools`, which
//! `scripts/test.sh` makes). Each peer runs for a fixed time and then reports, as JSON,
//! every frame it sent and what it received per publisher and RTP timestamp. The same
//! peers can take part in a room of Janus's VideoRoom instead ([`Room::Janus`]), so that
//! a benchmark can compare what one client stack gets through either server.
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

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

/// Where a peer takes part.
#[derive(Clone, Debug)]
pub enum Room {
    /// A Fjord meeting, joined through the controller at `controller` (its URL).
    Fjord { controller: String, meeting: String },
    /// A room of Janus's VideoRoom (HTTP API at `api`, `http://…/janus`): a subscriber
    /// waits for `publishers` feeds and subscribes to them all; report ids are feed ids.
    Janus {
        api: String,
        room: u64,
        publishers: usize,
    },
}

impl PeerReport {
    /// (RTP timestamp, packets) of every `kind` frame this peer sent whose first packet
    /// left within `window` (Unix ms).
    pub fn frames_sent(&self, kind: &str, window: std::ops::Range<u64>) -> Vec<(u32, u32)> {
        self.sent
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|&&(_, _, at)| window.contains(&at))
            .map(|&(ts, n, _)| (ts, n))
            .collect()
    }
}

pub struct AiortcPeer {
    child: Child,
    name: String,
}

impl AiortcPeer {
    /// A peer in the Fjord meeting `meeting` of the controller at `controller`.
    pub fn spawn(controller: &str, meeting: &str, spec: &PeerSpec) -> anyhow::Result<Self> {
        let room = Room::Fjord {
            controller: controller.to_owned(),
            meeting: meeting.to_owned(),
        };
        Self::spawn_in(&room, spec)
    }

    /// A peer in `room`, of Fjord or of Janus.
    pub fn spawn_in(room: &Room, spec: &PeerSpec) -> anyhow::Result<Self> {
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
        cmd.arg(repo_root().join("tests/media/peer.py"));
        match room {
            Room::Fjord {
                controller,
                meeting,
            } => cmd.args(["--controller", controller, "--meeting", meeting]),
            Room::Janus {
                api,
                room,
                publishers,
            } => cmd
                .args(["--janus", api])
                .args(["--room", &room.to_string()])
                .args(["--publishers", &publishers.to_string()]),
        };
        cmd.args(["--name", &spec.name])
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

/// How many of the frames in `sent` ((RTP timestamp, packets) as a publisher sent them)
/// a subscriber got, as `got` (packets per RTP timestamp) has them: `(arrived, whole)`,
/// frames of which any packet came, and frames that came in exactly as many packets.
///
/// A server may rewrite the RTP timestamps it forwards by a constant offset (Janus starts
/// each subscription's at zero). Candidate offsets are those that many of the first
/// frames of `sent` agree on; a frame rate makes several agree (one per frame of shift),
/// so the one under which most frames came whole wins (packet counts differ from frame to
/// frame; a shift by whole frames breaks them), the smallest on a tie, so that a server
/// that keeps the timestamps (offset 0) counts alike.
pub fn frames_got(sent: &[(u32, u32)], got: &HashMap<u32, u32>) -> (usize, usize) {
    let mut votes: HashMap<u32, usize> = HashMap::new();
    for &(ts, _) in sent.iter().take(64) {
        for &r in got.keys() {
            *votes.entry(r.wrapping_sub(ts)).or_default() += 1;
        }
    }
    let most = votes.values().copied().max().unwrap_or(0);
    let count = |offset: u32| {
        let at = |ts: u32| got.get(&ts.wrapping_add(offset));
        let arrived = sent.iter().filter(|&&(ts, _)| at(ts).is_some()).count();
        let whole = sent.iter().filter(|&&(ts, n)| at(ts) == Some(&n)).count();
        (arrived, whole)
    };
    votes
        .into_iter()
        .filter(|&(_, n)| n > 0 && 2 * n >= most)
        .map(|(offset, _)| (count(offset), offset))
        .max_by_key(|&((_, whole), offset)| {
            (whole, std::cmp::Reverse(offset.min(offset.wrapping_neg())))
        })
        .map_or((0, 0), |(c, _)| c)
}

/// A high-bitrate load of aiortc peers: publishers whose VP8 encoders spend their whole
/// target (a moving block of noise) and listening subscribers, all in one room.
#[derive(Clone, Debug)]
pub struct Load {
    pub publishers: usize,
    pub subscribers: usize,
    /// Each publisher's VP8 target.
    pub bitrate_kbps: u32,
    /// From the last publisher's first frame to the window: every subscriber is
    /// connected and past its first keyframe by then.
    pub settle: Duration,
    /// The window whose frames are counted.
    pub window: Duration,
}

/// Of one kind of media, over a [`Load`]'s window: the frames the publishers sent times
/// the subscribers, how many reached a subscriber at all, and how many whole.
#[derive(Default, Debug)]
pub struct Tally {
    pub expected: usize,
    pub arrived: usize,
    pub whole: usize,
}

impl Tally {
    /// Whole frames as a share of those expected.
    pub fn share(&self) -> f64 {
        self.whole as f64 / self.expected.max(1) as f64
    }
}

impl Load {
    /// Runs the publishers and subscribers in `room` and tallies, per kind (audio, video),
    /// what the subscribers got of the frames sent in the window.
    pub async fn run(&self, room: &Room) -> anyhow::Result<[Tally; 2]> {
        let settle_ms = self.settle.as_millis() as u64;
        let window_ms = self.window.as_millis() as u64;
        let peer_secs = (settle_ms + window_ms) as f64 / 1_000.0 + 4.0;
        // Subscribers first (on Janus they wait for the publishers' feeds); they stay longer.
        let subscribers = (0..self.subscribers)
            .map(|i| {
                let spec = PeerSpec {
                    name: format!("aiortc-sub-{i}"),
                    seconds: peer_secs + 4.0,
                    ..PeerSpec::default()
                };
                AiortcPeer::spawn_in(room, &spec)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let publishers = (0..self.publishers)
            .map(|i| {
                let spec = PeerSpec {
                    name: format!("aiortc-pub-{i}"),
                    publish: true,
                    noise: true,
                    bitrate_kbps: Some(self.bitrate_kbps),
                    seconds: peer_secs,
                    ..PeerSpec::default()
                };
                AiortcPeer::spawn_in(room, &spec)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut pubs: Vec<PeerReport> = Vec::new();
        for p in publishers {
            pubs.push(p.report().await?);
        }
        let mut subs: Vec<PeerReport> = Vec::new();
        for s in subscribers {
            subs.push(s.report().await?);
        }
        // The window starts `settle` after the last publisher's first video frame.
        let first = |r: &PeerReport| {
            r.sent
                .get("video")
                .and_then(|f| f.iter().map(|f| f.2).min())
        };
        let mut from = 0;
        for r in &pubs {
            let at = first(r)
                .ok_or_else(|| anyhow::anyhow!("publisher {} sent no video", r.participant_id))?;
            from = from.max(at + settle_ms);
        }
        let to = from + window_ms;
        let mut tally: [Tally; 2] = Default::default();
        for (i, kind) in ["audio", "video"].into_iter().enumerate() {
            for p in &pubs {
                let sent = p.frames_sent(kind, from..to);
                anyhow::ensure!(
                    !sent.is_empty(),
                    "publisher {} sent no {kind} in the window",
                    p.participant_id
                );
                let packets: u32 = sent.iter().map(|f| f.1).sum();
                let empty = Default::default();
                for s in &subs {
                    let got = s
                        .received
                        .get(&p.participant_id)
                        .and_then(|k| k.get(kind))
                        .unwrap_or(&empty);
                    let (arrived, whole) = frames_got(&sent, got);
                    let got_packets: u32 = got.values().sum();
                    eprintln!(
                        "  {} from {} {kind}: {arrived}/{} frames arrived, {whole} whole; \
                     {packets} packets sent in the window, {got_packets} received in all",
                        s.participant_id,
                        p.participant_id,
                        sent.len()
                    );
                    tally[i].expected += sent.len();
                    tally[i].arrived += arrived;
                    tally[i].whole += whole;
                }
            }
        }
        Ok(tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` frames of a 15 fps video: 6,000 ticks apart, a keyframe of 15 packets every
    /// 30, the others 5 to 8.
    fn frames(from: u32, n: u32) -> Vec<(u32, u32)> {
        (0..n)
            .map(|i| {
                let packets = if i % 30 == 0 { 15 } else { 5 + i % 4 };
                (from.wrapping_add(i * 6_000), packets)
            })
            .collect()
    }

    #[test]
    fn frames_got_counts_whole_frames_under_an_offset_and_without_one() {
        // The receiver got 20 frames before the window and 20 after it, as in a run.
        let all = frames(u32::MAX - 200_000, 140);
        let sent = &all[20..120];
        for offset in [0u32, 12_345, 3_000_000_000] {
            let mut got: HashMap<u32, u32> = all
                .iter()
                .map(|&(ts, n)| (ts.wrapping_add(offset), n))
                .collect();
            // One frame lost entirely, one short of a packet.
            got.remove(&sent[10].0.wrapping_add(offset));
            *got.get_mut(&sent[20].0.wrapping_add(offset)).unwrap() = 2;
            assert_eq!(frames_got(sent, &got), (99, 98), "offset {offset}");
        }
        assert_eq!(frames_got(sent, &HashMap::new()), (0, 0));
    }
}
