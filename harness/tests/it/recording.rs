//! Recording, end to end with real parts: webrtc-rs bots publish through a media node
//! (str0m), which feeds the recording node over the QUIC relay; the recording node writes
//! the files with GStreamer, and the test decodes them.
use std::path::Path;
use std::time::{Duration, Instant};

use proto::v1::recording_node_control_client::RecordingNodeControlClient;
use proto::v1::{StartRecordingRequest, StopRecordingRequest};
use recording_node::manifest::{Manifest, sha256_file};
use recording_node::probe;
use serde_json::json;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{Api, spec};

/// The recording node's control API, as the controller reaches it (mutual TLS).
async fn control(c: &harness::Cluster) -> RecordingNodeControlClient<tonic::transport::Channel> {
    let (cert, key) = c.pki.files("controller-1");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(c.pki.ca_file()).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    let ch = Endpoint::from_shared(format!("https://127.0.0.1:{}", c.recording[0].grpc))
        .unwrap()
        .timeout(Duration::from_secs(150))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    RecordingNodeControlClient::new(ch)
}

async fn publisher(base: &str, meeting: &str, name: &str, hz: u32, pattern: &str) -> bot::Bot {
    let clip = bot::media::encode(&bot::ClipSpec {
        tone_hz: hz,
        pattern: pattern.into(),
        width: 320,
        height: 180,
        ..bot::ClipSpec::default()
    })
    .unwrap();
    bot::Bot::join(
        bot::BotConfig {
            controller: base.into(),
            meeting: meeting.into(),
            name: name.into(),
            password: None,
            region: Some("oslo".into()),
            publish: Some(std::sync::Arc::new(clip)),
        },
        Duration::from_secs(20),
    )
    .await
    .unwrap()
}

fn near(what: &str, got_ms: u64, want: Duration) {
    let diff = (got_ms as i64 - want.as_millis() as i64).abs();
    assert!(
        diff <= 500,
        "{what} lasts {got_ms} ms, expected {want:?} ± 0.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bots_are_recorded_into_their_own_audio_files_and_a_composite() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let mut c = c;
    c.start_recording(crate::node("recording-oslo-1", "oslo"))
        .unwrap();
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "recorded" })).await;
    let ada = publisher(&base, &meeting, "Ada", 440, "ball").await;
    let bo = publisher(&base, &meeting, "Bo", 880, "smpte").await;
    assert_eq!(ada.node_id, bo.node_id, "one meeting, one node per region");
    let media = c
        .media
        .iter()
        .find(|n| n.spec.id == ada.node_id)
        .expect("the bots' media node");

    let mut ctl = control(&c).await;
    let rid = "rec-test-0001".to_string();
    ctl.start_recording(StartRecordingRequest {
        recording_id: rid.clone(),
        meeting_id: meeting.clone(),
        classification: "internal".into(),
        media_relay_addr: format!("127.0.0.1:{}", media.relay),
        media_node_id: media.spec.id.clone(),
    })
    .await
    .unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // From the start's answer to the stop's request: how long the bots were recorded.
    let recorded = started.elapsed();
    ctl.stop_recording(StopRecordingRequest {
        recording_id: rid.clone(),
    })
    .await
    .unwrap();
    let ids = [
        (ada.participant_id.clone(), 440),
        (bo.participant_id.clone(), 880),
    ];
    ada.leave().await;
    bo.leave().await;

    let dir = c
        .recording_storage("recording-oslo-1")
        .join("internal")
        .join(&rid);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&manifest).unwrap());
    assert_eq!(manifest.meeting_id, meeting);
    assert_eq!(manifest.participants.len(), 2);
    for f in &manifest.files {
        assert_eq!(
            sha256_file(&dir.join(&f.name)).unwrap(),
            f.sha256,
            "{} changed after the manifest",
            f.name
        );
    }
    let file_of = |pid: &str| {
        manifest
            .files
            .iter()
            .find(|f| f.participant_id.as_deref() == Some(pid))
            .unwrap_or_else(|| panic!("no audio file for {pid}"))
            .clone()
    };
    for (pid, hz) in ids {
        let f = file_of(&pid);
        let path = dir.join(&f.name);
        let a = probe::audio(&path).unwrap();
        near(&f.name, a.duration.as_millis() as u64, recorded);
        let mid = a.samples.len() / 2;
        let second = &a.samples[mid - a.rate as usize / 2..mid + a.rate as usize / 2];
        assert_eq!(
            probe::dominant_frequency(second, a.rate, 100, 2000, 10),
            hz,
            "{} should hold {hz} Hz",
            f.name
        );
    }
    let composite = dir.join("composite.mp4");
    check_composite(&composite, recorded);
}

fn check_composite(path: &Path, recorded: Duration) {
    let v = probe::composite(path).unwrap();
    eprintln!("composite: {v:?}");
    assert_eq!((v.width, v.height), (640, 360), "the configured resolution");
    near("the composite", v.duration.as_millis() as u64, recorded);
    assert!(v.audio_buffers > 0, "the composite has an audio track");
}
