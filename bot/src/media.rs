//! Synthetic media for bots: a tone and a moving test pattern, encoded once with GStreamer
//! into real Opus and VP8 frames, then sent in a loop.
//!
//! Encoding once keeps a bot cheap (a load test runs hundreds of them) while every packet
//! on the wire is what a real encoder produced, so receivers and recorders can decode it.
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// One encoded frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub data: Bytes,
    pub duration: Duration,
    pub keyframe: bool,
}

/// What a bot publishes: a loop of audio and a loop of video frames.
#[derive(Clone, Debug)]
pub struct Clip {
    /// Opus, 48 kHz, 20 ms per frame.
    pub audio: Vec<Frame>,
    /// VP8; the loop starts with a keyframe.
    pub video: Vec<Frame>,
    /// The tone's level in -dBov (RFC 6464: 0 loudest, 127 silence).
    pub audio_level: u8,
}

/// What to encode.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSpec {
    /// Sine tone frequency in Hz. The loop lasts whole seconds, so any integer frequency
    /// loops without a click.
    pub tone_hz: u32,
    /// A `videotestsrc` pattern, e.g. `ball`, `smpte`, `snow`.
    pub pattern: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Length of the loop in whole seconds; a keyframe starts every second.
    pub seconds: u32,
    pub video_kbps: u32,
}

impl Default for ClipSpec {
    fn default() -> Self {
        Self {
            tone_hz: 440,
            pattern: "ball".into(),
            width: 640,
            height: 360,
            fps: 30,
            seconds: 2,
            video_kbps: 500,
        }
    }
}

/// The tone's volume (linear, 0..1) and its level in -dBov.
const TONE_VOLUME: f64 = 0.3;

impl ClipSpec {
    fn check(&self) -> anyhow::Result<()> {
        if !(20..=20_000).contains(&self.tone_hz) {
            bail!("tone must be 20..20000 Hz, got {}", self.tone_hz);
        }
        if self.width < 16 || self.height < 16 || self.width > 3840 || self.height > 2160 {
            bail!("video size {}x{} out of range", self.width, self.height);
        }
        if !(1..=60).contains(&self.fps) || !(1..=30).contains(&self.seconds) {
            bail!("fps must be 1..60 and seconds 1..30");
        }
        if !self
            .pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("bad videotestsrc pattern {:?}", self.pattern);
        }
        Ok(())
    }
}

/// Encodes `spec` with GStreamer (needs the `opusenc` and `vp8enc` plugins: Debian's
/// gstreamer1.0-plugins-base and -good).
pub fn encode(spec: &ClipSpec) -> anyhow::Result<Clip> {
    spec.check()?;
    gst::init().context("initialise GStreamer")?;
    let audio_frames = spec.seconds * 50;
    let audio = run(&format!(
        "audiotestsrc wave=sine freq={} volume={TONE_VOLUME} samplesperbuffer=960 num-buffers={audio_frames} \
         ! audio/x-raw,rate=48000,channels=1 \
         ! opusenc frame-size=20 bitrate=48000 \
         ! appsink name=out sync=false",
        spec.tone_hz
    ))
    .context("encode the Opus tone (is gstreamer1.0-plugins-base installed?)")?;
    let video = run(&format!(
        "videotestsrc pattern={} num-buffers={} \
         ! video/x-raw,format=I420,width={},height={},framerate={}/1 \
         ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist={} target-bitrate={} end-usage=cbr \
         ! appsink name=out sync=false",
        spec.pattern,
        spec.fps * spec.seconds,
        spec.width,
        spec.height,
        spec.fps,
        spec.fps,
        spec.video_kbps * 1000
    ))
    .context("encode the VP8 test pattern (is gstreamer1.0-plugins-good installed?)")?;
    // opusenc flushes its look-ahead as one more frame at the end; the loop is the
    // frames that cover the input.
    let mut audio = audio;
    if audio.len() < audio_frames as usize {
        bail!(
            "opusenc gave {} frames for {audio_frames} buffers",
            audio.len()
        );
    }
    audio.truncate(audio_frames as usize);
    if !video.first().is_some_and(|f| f.keyframe) {
        bail!("the VP8 loop does not start with a keyframe");
    }
    let frame = Duration::from_secs(1) / spec.fps;
    Ok(Clip {
        audio: audio
            .into_iter()
            .map(|f| Frame {
                duration: Duration::from_millis(20),
                ..f
            })
            .collect(),
        video: video
            .into_iter()
            .map(|f| Frame {
                duration: frame,
                ..f
            })
            .collect(),
        audio_level: (-20.0 * TONE_VOLUME.log10()).round() as u8,
    })
}

