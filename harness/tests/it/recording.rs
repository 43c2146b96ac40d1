//! Recording, end to end with real parts: webrtc-rs bots publish through a media node
//! (str0m), which feeds the recording node over the QUIC relay; the recording node writes
//! the files with GStreamer, and the test decodes them.
use std::path::Path;
use std::time::{Duration, Instant};

use recording_node::manifest::{Manifest, sha256_file};
use recording_node::probe;
use reqwest::StatusCode;
use serde_json::json;

use crate::{Api, spec};

pub(crate) async fn publisher(
    base: &str,
    meeting: &str,
    name: &str,
    hz: u32,
    pattern: &str,
) -> bot::Bot {
    let clip = bot::ClipSpec {
        tone_hz: hz,
        pattern: pattern.into(),
        width: 320,
        height: 180,
        ..bot::ClipSpec::default()
    };
    crate::join_bot(base, meeting, name, Some("oslo"), Some(clip)).await
}

fn near(what: &str, got_ms: u64, want: Duration) {
    let diff = (got_ms as i64 - want.as_millis() as i64).abs();
    assert!(
        diff <= 500,
        "{what} lasts {got_ms} ms, expected {want:?} ± 0.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_host_records_two_bots_into_their_own_audio_files_and_a_composite_then_deletes_it() {
    let (c, api, base, meeting, host_key, bots) = recorded_meeting(1).await;
    let start_url = format!("{base}/v1/meetings/{meeting}/recordings");

    // Not the host: no key, an attendee's join token, a wrong key.
    let (st, v) = api.send(api.http.post(&start_url)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let attendee = api.join_from(&base, &meeting, "oslo").await;
    assert_eq!(attendee["role"], "attendee");
    for bearer in [attendee["token"].as_str().unwrap(), "not-the-host-key"] {
        let (st, v) = api
            .send(api.http.post(&start_url).bearer_auth(bearer))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert!(v["message"].as_str().unwrap().contains("host"), "{v}");
    }

    let rec = start(&api, &base, &meeting, &host_key).await;
    assert_eq!(rec["state"], "recording");
    assert_eq!(
        rec["node_id"], "recording-oslo-1",
        "in the meeting's region"
    );
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // From the start's answer to the stop's request: how long the bots were recorded.
    let recorded = started.elapsed();
    let stopped = stop(&api, &base, &rid, &host_key).await;
    assert_eq!(stopped["state"], "stopped");
    let ids: Vec<(String, u32)> = bots
        .iter()
        .map(|(b, hz)| (b.participant_id.clone(), *hz))
        .collect();
    for (b, _) in bots {
        b.leave().await;
    }

    let (st, shown) = api
        .operator(reqwest::Method::GET, format!("{base}/v1/recordings/{rid}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{shown}");
    let listed = shown["files"].as_array().unwrap();
    assert!(listed.iter().any(|f| f == "composite.mp4"), "{shown}");
    assert!(listed.iter().any(|f| f == "manifest.json"), "{shown}");
    check_downloads(&c, &shown).await;
    let (st, list) = api
        .send(api.http.get(&start_url).bearer_auth(&host_key))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["recordings"][0]["recording_id"], rid.as_str());

    let (dir, manifest) = written(&c, &rid);
    eprintln!("{}", serde_json::to_string_pretty(&manifest).unwrap());
    assert_eq!(manifest.meeting_id, meeting);
    assert_eq!(
        manifest.participants.len(),
        2,
        "the attendee published nothing"
    );
    for f in &manifest.files {
        assert_eq!(
            sha256_file(&dir.join(&f.name)).unwrap(),
            f.sha256,
            "{} changed after the manifest",
            f.name
        );
    }
    for (pid, hz) in ids {
        let a = audio_with_tone(&dir, &manifest, &pid, hz);
        near(&pid, a.duration.as_millis() as u64, recorded);
    }
    // The node records from before the start's answer reaches the client until after the
    // stop reaches the node: on a loaded machine those control-plane hops add up to a
    // second or more. Nothing the client asked for is missing, and the composite lasts
    // as long as the node recorded.
    let node_recorded = Duration::from_millis(manifest.duration_ms);
    assert!(
        node_recorded + Duration::from_millis(500) >= recorded
            && node_recorded <= recorded + Duration::from_secs(3),
        "the node recorded {node_recorded:?} of a {recorded:?} window"
    );
    check_composite(&dir.join("composite.mp4"), node_recorded);

    // Deleting removes the files and the record, and says when.
    let deleted = delete(&api, &base, &rid, &host_key).await;
    assert_eq!(deleted["state"], "deleted");
    assert!(deleted["deleted_unix_ms"].as_i64().unwrap() > 0);
    assert!(!dir.exists(), "{} should be gone", dir.display());
}

/// The host deletes recording `rid`: the answer is the deleted recording, and its record
/// is gone.
async fn delete(api: &Api, base: &str, rid: &str, host_key: &str) -> serde_json::Value {
    let (st, deleted) = api
        .send(
            api.http
                .delete(format!("{base}/v1/recordings/{rid}"))
                .bearer_auth(host_key),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{deleted}");
    let (st, gone) = api
        .send(
            api.http
                .get(format!("{base}/v1/recordings/{rid}"))
                .bearer_auth(host_key),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{gone}");
    deleted
}

/// The recording's signed links serve its files; a tampered, expired or missing
/// signature gets nothing.
async fn check_downloads(c: &harness::Cluster, shown: &serde_json::Value) {
    let rid = shown["recording_id"].as_str().unwrap();
    let links = shown["downloads"].as_array().unwrap();
    assert_eq!(
        links.len(),
        shown["files"].as_array().unwrap().len(),
        "{shown}"
    );
    let composite = links.iter().find(|l| l["file"] == "composite.mp4").unwrap();
    let url = composite["url"].as_str().unwrap();
    let http = reqwest::Client::new();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let body = resp.bytes().await.unwrap();
    let on_disk = std::fs::read(
        c.recording_storage("recording-oslo-1")
            .join("internal")
            .join(rid)
            .join("composite.mp4"),
    )
    .unwrap();
    assert!(body[..] == on_disk[..], "the download is the file");

    let (base, _) = url.split_once('?').unwrap();
    let key = std::fs::read(c.pki.download_key_file()).unwrap();
    let past = common::unix_ms() / 1000 - 10;
    let expired = format!(
        "{base}?expires={past}&sig={}",
        common::download::sign(&key, rid, "composite.mp4", past)
    );
    let tampered = url.replace("composite.mp4", "manifest.json");
    for (what, bad) in [
        ("expired", expired),
        ("signed for another file", tampered),
        ("unsigned", base.to_owned()),
    ] {
        let st = http.get(&bad).send().await.unwrap().status();
        assert_eq!(st, StatusCode::FORBIDDEN, "{what} link: {bad}");
    }
}

fn check_composite(path: &Path, recorded: Duration) {
    let v = probe::composite(path).unwrap();
    eprintln!("composite: {v:?}");
    assert_eq!((v.width, v.height), (640, 360), "the configured resolution");
    near("the composite", v.duration.as_millis() as u64, recorded);
    assert!(v.audio_buffers > 0, "the composite has an audio track");
    // Both bots play a tone: the media node names one the speaker, and the recording
    // frames that one's tile (two tiles of 320x360; the middle of each one's top edge,
    // black letterbox unless framed).
    let f = probe::composite_frame(path, v.duration / 2).unwrap();
    let argb = recording_node::spec::SPEAKER_FRAME_ARGB;
    let amber = [(argb >> 16) as u8, (argb >> 8) as u8, argb as u8];
    let framed = |x: u32| {
        let p = f.pixel(x, 1);
        p.iter()
            .zip(amber)
            .all(|(got, want)| got.abs_diff(want) <= 40)
    };
    assert!(
        framed(160) != framed(480),
        "one tile, the speaker's, is framed: {:?} {:?}",
        f.pixel(160, 1),
        f.pixel(480, 1)
    );
}

/// A meeting with two publishing bots and its host key; `n` recording nodes in oslo.
pub(crate) async fn recorded_meeting(
    n: usize,
) -> (
    harness::Cluster,
    Api,
    String,
    String,
    String,
    Vec<(bot::Bot, u32)>,
) {
    let (c, api, base, meeting, host_key) = meeting_to_record(n, "recorded").await;
    let bots = vec![
        (publisher(&base, &meeting, "Ada", 440, "ball").await, 440),
        (publisher(&base, &meeting, "Bo", 880, "smpte").await, 880),
    ];
    (c, api, base, meeting, host_key, bots)
}

/// A cluster with `n` recording nodes in oslo and a meeting titled `title`, with its
/// host key.
pub(crate) async fn meeting_to_record(
    n: usize,
    title: &str,
) -> (harness::Cluster, Api, String, String, String) {
    meeting_to_record_in(spec(), n, title).await
}

/// [`meeting_to_record`] on a cluster of `spec`.
async fn meeting_to_record_in(
    spec: harness::ClusterSpec,
    n: usize,
    title: &str,
) -> (harness::Cluster, Api, String, String, String) {
    let mut c = harness::Cluster::start(spec).await.unwrap();
    for i in 1..=n {
        c.start_recording(crate::node(&format!("recording-oslo-{i}"), "oslo"))
            .unwrap();
    }
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (st, created) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": title, "waiting_room": false })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let meeting = created["id"].as_str().unwrap().to_owned();
    let host_key = created["host_key"].as_str().unwrap().to_owned();
    (c, api, base, meeting, host_key)
}

/// Where recording-oslo-1 wrote recording `rid` (internal storage), and its manifest.
pub(crate) fn written(c: &harness::Cluster, rid: &str) -> (std::path::PathBuf, Manifest) {
    let dir = c
        .recording_storage("recording-oslo-1")
        .join("internal")
        .join(rid);
    let manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    (dir, manifest)
}

/// The audio file of participant `pid` in a recording's manifest, decoded; asserts that
/// its middle second holds `hz`.
pub(crate) fn audio_with_tone(dir: &Path, manifest: &Manifest, pid: &str, hz: u32) -> probe::Audio {
    let f = manifest
        .files
        .iter()
        .find(|f| f.participant_id.as_deref() == Some(pid))
        .unwrap_or_else(|| panic!("no audio file for {pid} ({hz} Hz)"));
    let a = probe::audio(&dir.join(&f.name)).unwrap();
    let mid = a.samples.len() / 2;
    let second = &a.samples[mid - a.rate as usize / 2..mid + a.rate as usize / 2];
    assert_eq!(
        probe::dominant_frequency(second, a.rate, 100, 2000, 10),
        hz,
        "{} should hold {hz} Hz",
        f.name
    );
    a
}

/// Stops recording `rid` as its host; answers the stopped recording.
pub(crate) async fn stop(api: &Api, base: &str, rid: &str, host_key: &str) -> serde_json::Value {
    let asked = Instant::now();
    let (st, stopped) = api
        .send(
            api.http
                .post(format!("{base}/v1/recordings/{rid}/stop"))
                .bearer_auth(host_key)
                // Stopping finishes and measures the files (the controller allows the
                // node 150 s); on a loaded machine that takes longer than the client's
                // usual 10 s.
                .timeout(Duration::from_secs(90)),
        )
        .await;
    eprintln!("stopping {rid} took {:?}", asked.elapsed());
    assert_eq!(st, StatusCode::OK, "{stopped}");
    stopped
}

/// Starts recording `meeting` as its host.
pub(crate) async fn start(
    api: &Api,
    base: &str,
    meeting: &str,
    host_key: &str,
) -> serde_json::Value {
    let (st, rec) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings/{meeting}/recordings"))
                .bearer_auth(host_key),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rec}");
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_whose_node_is_killed_moves_to_another_node_and_the_manifest_shows_the_gap_and_its_deletion_reaches_the_node_once_it_is_back()
 {
    let (mut c, api, base, meeting, host_key, bots) = recorded_meeting(2).await;
    let rec = start(&api, &base, &meeting, &host_key).await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    let first = rec["node_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let victim = c.recording.iter_mut().find(|n| n.spec.id == first).unwrap();
    victim.proc.kill9();
    let killed = Instant::now();
    let moved = harness::eventually(
        Duration::from_secs(crate::TTL + 2),
        "the recording to move to another recording node",
        || async {
            let (_, v) = api
                .operator(reqwest::Method::GET, format!("{base}/v1/recordings/{rid}"))
                .await;
            (v["node_id"] != first.as_str() && v["state"] == "recording").then_some(v)
        },
    )
    .await
    .unwrap();
    eprintln!("moved {:?} after kill -9: {moved}", killed.elapsed());
    let second = moved["node_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stopped = stop(&api, &base, &rid, &host_key).await;
    assert_eq!(stopped["gaps"].as_array().unwrap().len(), 1, "{stopped}");
    for (b, _) in bots {
        b.leave().await;
    }

    // The second node's manifest tells of the first segment and the gap.
    let dir = |node: &str| c.recording_storage(node).join("internal").join(&rid);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir(&second).join("manifest.json")).unwrap())
            .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&manifest).unwrap());
    assert_eq!(manifest.segment, 2);
    assert_eq!(manifest.earlier_nodes, vec![first.clone()]);
    assert_eq!(manifest.gaps.len(), 1);
    assert!(
        manifest.gaps[0].reason.contains(&first),
        "{:?}",
        manifest.gaps
    );
    assert!(manifest.gaps[0].end_offset_ms > Some(manifest.gaps[0].start_offset_ms));
    // The leader noticed the death by the node's heartbeat stream: the gap starts at its
    // last heartbeat, not a lease's length (3 s here) before the move, and is under 3 s.
    let gap = manifest.gaps[0].end_offset_ms.unwrap() - manifest.gaps[0].start_offset_ms;
    assert!(gap < 3000, "a gap of {gap} ms: {:?}", manifest.gaps);
    assert!(
        manifest.files.iter().any(|f| f.name == "composite-s2.mp4"),
        "{:?}",
        manifest.files
    );

    // What the first node wrote before it died plays: each participant's tone, and the
    // composite's video.
    let before = dir(&first);
    let mut tones = Vec::new();
    for entry in std::fs::read_dir(&before).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ogg") {
            let a = probe::audio(&path).unwrap();
            assert!(
                a.duration > Duration::from_secs(2),
                "{} lasts {:?}",
                path.display(),
                a.duration
            );
            let tail = &a.samples[a.samples.len().saturating_sub(a.rate as usize)..];
            tones.push(probe::dominant_frequency(tail, a.rate, 100, 2000, 10));
        }
    }
    tones.sort();
    assert_eq!(
        tones,
        vec![440, 880],
        "both participants' files, with their tones"
    );
    let v = probe::composite(&before.join("composite.mp4")).unwrap();
    eprintln!("pre-crash composite: {v:?}");
    assert!(
        v.duration > Duration::from_secs(2) && v.frames > 20,
        "the pre-crash composite plays: {v:?}"
    );

    // Deleted while the first node is still down: the record and the second node's
    // files go at once; the first node's files go when it is back.
    delete(&api, &base, &rid, &host_key).await;
    assert!(!dir(&second).exists(), "the second node's files are gone");
    assert!(before.exists(), "the first node is down: its files wait");
    let victim = c.recording.iter_mut().find(|n| n.spec.id == first).unwrap();
    victim.proc.restart().unwrap();
    harness::eventually(
        Duration::from_secs(30),
        "the first node, back, to have removed the deleted recording's files",
        || async { (!before.exists()).then_some(()) },
    )
    .await
    .unwrap();
}

