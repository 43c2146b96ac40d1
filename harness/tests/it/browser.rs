//! Real browsers: headless Chromium instances join through the controller's web page and
//! exchange media through the media node (str0m), checked with `getStats()`.
use std::collections::BTreeMap;
use std::time::Duration;

use harness::eventually;
use harness::webdriver::Browser;
use serde_json::{Value, json};

use crate::{Api, spec};

/// Per remote participant: video frames decoded and audio packets received, plus who the
/// page lists and the chat it has seen.
const SNAPSHOT: &str = r#"
const done = arguments[arguments.length - 1];
const s = window.fjord;
if (!s || !s.pc || !s.joined) { done(null); return; }
s.pc.getStats().then((r) => {
  const by = {};
  r.forEach((x) => {
    if (x.type !== 'inbound-rtp') return;
    const pid = s.midToParticipant.get(x.mid);
    if (!pid) return;
    by[pid] = by[pid] || { frames: 0, audio: 0 };
    if (x.kind === 'video') by[pid].frames += x.framesDecoded || 0;
    else by[pid].audio += x.packetsReceived || 0;
  });
  done({ me: s.joined.participant_id, by, participants: [...s.participants.keys()],
         chat: s.chat.map((c) => c.text), tiles: document.querySelectorAll('.tile').length });
}).catch((e) => done({ error: String(e) }));
"#;

async fn snapshot(b: &Browser) -> Option<Value> {
    b.eval_async(SNAPSHOT, json!([]))
        .await
        .ok()
        .filter(|v| !v.is_null())
}

fn counts(v: &Value, pid: &str) -> (u64, u64) {
    let c = &v["by"][pid];
    (
        c["frames"].as_u64().unwrap_or(0),
        c["audio"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_chromium_participants_get_each_others_media_chat_and_see_a_leave() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "browsers" })).await;
    let mut browsers = Vec::new();
    for i in 0..3 {
        let b = Browser::start(&c.dir.join("logs"), &format!("p{i}"))
            .await
            .unwrap();
        b.goto(&format!("{base}/m/{meeting}?name=P{i}&autojoin=1"))
            .await
            .unwrap();
        browsers.push(b);
    }
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for b in &browsers {
            let v = eventually(Duration::from_secs(20), "each page to join", || async {
                let v = b.eval("return window.fjord && window.fjord.joined && window.fjord.joined.participant_id", json!([])).await.ok()?;
                v.as_str().map(str::to_owned)
            })
            .await
            .unwrap();
            ids.push(v);
        }
        ids
    };

    // Everyone decodes video and receives audio from both others, and it keeps growing.
    let mut first = BTreeMap::new();
    for (i, b) in browsers.iter().enumerate() {
        let got = eventually(
            Duration::from_secs(30),
            &format!("P{i} to get media from both others"),
            || async {
                let v = snapshot(b).await?;
                let ok = ids.iter().filter(|id| **id != ids[i]).all(|id| {
                    let (frames, audio) = counts(&v, id);
                    frames > 0 && audio > 0
                });
                ok.then_some(v)
            },
        )
        .await;
        let v = match got {
            Ok(v) => v,
            Err(e) => panic!("{e}; last snapshot: {:?}", snapshot(b).await),
        };
        eprintln!("P{i} stats: {}", v["by"]);
        first.insert(i, v);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, b) in browsers.iter().enumerate() {
        let later = snapshot(b).await.unwrap();
        for id in ids.iter().filter(|id| **id != ids[i]) {
            let (f0, a0) = counts(&first[&i], id);
            let (f1, a1) = counts(&later, id);
            assert!(
                f1 > f0 && a1 > a0,
                "P{i} from {id}: frames {f0}->{f1}, audio {a0}->{a1}"
            );
        }
    }

    // For people: FJORD_SCREENSHOT_DIR=dir saves what P0's page shows.
    if let Some(dir) = std::env::var_os("FJORD_SCREENSHOT_DIR") {
        let png = browsers[0].screenshot().await.unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join("three-participants.png"),
            png,
        )
        .unwrap();
    }

    // Chat from P0 reaches P1 and P2.
    browsers[0]
        .eval(
            "window.fjord.sendChat(arguments[0])",
            json!(["hello from P0"]),
        )
        .await
        .unwrap();
    for (i, b) in browsers.iter().enumerate().skip(1) {
        eventually(
            Duration::from_secs(5),
            &format!("P{i} to see the chat"),
            || async {
                let v = snapshot(b).await?;
                v["chat"]
                    .as_array()?
                    .iter()
                    .any(|t| t == "hello from P0")
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }

    // P2 leaves: the other two see it gone.
    browsers[2]
        .eval("window.fjord.leave()", json!([]))
        .await
        .unwrap();
    for (i, b) in browsers.iter().enumerate().take(2) {
        eventually(
            Duration::from_secs(5),
            &format!("P{i} to see P2 gone"),
            || async {
                let v = snapshot(b).await?;
                let listed = v["participants"].as_array()?.iter().any(|p| p == &ids[2]);
                (!listed && v["tiles"] == 2).then_some(())
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_says_plainly_when_the_password_is_wrong_or_the_meeting_does_not_exist() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api
        .create(
            &base,
            json!({ "title": "locked", "password": "open-sesame" }),
        )
        .await;
    let b = Browser::start(&c.dir.join("logs"), "errors").await.unwrap();
    let status = || async {
        b.eval(
            "return document.getElementById('status').textContent",
            json!([]),
        )
        .await
        .ok()
    };

    b.goto(&format!(
        "{base}/m/{meeting}?name=Eve&password=guess&autojoin=1"
    ))
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "the wrong-password message",
        || async {
            status()
                .await?
                .as_str()?
                .contains("Wrong password")
                .then_some(())
        },
    )
    .await
    .unwrap();

    b.goto(&format!("{base}/m/no-such-meeting?name=Eve&autojoin=1"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the no-such-meeting message",
        || async {
            status()
                .await?
                .as_str()?
                .contains("does not exist")
                .then_some(())
        },
    )
    .await
    .unwrap();
}