/// The frequency of the tone in `frames` (mono Opus frames as a bot publishes them),
/// decoded with GStreamer: which publisher's audio a subscriber got.
pub fn tone_hz(frames: &[Vec<u8>]) -> anyhow::Result<u32> {
    gst::init().context("initialise GStreamer")?;
    if frames.len() < 10 {
        bail!("{} Opus frames are too few to tell a tone", frames.len());
    }
    let (pipeline, src, sink) = with_source(
        "appsrc name=in format=time caps=audio/x-opus,channel-mapping-family=0,channels=1,rate=48000 \
         ! opusdec ! audioconvert ! audioresample \
         ! audio/x-raw,format=F32LE,channels=1,rate=48000 ! appsink name=out sync=false",
    )?;
    for (i, f) in frames.iter().enumerate() {
        let mut b = gst::Buffer::from_slice(f.clone());
        let at = gst::ClockTime::from_mseconds(20 * i as u64);
        let b_mut = b.get_mut().context("fresh buffer")?;
        b_mut.set_pts(at);
        b_mut.set_duration(gst::ClockTime::from_mseconds(20));
        src.push_buffer(b)
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    }
    src.end_of_stream()
        .map_err(|e| anyhow::anyhow!("eos: {e}"))?;
    let mut samples: Vec<f32> = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(buffer) = sample.buffer() {
            let map = buffer.map_readable()?;
            samples.extend(
                map.as_slice()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
    }
    pipeline.set_state(gst::State::Null)?;
    if samples.len() < 4800 {
        bail!("decoded only {} samples", samples.len());
    }
    Ok(common::tone::dominant_frequency(
        &samples, 48_000, 100, 4000, 10,
    ))
}

/// The pipeline `description` and its appsink `out`.
fn with_sink(description: &str) -> anyhow::Result<(gst::Pipeline, gst_app::AppSink)> {
    let pipeline = gst::parse::launch(description)
        .with_context(|| format!("build pipeline `{description}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .context("no appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("`out` is not an appsink"))?;
    Ok((pipeline, sink))
}

/// The pipeline `description`, playing, with its appsrc `in` and appsink `out`.
pub fn with_source(
    description: &str,
) -> anyhow::Result<(gst::Pipeline, gst_app::AppSrc, gst_app::AppSink)> {
    let (pipeline, sink) = with_sink(description)?;
    let src = pipeline
        .by_name("in")
        .context("no appsrc")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| anyhow::anyhow!("`in` is not an appsrc"))?;
    pipeline.set_state(gst::State::Playing)?;
    Ok((pipeline, src, sink))
}

/// Runs a pipeline whose sink is the appsink `out` to the end; returns what it produced.
fn run(description: &str) -> anyhow::Result<Vec<Frame>> {
    let (pipeline, sink) = with_sink(description)?;
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let result = drain(&pipeline, &sink, |buffer| {
        let map = buffer.map_readable()?;
        frames.push(Frame {
            data: Bytes::copy_from_slice(map.as_slice()),
            duration: Duration::ZERO,
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        });
        Ok(())
    });
    pipeline.set_state(gst::State::Null)?;
    result.map(|()| frames)
}

/// Gives every buffer `sink` pulls to `each` until the end of the stream, or the
/// pipeline's error.
fn drain(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    mut each: impl FnMut(&gst::BufferRef) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    loop {
        match sink.pull_sample() {
            Ok(sample) => {
                if let Some(buffer) = sample.buffer() {
                    each(buffer)?;
                }
            }
            Err(_) if sink.is_eos() => return Ok(()),
            Err(_) => {
                // Not EOS: the pipeline failed; say why.
                let bus = pipeline.bus().context("no bus")?;
                let why = bus
                    .pop_filtered(&[gst::MessageType::Error])
                    .and_then(|m| match m.view() {
                        gst::MessageView::Error(e) => Some(e.error().to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "pipeline stopped".into());
                bail!(why);
            }
        }
    }
}

/// Decodes VP8 RTP payloads as a subscriber got them (from a keyframe on, each with its
/// marker bit) with GStreamer's vp8dec: each picture as a 16 × 9 grid of RGB values, the
/// coarse look a test compares with a browser's picture. An error when the decoder
/// refuses the frames.
pub fn vp8_pictures(packets: &[(Vec<u8>, bool)]) -> anyhow::Result<Vec<Vec<f64>>> {
    gst::init().context("initialise GStreamer")?;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut frame = Vec::new();
    for (payload, marker) in packets {
        let at = common::vp8::parse(payload)
            .context("a VP8 payload too short")?
            .len;
        frame.extend_from_slice(&payload[at..]);
        if *marker {
            frames.push(std::mem::take(&mut frame));
        }
    }
    if frames.is_empty() {
        bail!("no whole VP8 frame to decode");
    }
    let (pipeline, src, sink) = with_source(
        "appsrc name=in format=time caps=video/x-vp8,framerate=30/1 ! vp8dec ! videoconvert \
         ! videoscale ! video/x-raw,format=RGB,width=16,height=9 ! appsink name=out sync=false",
    )?;
    for (i, f) in frames.into_iter().enumerate() {
        let mut b = gst::Buffer::from_mut_slice(f);
        let b_mut = b.get_mut().context("fresh buffer")?;
        b_mut.set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
        if src.push_buffer(b).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let mut pictures = Vec::new();
    let result = drain(&pipeline, &sink, |buffer| {
        let map = buffer.map_readable()?;
        pictures.push(map.iter().map(|b| f64::from(*b)).collect());
        Ok(())
    });
    pipeline.set_state(gst::State::Null)?;
    result.map(|()| pictures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_tone_and_a_pattern_into_real_opus_and_vp8_frames() {
        let clip = encode(&ClipSpec {
            seconds: 1,
            width: 320,
            height: 180,
            ..ClipSpec::default()
        })
        .unwrap();
        assert_eq!(clip.audio.len(), 50);
        assert_eq!(clip.video.len(), 30);
        // Opus TOC byte: configs 1, 5, 9 (SILK), 13/15 (hybrid), 19, 23, 27, 31 (CELT)
        // are the 20 ms ones, i.e. config % 4 == 3 for CELT or the listed others.
        assert!(clip.audio.iter().all(|f| {
            let config = f.data[0] >> 3;
            [1, 5, 9, 13, 15, 19, 23, 27, 31].contains(&config)
        }));
        // A VP8 keyframe: frame tag bit 0 clear, then the start code 9d 01 2a, then the
        // size we asked for.
        let key = &clip.video[0].data;
        assert_eq!(key[0] & 1, 0, "keyframe tag");
        assert_eq!(&key[3..6], &[0x9d, 0x01, 0x2a], "VP8 start code");
        assert_eq!(u16::from_le_bytes([key[6], key[7]]) & 0x3fff, 320);
        assert_eq!(u16::from_le_bytes([key[8], key[9]]) & 0x3fff, 180);
        assert_eq!(clip.audio_level, 10);
    }

    #[test]
    fn the_tone_of_encoded_frames_is_found_again() {
        for hz in [440, 660] {
            let clip = encode(&ClipSpec {
                tone_hz: hz,
                seconds: 1,
                width: 64,
                height: 64,
                ..ClipSpec::default()
            })
            .unwrap();
            let frames: Vec<Vec<u8>> = clip.audio.iter().map(|f| f.data.to_vec()).collect();
            assert_eq!(tone_hz(&frames).unwrap(), hz);
        }
    }

    #[test]
    fn vp8_payloads_decode_back_to_the_picture_and_garbage_does_not() {
        let clip = encode(&ClipSpec {
            pattern: "red".into(),
            seconds: 1,
            width: 160,
            height: 90,
            ..ClipSpec::default()
        })
        .unwrap();
        // One packet per frame: the shortest descriptor (S=1, partition 0), marker set.
        let packets: Vec<(Vec<u8>, bool)> = clip
            .video
            .iter()
            .map(|f| ([&[0x10u8][..], &f.data[..]].concat(), true))
            .collect();
        let pictures = vp8_pictures(&packets).unwrap();
        assert_eq!(pictures.len(), clip.video.len());
        let red = &pictures[0];
        assert_eq!(red.len(), 16 * 9 * 3);
        assert!(
            red.chunks(3)
                .all(|p| p[0] > 200.0 && p[1] < 60.0 && p[2] < 60.0),
            "{red:?}"
        );
        // A keyframe whose data after its header is not VP8 gives no red picture.
        let mut broken = packets[0].0.clone();
        for (i, b) in broken.iter_mut().enumerate().skip(11) {
            *b = (i * 7) as u8;
        }
        if let Ok(p) = vp8_pictures(&[(broken, true)]) {
            assert!(
                p.iter()
                    .all(|p| !p.chunks(3).all(|x| x[0] > 200.0 && x[1] < 60.0))
            );
        }
    }

    #[test]
    fn refuses_a_pattern_that_would_inject_pipeline_syntax() {
        let spec = ClipSpec {
            pattern: "ball ! filesink location=/tmp/x".into(),
            ..ClipSpec::default()
        };
        assert!(encode(&spec).is_err());
    }
}