/// The meeting's media node dies; its participants come back (on the region's other
/// node): the recording goes on, on the same recording node, in a second segment fed by
/// the new node. Both segments' files are kept and whole, and the second holds the
/// returning participants' audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_meetings_media_node_dies_the_recording_goes_on_in_a_new_segment_fed_by_its_new_node()
 {
    let (mut c, api, base, meeting, host_key, bots) = recorded_meeting(1).await;
    let rec = start(&api, &base, &meeting, &host_key).await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let media = bots[0].0.node_id.clone();
    c.media_node(&media).unwrap().proc.kill9();
    drop(bots);
    let what = "the dead node's placements to go";
    crate::wait_placements_gone(&c, std::slice::from_ref(&meeting), &media, what).await;
    let back = [
        publisher(&base, &meeting, "Ada", 440, "ball").await,
        publisher(&base, &meeting, "Bo", 880, "smpte").await,
    ];
    assert_ne!(back[0].node_id, media);
    let going_on = harness::eventually(
        Duration::from_secs(20),
        "the recording to go on fed by the new node",
        || async {
            let (_, v) = api
                .operator(reqwest::Method::GET, format!("{base}/v1/recordings/{rid}"))
                .await;
            (v["state"] == "recording" && v["segment"] == 2).then_some(v)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        going_on["media_node_id"],
        back[0].node_id.as_str(),
        "{going_on}"
    );
    assert_eq!(going_on["node_id"], "recording-oslo-1", "{going_on}");
    let gap = going_on["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["reason"].as_str().unwrap().contains(&media))
        .cloned()
        .unwrap_or_else(|| panic!("a gap names the lost node: {going_on}"));
    assert!(gap["end_unix_ms"].as_i64().unwrap() > 0, "closed: {gap}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stopped = stop(&api, &base, &rid, &host_key).await;
    for f in [
        "composite.mp4",
        "composite-s2.mp4",
        "manifest-segment-1.json",
        "manifest.json",
    ] {
        assert!(
            stopped["files"].as_array().unwrap().iter().any(|x| x == f),
            "{f}: {stopped}"
        );
    }

    let (dir, second) = written(&c, &rid);
    let first: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join(common::download::segment_manifest_name(1))).unwrap(),
    )
    .unwrap();
    assert_eq!((first.segment, second.segment), (1, 2));
    assert_eq!(first.participants.len(), 2);
    for m in [&first, &second] {
        for f in &m.files {
            assert_eq!(
                sha256_file(&dir.join(&f.name)).unwrap(),
                f.sha256,
                "{}",
                f.name
            );
        }
    }
    let v = probe::composite(&dir.join("composite.mp4")).unwrap();
    assert!(v.duration > Duration::from_secs(3), "segment 1: {v:?}");
    let v = probe::composite(&dir.join("composite-s2.mp4")).unwrap();
    assert!(v.duration > Duration::from_secs(2), "segment 2: {v:?}");
    audio_with_tone(&dir, &second, &back[0].participant_id, 440);
    audio_with_tone(&dir, &second, &back[1].participant_id, 880);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_recording_node_finishes_its_recording_before_it_exits() {
    let (mut c, api, base, meeting, host_key, _bots) = recorded_meeting(1).await;
    let rec = start(&api, &base, &meeting, &host_key).await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    // The recording under way: the meeting's media reaches the recording node.
    let node = format!("http://127.0.0.1:{}", c.recording[0].http);
    harness::eventually(
        Duration::from_secs(30),
        "the recording node to receive the meeting's media",
        || async {
            let text = crate::metrics_text(&node).await;
            harness::metric_value(&text, "fjord_recording_packets_total").filter(|n| *n > 0.0)
        },
    )
    .await
    .unwrap();
    c.recording[0]
        .proc
        .signal(nix::sys::signal::Signal::SIGTERM);
    // Draining: no new recordings, but the running one goes on. A draining node looks
    // for idleness every 250 ms, so in three seconds it would have left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        c.recording[0].proc.is_running(),
        "the node left while a recording was running"
    );
    let stopped = stop(&api, &base, &rid, &host_key).await;
    assert_eq!(stopped["state"], "stopped");
    assert!(
        stopped["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "composite.mp4"),
        "{stopped}"
    );
    let code = c.recording[0].proc.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "the drained node should exit once idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_of_a_meeting_across_two_regions_holds_every_participants_audio() {
    let (c, api, base, meeting, host_key) =
        meeting_to_record(1, "two regions, one recording").await;
    let clip = |hz: u32| bot::ClipSpec {
        tone_hz: hz,
        width: 320,
        height: 180,
        ..bot::ClipSpec::default()
    };
    let ada = crate::join_bot(&base, &meeting, "Ada", Some("oslo"), Some(clip(440))).await;
    let bo = crate::join_bot(&base, &meeting, "Bo", Some("stockholm"), Some(clip(880))).await;
    assert_ne!(ada.node_id, bo.node_id, "one participant per region's node");
    harness::eventually(
        Duration::from_secs(30),
        "the two hear each other",
        || async {
            let heard = |b: &bot::Bot, o: &bot::Bot| {
                b.received()
                    .get(&(o.participant_id.clone(), "audio"))
                    .is_some_and(|a| a.packets > 50)
            };
            (heard(&ada, &bo) && heard(&bo, &ada)).then_some(())
        },
    )
    .await
    .unwrap();
    let rec = start(&api, &base, &meeting, &host_key).await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop(&api, &base, &rid, &host_key).await;
    let (dir, manifest) = written(&c, &rid);
    assert_eq!(manifest.participants.len(), 2, "{manifest:?}");
    for (b, hz) in [(&ada, 440), (&bo, 880)] {
        let a = audio_with_tone(&dir, &manifest, &b.participant_id, hz);
        assert!(
            a.duration >= Duration::from_secs(4),
            "{hz} Hz: {:?}",
            a.duration
        );
    }
}

/// The meeting's recordings as its host lists them.
pub(crate) async fn recordings(
    api: &Api,
    base: &str,
    meeting: &str,
    key: &str,
) -> Vec<serde_json::Value> {
    let (st, v) = api
        .send(
            api.http
                .get(format!("{base}/v1/meetings/{meeting}/recordings"))
                .bearer_auth(key),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["recordings"].as_array().cloned().unwrap_or_default()
}

/// [`recordings`]: (id, state) each.
async fn listed(api: &Api, base: &str, meeting: &str, key: &str) -> Vec<(String, String)> {
    recordings(api, base, meeting, key)
        .await
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("recording_id"), s("state"))
        })
        .collect()
}

