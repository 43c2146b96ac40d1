//! The recording pipelines fed with real RTP (Opus tones and VP8 test patterns made by
//! GStreamer's encoders and payloaders), paced in real time as the relay delivers it;
//! then the files are decoded end to end and checked.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use recording_node::pipeline::{AudioFile, Composite};
use recording_node::probe;
use recording_node::spec::{Codec, CompositeSpec, TrackSpec};
use recording_node::synth::{pattern, play, tone};

fn track(id: u32, participant: &str, codec: Codec) -> TrackSpec {
    TrackSpec {
        track_id: id,
        participant_id: format!("{participant}-id"),
        participant_name: participant.into(),
        codec,
        payload_type: if codec == Codec::Opus { 111 } else { 96 },
    }
}

/// A composite smaller than the default, quicker to record in a test.
fn small_composite() -> CompositeSpec {
    CompositeSpec {
        width: 640,
        height: 360,
        fps: 25,
        video_kbps: 800,
        ..CompositeSpec::default()
    }
}

fn assert_near(what: &str, got: Duration, want: Duration) {
    let diff = got.abs_diff(want);
    assert!(
        diff <= Duration::from_millis(500),
        "{what} lasts {got:?}, expected {want:?} ± 0.5 s"
    );
}

fn check_tone(path: &Path, hz: u32, secs: u32) {
    let a = probe::audio(path).unwrap();
    assert_near(
        &path.display().to_string(),
        a.duration,
        Duration::from_secs(secs.into()),
    );
    // One second from the middle.
    let mid = a.samples.len() / 2;
    let window = &a.samples[mid - a.rate as usize / 2..mid + a.rate as usize / 2];
    let f = probe::dominant_frequency(window, a.rate, 100, 2000, 10);
    assert_eq!(f, hz, "{} should be a {hz} Hz tone", path.display());
}

#[test]
fn participant_audio_files_and_the_composite_hold_what_was_sent() -> anyhow::Result<()> {
    recording_node::pipeline::init()?;
    const SECS: u32 = 5;
    let dir = tempfile::tempdir()?;
    let (ada_a, ada_v) = (track(1, "Ada", Codec::Opus), track(2, "Ada", Codec::Vp8));
    let (bo_a, bo_v) = (track(3, "Bo", Codec::Opus), track(4, "Bo", Codec::Vp8));
    let streams = vec![
        (1, tone(440, SECS)?),
        (2, pattern("ball", 320, 180, 300, SECS)?),
        (3, tone(880, SECS)?),
        (4, pattern("smpte", 320, 180, 300, SECS)?),
    ];
    let spec = small_composite();
    let mut composite = Composite::start(spec, &dir.path().join("composite.mp4"))?;
    let files = [
        AudioFile::start(&ada_a, dir.path(), 1)?,
        AudioFile::start(&bo_a, dir.path(), 1)?,
    ];
    for t in [&ada_a, &ada_v, &bo_a, &bo_v] {
        composite.add(t)?;
    }
    let started = Instant::now();
    play(&streams, |id, p| {
        assert!(composite.push(id, p), "composite refused a packet");
        match id {
            1 => assert!(files[0].push(p)),
            3 => assert!(files[1].push(p)),
            _ => {}
        }
    });
    // Bo leaves: his tile goes, the recording goes on a moment with Ada's last frame.
    composite.remove(4);
    composite.remove(3);
    std::thread::sleep(Duration::from_millis(500));
    let recorded = started.elapsed();
    let end = composite.now();
    if let Some(e) = composite.error() {
        return Err(anyhow!("composite failed: {e}"));
    }
    let [ada_file, bo_file] = files;
    let ada_path = ada_file.finish()?;
    let bo_path = bo_file.finish()?;
    let composite_path = composite.finish(end)?;

    assert!(ada_path.ends_with("audio-Ada-Ada-id.ogg"));
    check_tone(&ada_path, 440, SECS);
    check_tone(&bo_path, 880, SECS);

    let v = probe::composite(&composite_path)?;
    eprintln!("composite: {v:?}, recorded for {recorded:?}");
    assert_eq!((v.width, v.height), (640, 360), "the configured resolution");
    assert_near("the composite", v.duration, recorded);
    assert!(
        v.frames as f64 >= recorded.as_secs_f64() * 25.0 * 0.8,
        "the composite should have about 25 frames a second: {} in {recorded:?}",
        v.frames
    );
    assert!(v.audio_buffers > 0, "the composite has an audio track");
    Ok(())
}

/// Whether a pixel is the speaker frame's amber (within what H.264 leaves of it).
fn amber(p: [u8; 3]) -> bool {
    let argb = recording_node::spec::SPEAKER_FRAME_ARGB;
    let want = [(argb >> 16) as u8, (argb >> 8) as u8, argb as u8];
    p.iter()
        .zip(want)
        .all(|(got, want)| got.abs_diff(want) <= 40)
}

#[test]
fn the_active_speakers_tile_is_framed_and_the_frame_follows_the_speaker() -> anyhow::Result<()> {
    recording_node::pipeline::init()?;
    const SECS: u32 = 4;
    let dir = tempfile::tempdir()?;
    let (ada, bo) = (track(2, "Ada", Codec::Vp8), track(4, "Bo", Codec::Vp8));
    // Black around a small ball: a tile's edges are black unless framed.
    let streams = vec![
        (2, pattern("ball", 320, 180, 300, SECS)?),
        (4, pattern("ball", 320, 180, 300, SECS)?),
    ];
    let spec = small_composite();
    let mut composite = Composite::start(spec, &dir.path().join("composite.mp4"))?;
    composite.add(&ada)?;
    composite.add(&bo)?;
    // Ada speaks first, Bo from the middle on.
    composite.highlight("Ada-id");
    let started = Instant::now();
    let mut moved = false;
    play(&streams, |id, p| {
        if !moved && started.elapsed() >= Duration::from_secs(u64::from(SECS) / 2) {
            composite.highlight("Bo-id");
            moved = true;
        }
        assert!(composite.push(id, p), "composite refused a packet");
    });
    let end = composite.now();
    if let Some(e) = composite.error() {
        return Err(anyhow!("composite failed: {e}"));
    }
    let path = composite.finish(end)?;

    // Two tiles side by side, 320x360 each: the middle of each one's top edge, and of
    // its left edge.
    let edges = |f: &probe::Frame, x0: u32| [f.pixel(x0 + 160, 1), f.pixel(x0 + 1, 60)];
    let early = probe::composite_frame(&path, Duration::from_millis(1_200))?;
    let late = probe::composite_frame(&path, Duration::from_millis(3_200))?;
    assert_eq!((early.width, early.height), (640, 360));
    let (ada_early, bo_early) = (edges(&early, 0), edges(&early, 320));
    let (ada_late, bo_late) = (edges(&late, 0), edges(&late, 320));
    assert!(
        ada_early.iter().all(|p| amber(*p)),
        "Ada speaks: {ada_early:?}"
    );
    assert!(
        !bo_early.iter().any(|p| amber(*p)),
        "Bo is silent: {bo_early:?}"
    );
    assert!(
        !ada_late.iter().any(|p| amber(*p)),
        "Ada is silent now: {ada_late:?}"
    );
    assert!(
        bo_late.iter().all(|p| amber(*p)),
        "Bo speaks now: {bo_late:?}"
    );
    Ok(())
}
