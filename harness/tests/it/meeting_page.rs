//! The meeting page's host features in headless Chromium, through the real page: the
//! pre-join screen, the waiting room, the lock, mute all, removal and the participant
//! panel (with a screenshot kept for people to look at).
use std::time::{Duration, Instant};

use harness::eventually;
use harness::webdriver::Browser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signaling::{ClientMsg, Role};

use crate::browser::join_page_with as open;

/// Per remote participant: video frames decoded, audio packets received and video
/// m-lines.
async fn media(b: &Browser) -> Value {
    crate::browser::snapshot(b)
        .await
        .map(|v| v["by"].clone())
        .unwrap_or(Value::Null)
}

fn frames(v: &Value, pid: &str) -> u64 {
    v[pid]["frames"].as_u64().unwrap_or(0)
}
fn audio(v: &Value, pid: &str) -> u64 {
    v[pid]["audio"].as_u64().unwrap_or(0)
}

async fn text_of(b: &Browser, id: &str) -> String {
    b.eval(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
        json!([id]),
    )
    .await
    .ok()
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_default()
}

async fn page_says(b: &Browser, what: &str, id: &str) {
    let r = eventually(Duration::from_secs(20), what, || async {
        text_of(b, id).await.contains(what).then_some(())
    })
    .await;
    if r.is_err() {
        panic!(
            "the page never said {what:?}; #{id} says {:?}",
            text_of(b, id).await
        );
    }
}

async fn click(b: &Browser, id: &str) {
    b.eval("document.getElementById(arguments[0]).click()", json!([id]))
        .await
        .unwrap();
}

/// Clicks the button labelled `label` (its aria-label) in the participant panel; true
/// when there was one.
async fn click_labelled(b: &Browser, label: &str) -> bool {
    b.eval(
        "window.confirm = () => true; \
         const x = [...document.querySelectorAll('#people button')].find(e => e.getAttribute('aria-label') === arguments[0]); \
         if (x) x.click(); return !!x;",
        json!([label]),
    )
    .await
    .unwrap()
        == true
}

/// Waits up to `secs` until `script` (run with `args` in `b`) returns true.
async fn until_true(
    b: &Browser,
    secs: u64,
    what: &str,
    script: &str,
    args: Value,
) -> anyhow::Result<()> {
    eventually(Duration::from_secs(secs), what, || async {
        b.eval(script, args.clone())
            .await
            .ok()
            .filter(|v| *v == true)
            .map(|_| ())
    })
    .await
}

/// Loads `url` in `b` again and again (waiting `settle` each time) until its status
/// says `what`.
async fn reload_until(b: &Browser, url: &str, settle: Duration, what: &str) {
    let seen = eventually(Duration::from_secs(20), what, || async {
        b.goto(url).await.ok()?;
        tokio::time::sleep(settle).await;
        text_of(b, "status").await.contains(what).then_some(())
    })
    .await;
    assert!(
        seen.is_ok(),
        "the page says: {:?}",
        text_of(b, "status").await
    );
}