/// `b` asks `action` of the cloud recording and is refused saying `why`.
async fn refused(b: &bot::Bot, action: signaling::CloudRecordingAction, why: &str) {
    let before = b.errors("cloud_recording").len();
    b.send(signaling::ClientMsg::CloudRecording { action })
        .unwrap();
    let e = harness::eventually(Duration::from_secs(10), "the refusal", || async {
        b.errors("cloud_recording").get(before).cloned()
    })
    .await
    .unwrap_or_else(|_| panic!("{action:?} was not refused"));
    assert_eq!(e, why, "{action:?}");
}

/// POSTs to `url` as `key` and expects 409 with the error `code`.
async fn conflict(api: &Api, url: String, key: &str, code: &str) {
    let (st, v) = api.send(api.http.post(url).bearer_auth(key)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::CONFLICT, Some(code)),
        "{v}"
    );
}

/// The cloud recording's actions in the meeting's audit trail.
async fn recording_audit(api: &Api, base: &str, meeting: &str, key: &str) -> Vec<String> {
    crate::hosts::audit(api, base, meeting, key)
        .await
        .iter()
        .filter_map(|a| a["action"].as_str())
        .filter(|a| a.starts_with("recording_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_recordings_state_or_the_meeting_does_not_allow_is_refused_with_its_own_error_and_changes_nothing()
 {
    use common::cloud_recording as cloud;
    use signaling::CloudRecordingAction as A;
    let (_c, api, base, meeting, key) = meeting_to_record(1, "Refusals").await;
    let h = crate::hosts::host(&base, &meeting, &key, Some("oslo"), 440).await;
    let a = crate::hosts::guest(&base, &meeting, "Ada Attendee", 660).await;
    let until = async |state: &str| {
        harness::eventually(Duration::from_secs(30), state, || async {
            let l = listed(&api, &base, &meeting, &key).await;
            assert!(l.len() <= 1, "one recording: {l:?}");
            l.into_iter().find(|(_, s)| s == state).map(|(id, _)| id)
        })
        .await
        .unwrap()
    };

    // Not a host; nothing running to pause, resume or stop.
    let before = a.errors("cloud_recording").len();
    a.send(signaling::ClientMsg::CloudRecording { action: A::Start })
        .unwrap();
    let e = harness::eventually(Duration::from_secs(10), "the refusal", || async {
        a.errors("cloud_recording").get(before).cloned()
    })
    .await
    .unwrap();
    assert!(e.starts_with("only hosts and co-hosts"), "{e}");
    for action in [A::Pause, A::Resume, A::Stop] {
        refused(&h, action, cloud::NOT_RUNNING.message).await;
    }
    assert!(listed(&api, &base, &meeting, &key).await.is_empty());
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings/{meeting}/recordings")),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "no key: {v}");

    // Running: a second start, a resume; paused: a second pause; stopped: a second stop.
    h.send(signaling::ClientMsg::CloudRecording { action: A::Start })
        .unwrap();
    let rid = until("recording").await;
    refused(&h, A::Start, cloud::ALREADY.message).await;
    refused(&h, A::Resume, cloud::NOT_PAUSED.message).await;
    conflict(
        &api,
        format!("{base}/v1/meetings/{meeting}/recordings"),
        &key,
        "already_recording",
    )
    .await;
    h.send(signaling::ClientMsg::CloudRecording { action: A::Pause })
        .unwrap();
    until("paused").await;
    refused(&h, A::Pause, cloud::ALREADY_PAUSED.message).await;
    h.send(signaling::ClientMsg::CloudRecording { action: A::Resume })
        .unwrap();
    until("recording").await;
    h.send(signaling::ClientMsg::CloudRecording { action: A::Stop })
        .unwrap();
    assert_eq!(until("stopped").await, rid);
    refused(&h, A::Stop, cloud::NOT_RUNNING.message).await;
    conflict(
        &api,
        format!("{base}/v1/recordings/{rid}/stop"),
        &key,
        "not_recording",
    )
    .await;
    // What was refused left no trace: one recording, four actions.
    assert_eq!(
        listed(&api, &base, &meeting, &key).await,
        [(rid.clone(), "stopped".to_owned())]
    );
    assert_eq!(
        recording_audit(&api, &base, &meeting, &key).await,
        [
            "recording_start",
            "recording_pause",
            "recording_resume",
            "recording_stop"
        ]
    );
    // The pause is a closed gap in the record.
    let (_, shown) = api
        .send(
            api.http
                .get(format!("{base}/v1/recordings/{rid}"))
                .bearer_auth(&key),
        )
        .await;
    let gaps = shown["gaps"].as_array().unwrap();
    assert!(
        gaps.iter().any(|g| g["reason"] == cloud::PAUSED_GAP
            && g["end_unix_ms"].as_i64() > g["start_unix_ms"].as_i64()),
        "{shown}"
    );

    // An end-to-end encrypted meeting: neither the page's button nor the API records it.
    let (st, created) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Sealed", "waiting_room": false, "e2ee": true })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let (sealed, sealed_key) = (
        created["id"].as_str().unwrap(),
        created["host_key"].as_str().unwrap(),
    );
    let sh = crate::hosts::host(&base, sealed, sealed_key, Some("oslo"), 440).await;
    refused(&sh, A::Start, cloud::E2EE.message).await;
    conflict(
        &api,
        format!("{base}/v1/meetings/{sealed}/recordings"),
        sealed_key,
        "e2ee_meeting",
    )
    .await;
    assert!(listed(&api, &base, sealed, sealed_key).await.is_empty());
    assert!(
        recording_audit(&api, &base, sealed, sealed_key)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_past_its_retention_is_gone_from_disk_and_etcd_and_the_audit_says_so() {
    // Recordings (and personal data) are kept 3 s after they stop (30 days by default).
    let spec = harness::ClusterSpec {
        controller_extra: Some(json!({ "retention_secs": 3 })),
        ..spec()
    };
    let (c, api, base, meeting, key) = meeting_to_record_in(spec, 1, "Kept briefly").await;
    let _ada = publisher(&base, &meeting, "Ada", 440, "ball").await;
    let rid = start(&api, &base, &meeting, &key).await["recording_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop(&api, &base, &rid, &key).await;
    let (dir, manifest) = written(&c, &rid);
    assert!(!manifest.files.is_empty() && dir.exists());

    // Within seconds of its retention: no files, no record, in the audit.
    harness::eventually(Duration::from_secs(30), "the files to go", || async {
        (!dir.exists()).then_some(())
    })
    .await
    .unwrap();
    let etcd = etcd_client::Client::connect(c.etcd.endpoints(), None)
        .await
        .unwrap();
    let key_of = format!("/fjord/recordings/{rid}");
    harness::eventually(Duration::from_secs(10), "the record to go", || async {
        let left = etcd.clone().get(key_of.clone(), None).await.unwrap();
        left.kvs().is_empty().then_some(())
    })
    .await
    .unwrap();
    let (st, gone) = api
        .send(
            api.http
                .get(format!("{base}/v1/recordings/{rid}"))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{gone}");
    assert!(listed(&api, &base, &meeting, &key).await.is_empty());
    let audit = recording_audit(&api, &base, &meeting, &key).await;
    assert_eq!(
        audit,
        ["recording_start", "recording_stop", "recording_deleted"]
    );
    // Nothing under the storage of any classification holds it.
    let storage = c.recording_storage("recording-oslo-1");
    let left: Vec<_> = walk(&storage)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&rid))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