/// `a` and `b` (participant ids `ida`, `idb`) decode each other's video and get each
/// other's audio.
async fn media_both_ways(a: &Browser, ida: &str, b: &Browser, idb: &str) {
    eventually(Duration::from_secs(30), "media both ways", || async {
        let (ma, mb) = (media(a).await, media(b).await);
        (frames(&ma, idb) > 0 && audio(&ma, idb) > 0 && frames(&mb, ida) > 0 && audio(&mb, ida) > 0)
            .then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_admits_and_denies_from_the_waiting_room_and_locks_the_meeting_on_the_page() {
    let (c, _api, base, meeting, key) = crate::hosts::start(crate::spec(), true).await;
    let (host, host_id) = open(&c, &base, &meeting, "Hostess", &format!("&host_key={key}")).await;
    page_says(&host, "In the meeting", "status").await;
    click(&host, "people-toggle").await;

    // The guest waits, told so with the title; no media either way.
    let (guest, guest_id) = open(&c, &base, &meeting, "Guest", "").await;
    page_says(&guest, "Waiting for the host", "status").await;
    page_says(&guest, "Board meeting", "waiting-title").await;
    page_says(&host, "Guest", "waiting-list").await;
    assert!(
        frames(&media(&host).await, &guest_id) == 0 && audio(&media(&host).await, &guest_id) == 0
    );
    assert!(click_labelled(&host, "Admit Guest").await);
    page_says(&guest, "In the meeting", "status").await;
    media_both_ways(&host, &host_id, &guest, &guest_id).await;

    // Another is turned away: told so, and their join cannot be used again.
    let (denied, _) = open(&c, &base, &meeting, "Dora", "").await;
    page_says(&host, "Dora", "waiting-list").await;
    assert!(click_labelled(&host, "Deny Dora").await);
    page_says(&denied, "did not let you into this meeting", "status").await;
    let joined = denied
        .eval("return window.fjord.joined", json!([]))
        .await
        .unwrap();
    let url = format!(
        "{}?token={}",
        joined["signal_url"].as_str().unwrap(),
        joined["token"].as_str().unwrap()
    )
    .replacen("ws://", "http://", 1);
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "a rejoin with the same join is refused"
    );
    drop(denied);

    // Locked: a new join is refused and the page says why; unlocked, the next gets in.
    click(&host, "waiting-room").await; // off, so that the next one comes straight in
    click(&host, "lock").await;
    page_says(&host, "Locked", "lock-badge").await;
    page_says(&guest, "Locked", "lock-badge").await;
    let late = Browser::start(&c.dir.join("logs"), "Late").await.unwrap();
    let late_url = format!("{base}/m/{meeting}?name=Late&autojoin=1");
    reload_until(
        &late,
        &late_url,
        Duration::from_millis(500),
        "locked by its host",
    )
    .await;
    click(&host, "lock").await;
    reload_until(
        &late,
        &late_url,
        Duration::from_millis(1500),
        "In the meeting",
    )
    .await;
    // Guest stayed in throughout, with media.
    let before = frames(&media(&guest).await, &host_id);
    eventually(
        Duration::from_secs(10),
        "the guest still gets the host",
        || async { (frames(&media(&guest).await, &host_id) > before).then_some(()) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_lists_devices_joins_without_camera_and_shows_mute_all_removal_and_the_panel() {
    let (c, _api, base, meeting, key) = crate::hosts::start(crate::spec(), false).await;

    // The pre-join screen: the title, and the fake devices to choose from.
    let pre = Browser::start(&c.dir.join("logs"), "prejoin")
        .await
        .unwrap();
    pre.goto(&format!("{base}/m/{meeting}")).await.unwrap();
    page_says(&pre, "Board meeting", "prejoin-title").await;
    let devices = eventually(Duration::from_secs(15), "devices listed", || async {
        let v = pre
            .eval(
                "const o = (id) => [...document.getElementById(id).options].map(x => x.textContent); \
                 return { mic: o('mic-select'), cam: o('camera-select') };",
                json!([]),
            )
            .await
            .ok()?;
        (!v["mic"].as_array()?.is_empty() && !v["cam"].as_array()?.is_empty()).then_some(v)
    })
    .await
    .unwrap();
    assert!(
        devices["cam"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| !l.as_str().unwrap().is_empty()),
        "{devices}"
    );
    drop(pre);

    let (host, host_id) = open(&c, &base, &meeting, "Hostess", &format!("&host_key={key}")).await;
    let (quiet, quiet_id) = open(&c, &base, &meeting, "NoCam", "&camera=off").await;
    let clip = crate::hosts::clip;
    let bots = [
        crate::join_bot(&base, &meeting, "Bot One", None, Some(clip(440))).await,
        crate::join_bot(
            &base,
            &meeting,
            "Bot Two",
            None,
            Some(bot::ClipSpec {
                pattern: "smpte".into(),
                ..clip(660)
            }),
        )
        .await,
    ];
    // Joined with the camera off: audio only, no video m-line for it anywhere.
    eventually(
        Duration::from_secs(30),
        "the host gets NoCam's audio and the bots' video",
        || async {
            let m = media(&host).await;
            (audio(&m, &quiet_id) > 0 && bots.iter().all(|b| frames(&m, &b.participant_id) > 0))
                .then_some(())
        },
    )
    .await
    .unwrap();
    let m = media(&host).await;
    assert_eq!(
        m[&quiet_id]["video_lines"], 0,
        "no video published by NoCam: {m}"
    );
    assert!(
        bots.iter().all(|b| b.mid_of(&quiet_id, "video").is_none()),
        "no video of NoCam offered to the bots"
    );

    // The panel, with 4 participants, for people to look at.
    click(&host, "people-toggle").await;
    page_says(&host, "Participants (4)", "people-toggle").await;
    page_says(&host, "Bot Two", "people-list").await;
    let png = host.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("meeting-four-participants-panel-open.png"), &png).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a real screenshot"
    );

    // Mute all, unmuting not allowed: the others' pages show themselves and each other muted.
    click(&host, "allow-unmute").await; // off
    click(&host, "mute-all").await;
    page_says(&quiet, "Unmute", "mute").await;
    page_says(&host, "NoCam (muted", "people-list").await;
    let heard = audio(&media(&host).await, &quiet_id);
    // Two seconds would be a hundred packets of NoCam's audio; a few on their way when
    // the mute came are allowed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = audio(&media(&host).await, &quiet_id);
    assert!(
        later <= heard + 5,
        "NoCam's audio stopped: {heard} then {later}"
    );
    click(&quiet, "mute").await; // tries to unmute
    page_says(&quiet, "does not allow participants to unmute", "status").await;
    assert_eq!(text_of(&quiet, "mute").await, "Unmute", "still muted");

    // Allowed again, NoCam unmutes and is heard; then removed: the page says so, and
    // its audio stops at everyone else's within a second.
    click(&host, "allow-unmute").await; // on
    let unmuted = eventually(Duration::from_secs(15), "NoCam heard again", || async {
        if text_of(&quiet, "mute").await == "Unmute" {
            click(&quiet, "mute").await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = audio(&media(&host).await, &quiet_id);
        (now > later + 20).then_some(())
    })
    .await;
    assert!(
        unmuted.is_ok(),
        "NoCam's page says {:?}",
        text_of(&quiet, "status").await
    );
    eventually(Duration::from_secs(10), "the bots hear NoCam", || async {
        bots.iter()
            .all(|b| {
                b.received()
                    .get(&(quiet_id.clone(), "audio"))
                    .is_some_and(|c| c.packets > 20)
            })
            .then_some(())
    })
    .await
    .unwrap();
    let removed_at = Instant::now();
    assert!(click_labelled(&host, "Remove NoCam").await);
    page_says(&quiet, "removed you from this meeting", "status").await;
    // Past the one-second bound, with a margin: audio forwarded later would have come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for b in &bots {
        let last = b
            .received()
            .get(&(quiet_id.clone(), "audio"))
            .and_then(|c| c.last_arrival())
            .expect("NoCam was heard");
        let after = last.saturating_duration_since(removed_at);
        assert!(
            after < Duration::from_secs(1),
            "NoCam still heard {after:?} after the removal"
        );
    }
    eventually(
        Duration::from_secs(5),
        "NoCam leaves the host's list",
        || async { (!text_of(&host, "people-list").await.contains("NoCam")).then_some(()) },
    )
    .await
    .unwrap();
    // Breakout rooms from the panel: Bot One goes to room 1, and the host's page shows
    // where it is and no longer shows its tile among the main room's.
    host.eval(
        "document.getElementById('breakout-count').value = '1'",
        json!([]),
    )
    .await
    .unwrap();
    click(&host, "breakout-create").await;
    let one = bots[0].participant_id.clone();
    assert!(
        host.eval(
            "return !!document.getElementById('tile-' + arguments[0])",
            json!([one])
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap(),
        "Bot One's tile shown before the rooms open"
    );
    until_true(
        &host,
        5,
        "a room selector for Bot One",
        "const s = [...document.querySelectorAll('#people select')].find(e => e.getAttribute('aria-label') === 'Breakout room of Bot One'); \
         if (!s) return false; s.value = '1'; s.dispatchEvent(new Event('change')); return true;",
        json!([]),
    )
    .await
    .unwrap();
    click(&host, "breakout-open").await;
    page_says(&host, "in Room 1)Main room", "people-list").await;
    until_true(
        &host,
        5,
        "Bot One's tile gone from the main room's",
        // On slots the node stops showing it and its tile goes; a tile kept is hidden.
        "const t = document.getElementById('tile-' + arguments[0]); return !t || t.hidden",
        json!([one]),
    )
    .await
    .unwrap();
    assert!(!host_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poll_made_on_the_page_is_answered_by_a_browser_and_bots_and_the_hosts_page_counts_them()
{
    let (c, _api, base, meeting, key) = crate::hosts::start(crate::spec(), false).await;
    let (host, _) = open(&c, &base, &meeting, "Hostess", &format!("&host_key={key}")).await;
    let (guest, _) = open(&c, &base, &meeting, "Gus", "&camera=off").await;
    page_says(&host, "In the meeting", "status").await;
    page_says(&guest, "In the meeting", "status").await;
    let bots = [
        crate::join_bot(&base, &meeting, "Bot One", None, None).await,
        crate::join_bot(&base, &meeting, "Bot Two", None, None).await,
    ];

    // The host prepares a poll in the page's form and launches it.
    click(&host, "polls-toggle").await;
    host.eval(
        "document.getElementById('poll-question').value = 'Coffee or tea?'; \
         document.getElementById('poll-kind').value = 'single'; \
         document.getElementById('poll-options').value = 'Coffee\\nTea\\nNeither'; \
         document.getElementById('poll-form').requestSubmit();",
        json!([]),
    )
    .await
    .unwrap();
    page_says(&host, "Prepared, not launched", "poll-list").await;
    until_true(
        &host,
        10,
        "the Launch button",
        "const x = [...document.querySelectorAll('#poll-list button')].find(e => e.textContent === 'Launch'); \
         if (x) x.click(); return !!x;",
        json!([]),
    )
    .await
    .unwrap();

    // The guest's page opens the poll; the guest picks "Tea" and submits.
    page_says(&guest, "Coffee or tea?", "poll-list").await;
    assert!(
        !guest
            .eval("return document.getElementById('polls').hidden", json!([]))
            .await
            .unwrap()
            .as_bool()
            .unwrap(),
        "a poll to answer opens the panel"
    );
    guest
        .eval(
            "const f = document.querySelector('#poll-list form'); \
             f.querySelectorAll('input')[1].checked = true; f.requestSubmit();",
            json!([]),
        )
        .await
        .unwrap();
    page_says(&guest, "You answered", "poll-list").await;
    // The bots answer through the protocol: Coffee and Tea.
    let id = bots[0].polls().pop().unwrap()[0].poll_id;
    for (b, choice) in bots.iter().zip([0, 1]) {
        b.send(ClientMsg::PollAnswer {
            poll_id: id,
            choices: vec![choice],
            text: String::new(),
        })
        .unwrap();
    }
    // The host's page counts three answers: one Coffee, two Tea.
    page_says(&host, "3 answers", "poll-list").await;
    let list = text_of(&host, "poll-list").await;
    assert!(
        list.contains("Coffee: 1") && list.contains("Tea: 2") && list.contains("Neither: 0"),
        "{list}"
    );
    assert!(
        !text_of(&guest, "poll-list").await.contains("Tea: 2"),
        "attendees see no results before they are shared"
    );

    // A question asked on the guest's page reaches the host's; a reaction shows on the
    // sender's tile in the other's page.
    guest
        .eval(
            "document.getElementById('qa-text').value = 'Is there cake?'; \
             document.getElementById('qa-anonymous').checked = true; \
             document.getElementById('qa-form').requestSubmit();",
            json!([]),
        )
        .await
        .unwrap();
    page_says(&host, "Is there cake?", "qa-list").await;
    assert!(text_of(&host, "qa-list").await.contains("Anonymous"));
    guest
        .eval(
            "[...document.querySelectorAll('#reactions button')].find(b => b.textContent === '👍').click()",
            json!([]),
        )
        .await
        .unwrap();
    page_says(&host, "👍", "grid").await;
}

/// The whiteboard canvas's pixel at (`x`, `y`) in board units, as RGBA.
async fn board_pixel(b: &Browser, x: i32, y: i32) -> Vec<u64> {
    b.eval(
        "const c = document.getElementById('board-canvas'); \
         return [...c.getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data];",
        json!([x, y]),
    )
    .await
    .unwrap()
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_u64().unwrap())
    .collect()
}

/// Whether `px` is the page's default red pen (#d62828), drawn opaque.
fn is_red(px: &[u64]) -> bool {
    px[3] > 200 && px[0] > 180 && px[1] < 90 && px[2] < 90
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stroke_drawn_on_one_page_appears_on_the_others_canvas_and_on_a_late_joiners() {
    let (c, _api, base, meeting, _key) = crate::hosts::start(crate::spec(), false).await;
    let (drawer, _) = open(&c, &base, &meeting, "Drawer", "&camera=off").await;
    let (viewer, _) = open(&c, &base, &meeting, "Viewer", "&camera=off").await;
    page_says(&drawer, "In the meeting", "status").await;
    page_says(&viewer, "In the meeting", "status").await;
    assert!(
        !is_red(&board_pixel(&viewer, 600, 300).await),
        "a blank board first"
    );

    // A real pointer stroke across the drawer's canvas, from (400, 300) to (800, 300).
    click(&drawer, "board-toggle").await;
    drawer
        .eval(
            "const c = document.getElementById('board-canvas'); const r = c.getBoundingClientRect(); \
             const at = (x, y) => ({ clientX: r.left + x * r.width / 1600, clientY: r.top + y * r.height / 900, \
                                     pointerId: 1, bubbles: true, isPrimary: true }); \
             c.dispatchEvent(new PointerEvent('pointerdown', at(400, 300))); \
             for (let x = 420; x <= 800; x += 20) c.dispatchEvent(new PointerEvent('pointermove', at(x, 300))); \
             c.dispatchEvent(new PointerEvent('pointerup', at(800, 300)));",
            json!([]),
        )
        .await
        .unwrap();
    let drawn = eventually(
        Duration::from_secs(10),
        "the stroke on the viewer's canvas",
        || async {
            let (a, b, c) = (
                board_pixel(&viewer, 420, 300).await,
                board_pixel(&viewer, 600, 300).await,
                board_pixel(&viewer, 780, 300).await,
            );
            (is_red(&a) && is_red(&b) && is_red(&c)).then_some(())
        },
    )
    .await;
    assert!(
        drawn.is_ok(),
        "the viewer's canvas at (600, 300): {:?}",
        board_pixel(&viewer, 600, 300).await
    );
    assert!(
        !is_red(&board_pixel(&viewer, 600, 500).await),
        "nothing away from the stroke"
    );
    assert!(
        is_red(&board_pixel(&drawer, 600, 300).await),
        "the drawer's own canvas"
    );

    // Someone who joins later sees it too.
    let (late, _) = open(&c, &base, &meeting, "Latecomer", "&camera=off").await;
    page_says(&late, "In the meeting", "status").await;
    eventually(
        Duration::from_secs(10),
        "the stroke on the late joiner's canvas",
        || async { is_red(&board_pixel(&late, 600, 300).await).then_some(()) },
    )
    .await
    .unwrap();

    // Undo takes it off every canvas.
    click(&drawer, "board-undo").await;
    eventually(
        Duration::from_secs(10),
        "the stroke undone on the viewer's canvas",
        || async { (!is_red(&board_pixel(&viewer, 600, 300).await)).then_some(()) },
    )
    .await
    .unwrap();
}

/// The WebM files in `b`'s downloads (finished ones only).
fn webm_downloads(b: &Browser) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(b.downloads())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "webm"));
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recording_on_a_participants_computer_downloads_a_webm_and_everyone_sees_it_is_on() {
    let (c, _api, base, meeting, key) = crate::hosts::start(crate::spec(), false).await;
    let (host, _) = open(&c, &base, &meeting, "Hostess", &format!("&host_key={key}")).await;
    let (rec, rec_id) = open(&c, &base, &meeting, "Recorder", "").await;
    page_says(&host, "In the meeting", "status").await;
    page_says(&rec, "In the meeting", "status").await;
    eventually(
        Duration::from_secs(20),
        "the recorder gets the host's media",
        || async {
            let m = media(&rec).await;
            m.as_object()
                .is_some_and(|o| o.values().any(|v| v["frames"].as_u64().unwrap_or(0) > 0))
                .then_some(())
        },
    )
    .await
    .unwrap();

    // Five seconds recorded; the host's page says so meanwhile, on the badge and the tile.
    click(&rec, "record-local").await;
    page_says(
        &host,
        "Recorder is recording this meeting on their computer",
        "recording-badge",
    )
    .await;
    page_says(&host, "● REC", &format!("tile-{rec_id}")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    click(&rec, "record-local").await;
    let file = eventually(Duration::from_secs(20), "the downloaded WebM", || async {
        webm_downloads(&rec).pop()
    })
    .await
    .unwrap();
    until_true(
        &host,
        10,
        "the badge goes",
        "return document.getElementById('recording-badge').hidden",
        json!([]),
    )
    .await
    .unwrap();
    // What the file holds: about five seconds of the gallery (1280×720) and its sound.
    let v = eventually(Duration::from_secs(10), "the WebM to decode", || async {
        recording_node::probe::webm(&file).ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", recording_node::probe::webm(&file).err()));
    assert_eq!((v.width, v.height), (1280, 720), "{v:?}");
    assert!(
        v.duration >= Duration::from_millis(4000) && v.duration <= Duration::from_secs(8),
        "{v:?}"
    );
    assert!(v.frames >= 30, "{v:?}");
    assert!(v.audio_buffers > 0, "{v:?}");

    // The host forbids it: a recording under way stops (and is saved), and the button goes.
    click(&rec, "record-local").await;
    page_says(&host, "Recorder is recording", "recording-badge").await;
    host.eval(
        "const x = document.getElementById('local-recording-allowed'); x.checked = false; \
         x.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await
    .unwrap();
    page_says(&rec, "Recording stopped", "status").await;
    eventually(Duration::from_secs(20), "the second file", || async {
        (webm_downloads(&rec).len() == 2).then_some(())
    })
    .await
    .unwrap();
    let hidden = until_true(
        &rec,
        5,
        "no record button while it is forbidden",
        "return document.getElementById('record-local').hidden",
        json!([]),
    )
    .await;
    assert!(
        hidden.is_ok(),
        "{:?}",
        rec.eval("return window.fjord.room", json!([])).await
    );
}

/// A 16 × 9 grid of average colours (RGB) of the picture in `b`'s tile of `pid` (its
/// video element), or None while it has none.
async fn picture(b: &Browser, pid: &str) -> Option<Vec<f64>> {
    let v = b
        .eval(
            "const v = document.querySelector('#tile-' + arguments[0] + ' video'); \
             if (!v || !v.videoWidth) return null; \
             const c = document.createElement('canvas'); c.width = 16; c.height = 9; \
             const x = c.getContext('2d'); x.drawImage(v, 0, 0, 16, 9); \
             const d = x.getImageData(0, 0, 16, 9).data; const out = []; \
             for (let i = 0; i < d.length; i += 4) out.push(d[i], d[i + 1], d[i + 2]); return out;",
            json!([pid]),
        )
        .await
        .ok()?;
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
}

/// The mean absolute difference of two pictures' grids (0: the same, 255: opposite).
fn unlike(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_encrypted_media_opens_only_with_the_passphrase_and_is_never_recorded() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = crate::Api::new(&c);
    let base = c.controllers[0].url();
    let (st, created) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Secret board", "waiting_room": false, "e2ee": true })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["e2ee"], true,
        "the API shows it is end-to-end encrypted"
    );
    let meeting = created["id"].as_str().unwrap().to_owned();

    // Cloud recording is refused, with its own code.
    let (st, refused) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings/{meeting}/recordings"))
                .bearer_auth(&api.key),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "e2ee_meeting");

    // Without the passphrase the page explains instead of joining.
    let lost = Browser::start(&c.dir.join("logs"), "no-passphrase")
        .await
        .unwrap();
    lost.goto(&format!("{base}/m/{meeting}?name=Nobody&autojoin=1"))
        .await
        .unwrap();
    page_says(&lost, "end-to-end encrypted", "status").await;
    page_says(&lost, "recording on the servers", "e2ee-notice").await;
    drop(lost);

    // Two browsers with the passphrase in the link's fragment see each other's camera.
    let secret = "#key=correct horse battery staple";
    let (a, ida) = open(&c, &base, &meeting, "Alice", secret).await;
    let (b, idb) = open(&c, &base, &meeting, "Bob", secret).await;
    media_both_ways(&a, &ida, &b, &idb).await;
    let same = eventually(
        Duration::from_secs(20),
        "Bob's picture of Alice is Alice's camera",
        || async {
            let (mine, seen) = (picture(&a, &ida).await?, picture(&b, &ida).await?);
            (unlike(&mine, &seen) < 30.0).then_some(())
        },
    )
    .await;
    assert!(
        same.is_ok(),
        "Alice's camera {:?} against Bob's picture of it {:?}",
        picture(&a, &ida).await,
        picture(&b, &ida).await
    );
    assert_eq!(
        b.eval("return window.fjord.e2eeFailures || 0", json!([]))
            .await
            .unwrap(),
        0
    );

    // A webrtc-rs bot without the passphrase gets Alice's packets, not her picture.
    let bot = crate::join_bot(&base, &meeting, "Eve Bot", None, None).await;
    eventually(
        Duration::from_secs(20),
        "the bot gets Alice's video",
        || async {
            bot.received()
                .get(&(ida.clone(), "video"))
                .filter(|v| v.keyframes > 0 && v.packets > 100)
                .map(|_| ())
        },
    )
    .await
    .unwrap();
    let camera = picture(&a, &ida).await.unwrap();
    let got = bot.received()[&(ida.clone(), "video")].video.clone();
    // It has her encrypted frames (whole ones: each ends with a marker packet) ...
    let frames = got.iter().filter(|(_, marker)| *marker).count();
    assert!(
        frames >= 10,
        "the bot got only {frames} whole frames of Alice's"
    );
    // ... and nothing it decodes from them is her picture: the decoder refuses them, or
    // what it makes of the ciphertext is noise.
    match bot::media::vp8_pictures(&got) {
        Err(e) => {
            let e = format!("{e:#}");
            eprintln!("the bot's decoder refused Alice's frames: {e}");
            assert!(
                !e.contains("too short") && !e.contains("no whole VP8 frame"),
                "the frames did not reach the decoder: {e}"
            );
        }
        Ok(pictures) => {
            eprintln!(
                "the bot decoded {} pictures from {} packets of Alice's",
                pictures.len(),
                got.len()
            );
            for p in &pictures {
                assert!(
                    unlike(p, &camera) > 30.0,
                    "the bot decoded Alice's camera without the key: {p:?} against {camera:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webinar_attendees_page_watches_without_sending_and_a_promotion_puts_it_on_air() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = crate::Api::new(&c);
    let base = c.controllers[0].url();
    let (st, m) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Lecture", "kind": "webinar", "waiting_room": false })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let meeting = m["id"].as_str().unwrap().to_owned();
    let host = crate::hosts::host(
        &base,
        &meeting,
        m["host_key"].as_str().unwrap(),
        Some("oslo"),
        440,
    )
    .await;
    let (b, me) = open(&c, &base, &meeting, "Aud", "&region=oslo").await;

    // The attendee's page gets the lecturer, sends nothing and offers no microphone or
    // camera buttons.
    eventually(
        Duration::from_secs(20),
        "the page plays the host",
        || async {
            let v = media(&b).await;
            (frames(&v, &host.participant_id) > 5 && audio(&v, &host.participant_id) > 20)
                .then_some(())
        },
    )
    .await
    .unwrap();
    let state = b
        .eval(
            "return [window.fjord.pc.getSenders().filter((s) => s.track).length,
                     document.getElementById('mute').hidden, document.getElementById('camera').hidden]",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(state, json!([0, true, true]), "no tracks sent, no buttons");
    assert!(
        host.received().keys().all(|(p, _)| p != &me),
        "the host got nothing from the attendee"
    );

    // Made a panelist, the page takes camera and microphone (muted and off first), and
    // once turned on the host gets both.
    host.send(ClientMsg::SetRole {
        participant_id: me.clone(),
        role: Role::Panelist,
    })
    .unwrap();
    page_says(&b, "made you a panelist", "banner").await;
    until_true(
        &b,
        20,
        "the page sends two tracks",
        "return window.fjord.pc.getSenders().filter((s) => s.track).length === 2 && !document.getElementById('mute').hidden",
        json!([]),
    )
    .await
    .unwrap();
    click(&b, "mute").await;
    click(&b, "camera").await;
    eventually(
        Duration::from_secs(20),
        "the host gets the new panelist",
        || async {
            let got = host.received();
            let a = got.get(&(me.clone(), "audio")).map_or(0, |c| c.packets);
            let v = got.get(&(me.clone(), "video")).map_or(0, |c| c.frames);
            (a > 20 && v > 5).then_some(())
        },
    )
    .await
    .unwrap();
}

/// Waits until the meeting's one recording is in `state`; answers it.
async fn recording_in(
    api: &crate::Api,
    base: &str,
    meeting: &str,
    key: &str,
    state: &str,
) -> Value {
    eventually(Duration::from_secs(30), state, || async {
        let list = crate::recording::recordings(api, base, meeting, key).await;
        assert!(list.len() <= 1, "one recording: {list:?}");
        list.into_iter().find(|r| r["state"] == state)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_records_from_the_page_everyone_sees_it_a_joiner_is_asked_first_and_the_pause_is_a_gap()
 {
    let (c, api, base, meeting, key) =
        crate::recording::meeting_to_record(1, "Recorded lecture").await;
    let (host, _) = open(&c, &base, &meeting, "Hostess", &format!("&host_key={key}")).await;
    let (second, _) = open(&c, &base, &meeting, "Second", "").await;
    page_says(&host, "In the meeting", "status").await;
    page_says(&second, "In the meeting", "status").await;
    until_true(
        &second,
        5,
        "no Record button for a participant",
        "return document.getElementById('cloud-record').hidden",
        json!([]),
    )
    .await
    .unwrap();

    // The host records: everyone's page says so, and the leader starts it.
    page_says(&host, "Record", "cloud-record").await;
    click(&host, "cloud-record").await;
    page_says(
        &second,
        "Recording: this meeting is recorded",
        "cloud-badge",
    )
    .await;
    page_says(&host, "Stop recording", "cloud-record").await;
    let rec = recording_in(&api, &base, &meeting, &key, "recording").await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();

    // Before joining, the page says it; in the meeting, the joiner is asked before any
    // of its media is sent, and nothing of it reaches the others until it says yes.
    let third = Browser::start(&c.dir.join("logs"), "Third").await.unwrap();
    third
        .goto(&format!("{base}/m/{meeting}?name=Third"))
        .await
        .unwrap();
    until_true(
        &third,
        20,
        "the pre-join screen says it is recorded",
        "const e = document.getElementById('prejoin-recording'); return !!e && !e.hidden",
        json!([]),
    )
    .await
    .unwrap();
    third
        .goto(&format!("{base}/m/{meeting}?name=Third&autojoin=1"))
        .await
        .unwrap();
    until_true(
        &third,
        20,
        "the joiner is asked",
        "return !document.getElementById('recording-consent').hidden",
        json!([]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = third
        .eval("const pc = window.fjord.pc; return !!pc && (pc.localDescription !== null || pc.connectionState !== 'new')", json!([]))
        .await
        .unwrap();
    assert_eq!(
        sent, false,
        "nothing negotiated, nothing sent, while the joiner is asked"
    );
    let third_id = third
        .eval("return window.fjord.joined.participant_id", json!([]))
        .await
        .unwrap();
    let third_id = third_id.as_str().unwrap().to_owned();
    assert_eq!(frames(&media(&host).await, &third_id), 0);
    click(&third, "consent-continue").await;
    eventually(
        Duration::from_secs(30),
        "the joiner's media once it said yes",
        || async { (frames(&media(&host).await, &third_id) > 0).then_some(()) },
    )
    .await
    .unwrap();

    // Three cameras: the composite's tiles are 640x360, which the middle simulcast layer
    // fits. The recording takes that layer of the pages' cameras, not the highest (how
    // the node switches a sink's layer is the SFU's test
    // a_recording_sink_gets_the_highest_layer_until_it_says_its_tile_then_the_layer_that_fits).
    let sink_layers = || async {
        let (mut m, mut h) = (0.0, 0.0);
        for node in &c.media {
            let text = crate::metrics_text(&format!("http://127.0.0.1:{}", node.http)).await;
            let name = "fjord_relay_sink_simulcast_packets_total";
            m += harness::metric_sum(&text, name, &[("layer", "m")]);
            h += harness::metric_sum(&text, name, &[("layer", "h")]);
        }
        (m, h)
    };
    let layers = eventually(
        Duration::from_secs(30),
        "the recording takes the middle layer of the cameras, and not the highest",
        || async {
            let (m0, h0) = sink_layers().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (m1, h1) = sink_layers().await;
            (m1 - m0 >= 10.0 && h1 == h0).then_some((m1 - m0, h1))
        },
    )
    .await;
    assert!(
        layers.is_ok(),
        "sink packets by layer (m, h): {:?}",
        sink_layers().await
    );

    // The host pauses (every page says so, the recording takes no media), then stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    click(&host, "cloud-pause").await;
    page_says(&second, "Recording paused", "cloud-badge").await;
    let paused = recording_in(&api, &base, &meeting, &key, "paused").await;
    assert!(
        paused["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["reason"] == "paused by a host"),
        "{paused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    click(&host, "cloud-record").await;
    let stopped = recording_in(&api, &base, &meeting, &key, "stopped").await;
    until_true(
        &second,
        20,
        "the badge goes",
        "return document.getElementById('cloud-badge').hidden",
        json!([]),
    )
    .await
    .unwrap();
    assert_eq!(stopped["recording_id"], rid.as_str());

    // The manifest has the pause as a gap, open to the end; the files are there.
    let (dir, manifest) = crate::recording::written(&c, &rid);
    let gap = manifest
        .gaps
        .iter()
        .find(|g| g.reason == "paused by a host")
        .unwrap_or_else(|| panic!("no pause in {:?}", manifest.gaps));
    assert!(
        gap.start_offset_ms >= 1_000 && gap.end_offset_ms.is_none(),
        "{gap:?}"
    );
    assert!(
        manifest.files.iter().any(|f| f.kind == "composite"),
        "{:?}",
        manifest.files
    );
    for f in &manifest.files {
        assert!(dir.join(&f.name).exists(), "{}", f.name);
    }

    // The audit trail: who started, paused and stopped it.
    let (st, audit) = api
        .send(
            api.http
                .get(format!("{base}/v1/meetings/{meeting}/audit"))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{audit}");
    let done: Vec<(String, String, String)> = audit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"].as_str().unwrap().starts_with("recording_"))
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("by_name"), s("detail"))
        })
        .collect();
    let want: Vec<(String, String, String)> =
        ["recording_start", "recording_pause", "recording_stop"]
            .iter()
            .map(|a| (a.to_string(), "Hostess".to_owned(), rid.clone()))
            .collect();
    assert_eq!(done, want);
}
