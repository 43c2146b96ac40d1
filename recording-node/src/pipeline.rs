//! The GStreamer side of a recording, carrying out what `spec` describes. RTP packets of
//! each track go in through `appsrc` (stamped on arrival; `rtpjitterbuffer` puts them
//! back in order and times them):
//!
//! - [`AudioFile`]: one pipeline per participant audio track, Opus remuxed into Ogg
//!   (no transcoding), which plays up to the last page written if the node dies;
//! - [`Composite`]: one pipeline per recording, the decoded video tracks tiled by
//!   `compositor` over a black live canvas with a wall-clock `clockoverlay`, the decoded
//!   audio mixed by `audiomixer` over live silence, H.264 constrained baseline (I420) and
//!   Opus in fragmented MP4 (playable up to the last fragment after a crash).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::{GstContext, RecordingError};
use crate::spec::{
    Codec, CodecExt, CompositeSpec, SPEAKER_FRAME_ARGB, Tile, TrackSpec, frame_bars, gallery,
};

/// How long packets may wait for late or reordered ones.
const JITTER_MS: u32 = 200;

pub fn init() -> Result<(), RecordingError> {
    gst::init().gst(|| "initialising GStreamer".into())
}

fn make(factory: &str) -> Result<gst::Element, RecordingError> {
    gst::ElementFactory::make(factory).build().gst(|| {
        format!(
            "GStreamer element {factory} is missing (Debian: gstreamer1.0-plugins-base, -good, \
             -bad, -ugly, -libav and gstreamer1.0-x)"
        )
    })
}

fn appsrc(track: &TrackSpec) -> Result<gst_app::AppSrc, RecordingError> {
    let caps: gst::Caps = track
        .rtp_caps()
        .parse()
        .map_err(|_| RecordingError::Invalid(format!("bad caps {}", track.rtp_caps())))?;
    Ok(gst_app::AppSrc::builder()
        .caps(&caps)
        .is_live(true)
        .do_timestamp(true)
        .format(gst::Format::Time)
        // Never block the relay's task: a recording that falls 4 MiB behind drops the
        // newest packets (the jitter buffer sees them as lost) rather than grow.
        .max_bytes(4 << 20)
        .block(false)
        .leaky_type(gst_app::AppLeakyType::Downstream)
        .build())
}

/// A file sink that hands every buffer to the kernel at once: a node killed with
/// SIGKILL loses nothing that was muxed (stdio buffering would hold back the first
/// tens of kilobytes, which is seconds of audio).
fn file_sink(path: &Path) -> Result<gst::Element, RecordingError> {
    let sink = make("filesink")?;
    sink.set_property("location", path.to_string_lossy().to_string());
    sink.set_property_from_str("buffer-mode", "unbuffered");
    Ok(sink)
}

fn jitterbuffer() -> Result<gst::Element, RecordingError> {
    let jb = make("rtpjitterbuffer")?;
    jb.set_property("latency", JITTER_MS);
    Ok(jb)
}

fn depayloader(codec: Codec) -> Result<gst::Element, RecordingError> {
    let d = make(codec.depay_and_decoder().0)?;
    if !codec.is_audio() {
        // Start at a keyframe: decoders fed the middle of a stream fail.
        d.set_property("wait-for-keyframe", true);
    }
    Ok(d)
}

fn push(src: &gst_app::AppSrc, rtp: &[u8]) -> bool {
    src.push_buffer(gst::Buffer::from_slice(rtp.to_vec()))
        .is_ok()
}

/// A pipeline from a gst-launch description.
pub(crate) fn launch(desc: &str) -> Result<gst::Pipeline, RecordingError> {
    gst::parse::launch(desc)
        .gst(|| format!("building {desc}"))?
        .downcast::<gst::Pipeline>()
        .ok()
        .gst(|| format!("not a pipeline: {desc}"))
}

/// The appsink called `name` in `pipeline`.
pub(crate) fn appsink(
    pipeline: &gst::Pipeline,
    name: &str,
) -> Result<gst_app::AppSink, RecordingError> {
    pipeline
        .by_name(name)
        .gst(|| format!("no element {name}"))?
        .downcast::<gst_app::AppSink>()
        .ok()
        .gst(|| format!("{name} is not an appsink"))
}

/// Sends EOS and waits (up to `timeout`) for the pipeline to finish writing, then stops it.
/// Errors posted on the bus on the way are returned.
fn finish_pipeline(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), RecordingError> {
    pipeline.send_event(gst::event::Eos::new());
    wait_end(pipeline, timeout)
}

/// Waits (up to `timeout`) for the pipeline's end of stream or first error, then stops it.
pub(crate) fn wait_end(pipeline: &gst::Pipeline, timeout: Duration) -> Result<(), RecordingError> {
    let bus = pipeline.bus().gst(|| "pipeline without a bus".into())?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => Err(RecordingError::Pipeline(describe_error(e))),
            _ => Ok(()),
        },
        None => Err(RecordingError::Pipeline(format!(
            "the pipeline did not finish within {timeout:?}"
        ))),
    };
    pipeline
        .set_state(gst::State::Null)
        .gst(|| "stopping a pipeline".into())?;
    result
}

/// Gives a buffer that arrives without a PTS the previous one's (plus a nanosecond).
/// GStreamer's parsers (baseparse) occasionally let one through unstamped under load,
/// and mp4mux then fails the whole recording with "Buffer has no PTS".
fn stamp_missing_pts(pad: &gst::Pad) {
    let last = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = info.data.as_mut() {
            use std::sync::atomic::Ordering::Relaxed;
            match buf.pts() {
                Some(pts) => last.store(pts.nseconds(), Relaxed),
                None => {
                    let pts = gst::ClockTime::from_nseconds(last.load(Relaxed) + 1);
                    let b = buf.make_mut();
                    b.set_pts(pts);
                    if b.dts().is_none() {
                        b.set_dts(pts);
                    }
                    last.store(pts.nseconds(), Relaxed);
                    tracing::debug!("stamped a buffer that had no PTS");
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// An error message with the element that posted it and GStreamer's debug detail.
pub fn describe_error(e: &gst::message::Error) -> String {
    let from = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match e.debug() {
        Some(d) => format!("{from}: {} ({d})", e.error()),
        None => format!("{from}: {}", e.error()),
    }
}

/// The first error the pipeline has posted, if any.
fn error_of(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(describe_error(e));
        }
    }
    None
}

pub use crate::audio_file::AudioFile;

struct Branch {
    src: gst_app::AppSrc,
    elements: Vec<gst::Element>,
    /// The compositor's or mixer's pad this branch feeds.
    pad: gst::Pad,
    video: bool,
    participant_id: String,
}

/// The composite: gallery of every video track and mix of every audio track.
pub struct Composite {
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    mixer: gst::Element,
    spec: CompositeSpec,
    branches: BTreeMap<u32, Branch>,
    /// The four bars of the frame around the active speaker's tile (hidden while no
    /// one with a tile speaks), and who that is.
    speaker_frame: [gst::Pad; 4],
    speaker: Option<String>,
    /// Where the recording ends (running time in ns; u64::MAX: not yet), and whether the
    /// video and the audio mix have got there.
    cut: Arc<AtomicU64>,
    at_cut: [Arc<AtomicBool>; 2],
    pub path: PathBuf,
}

/// Drops what `pad` produces from the cut on, and notes that it got there.
fn cut_at(pad: &gst::Pad, cut: Arc<AtomicU64>, reached: Arc<AtomicBool>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = info.data.as_ref()
            && buf
                .pts()
                .is_some_and(|pts| pts.nseconds() >= cut.load(Ordering::Relaxed))
        {
            reached.store(true, Ordering::Relaxed);
            return gst::PadProbeReturn::Drop;
        }
        gst::PadProbeReturn::Ok
    });
}

impl Composite {
    pub fn start(spec: CompositeSpec, path: &Path) -> Result<Self, RecordingError> {
        spec.validate()?;
        let pipeline = gst::Pipeline::with_name("composite");
        // I420 throughout, as the decoders give it and x264 takes it: the compositor then
        // blends tiles without converting them (converting and blending in AYUV was
        // more than half of a composite's CPU).
        let caps = |w: u32, h: u32| -> Result<gst::Caps, RecordingError> {
            format!(
                "video/x-raw,format=I420,width={w},height={h},framerate={}/1",
                spec.fps
            )
            .parse()
            .map_err(|_| RecordingError::Invalid("bad composite caps".into()))
        };
        let video_caps = caps(spec.width, spec.height)?;

        // The canvas: live black frames that keep time when no one shows video. Small:
        // the compositor paints the black background itself, so a full-size canvas
        // would only be one more picture to blend each frame.
        let canvas = make("videotestsrc")?;
        canvas.set_property_from_str("pattern", "black");
        canvas.set_property("is-live", true);
        let canvas_caps = make("capsfilter")?;
        canvas_caps.set_property("caps", caps(16, 16)?);
        let compositor = make("compositor")?;
        compositor.set_property_from_str("background", "black");
        let out_caps = make("capsfilter")?;
        out_caps.set_property("caps", &video_caps);
        let clock = make("clockoverlay")?;
        clock.set_property("time-format", "%Y-%m-%d %H:%M:%S");
        clock.set_property_from_str("halignment", "right");
        clock.set_property_from_str("valignment", "bottom");
        clock.set_property("shaded-background", true);
        let i420 = make("capsfilter")?;
        i420.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        );
        let x264 = make("x264enc")?;
        x264.set_property_from_str("tune", "zerolatency");
        x264.set_property_from_str("speed-preset", spec.preset.as_str());
        // GStreamer's x264enc turns trellis quantisation on whatever the preset says: a
        // fifth of a composite's CPU for little at these bitrates.
        x264.set_property("trellis", false);
        x264.set_property("bitrate", spec.video_kbps);
        x264.set_property("key-int-max", spec.fps * 2);
        let baseline = make("capsfilter")?;
        baseline.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", "constrained-baseline")
                .build(),
        );
        let vqueue = make("queue")?;

        // The mix: live silence that keeps time when no one speaks.
        let silence = make("audiotestsrc")?;
        silence.set_property_from_str("wave", "silence");
        silence.set_property("is-live", true);
        let mixer = make("audiomixer")?;
        let opusenc = make("opusenc")?;
        let aqueue = make("queue")?;

        let mux = make("mp4mux")?;
        // Fragmented: every second is self-contained, so a crash loses at most that.
        mux.set_property("fragment-duration", 1000u32);
        mux.set_property("streamable", true);
        let sink = file_sink(path)?;

        let video = [
            canvas,
            canvas_caps,
            compositor.clone(),
            out_caps,
            clock,
            make("videoconvert")?,
            i420,
            x264,
            baseline,
            make("h264parse")?,
            vqueue,
        ];
        let audio = [
            silence,
            mixer.clone(),
            make("audioconvert")?,
            make("audioresample")?,
            opusenc,
            make("opusparse")?,
            aqueue,
        ];
        let assembling = || "assembling the composite pipeline".to_owned();
        pipeline.add_many(&video).gst(assembling)?;
        pipeline.add_many(&audio).gst(assembling)?;
        pipeline.add_many([&mux, &sink]).gst(assembling)?;
        gst::Element::link_many(&video).gst(|| "linking the video chain".into())?;
        gst::Element::link_many(&audio).gst(|| "linking the audio chain".into())?;
        video[video.len() - 1]
            .link_pads(None, &mux, Some("video_0"))
            .gst(|| "linking video into mp4mux".into())?;
        audio[audio.len() - 1]
            .link_pads(None, &mux, Some("audio_0"))
            .gst(|| "linking audio into mp4mux".into())?;
        mux.link(&sink)
            .gst(|| "linking mp4mux to the file".into())?;
        for q in [&video[video.len() - 1], &audio[audio.len() - 1]] {
            stamp_missing_pts(&q.static_pad("src").gst(|| "queue without src pad".into())?);
        }
        // The active speaker's frame: four bars of one colour over the edges of their
        // tile, each a tiny picture the compositor stretches (and skips while hidden, at
        // alpha 0). One picture a second, not live: the compositor shows it until the
        // next, so the bars' sources wake once a second rather than once a frame.
        let bar_caps: gst::Caps = "video/x-raw,format=I420,width=16,height=16,framerate=1/1"
            .parse()
            .map_err(|_| RecordingError::Invalid("bad bar caps".into()))?;
        let mut bars = Vec::new();
        for _ in 0..4 {
            let src = make("videotestsrc")?;
            src.set_property_from_str("pattern", "solid-color");
            src.set_property("foreground-color", SPEAKER_FRAME_ARGB);
            let small = make("capsfilter")?;
            small.set_property("caps", &bar_caps);
            pipeline.add_many([&src, &small]).gst(assembling)?;
            src.link(&small)
                .gst(|| "linking the speaker's frame".into())?;
            let pad = compositor
                .request_pad_simple("sink_%u")
                .gst(|| "no free compositor pad".into())?;
            small
                .static_pad("src")
                .gst(|| "capsfilter without src pad".into())?
                .link(&pad)
                .gst(|| "linking the speaker's frame into the compositor".into())?;
            pad.set_property("zorder", 3u32);
            pad.set_property("alpha", 0.0f64);
            bars.push(pad);
        }
        let speaker_frame: [gst::Pad; 4] = bars
            .try_into()
            .map_err(|_| RecordingError::Invalid("four bars".into()))?;
        let cut = Arc::new(AtomicU64::new(u64::MAX));
        let at_cut = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        for (el, reached) in [&compositor, &mixer].into_iter().zip(&at_cut) {
            let pad = el
                .static_pad("src")
                .gst(|| "mixer without src pad".into())?;
            cut_at(&pad, cut.clone(), reached.clone());
        }
        pipeline
            .set_state(gst::State::Playing)
            .gst(|| format!("starting the composite {}", path.display()))?;
        Ok(Self {
            pipeline,
            compositor,
            mixer,
            spec,
            branches: BTreeMap::new(),
            speaker_frame,
            speaker: None,
            cut,
            at_cut,
            path: path.to_owned(),
        })
    }

    /// Adds a track: a video track gets a tile (the gallery is laid out again), an audio
    /// track joins the mix.
    pub fn add(&mut self, track: &TrackSpec) -> Result<(), RecordingError> {
        if self.branches.contains_key(&track.track_id) {
            return Ok(());
        }
        let src = appsrc(track)?;
        let (_, decoder) = track.codec.depay_and_decoder();
        let video = !track.codec.is_audio();
        let decoder = make(decoder)?;
        if video {
            // A lost packet makes a broken frame: skip it rather than fail the recording.
            decoder.set_property("max-errors", -1i32);
        }
        let mut elements = vec![
            src.upcast_ref::<gst::Element>().clone(),
            jitterbuffer()?,
            depayloader(track.codec)?,
            decoder,
        ];
        if video {
            elements.push(make("videoconvert")?);
            // The participant's name on their tile: drawn at the picture's size, so that
            // it scales with the tile (auto-resize), shaded to read on any picture.
            let name = make("textoverlay")?;
            name.set_property("text", track.participant_name.as_str());
            name.set_property_from_str("valignment", "bottom");
            name.set_property_from_str("halignment", "left");
            name.set_property("shaded-background", true);
            name.set_property("font-desc", "Sans Bold 16");
            elements.push(name);
        } else {
            elements.push(make("audioconvert")?);
            elements.push(make("audioresample")?);
        }
        elements.push(make("queue")?);
        let target = if video { &self.compositor } else { &self.mixer };
        let pad = target
            .request_pad_simple("sink_%u")
            .gst(|| "no free mixer pad".into())?;
        if video {
            pad.set_property("zorder", 1u32);
            pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        }
        let id = track.track_id;
        self.pipeline
            .add_many(&elements)
            .gst(|| format!("adding track {id} to the composite"))?;
        gst::Element::link_many(&elements).gst(|| format!("linking track {id}"))?;
        elements[elements.len() - 1]
            .static_pad("src")
            .gst(|| "queue without src pad".into())?
            .link(&pad)
            .gst(|| format!("linking track {id} into the mix"))?;
        for e in &elements {
            e.sync_state_with_parent()
                .gst(|| format!("starting track {id} in the composite"))?;
        }
        self.branches.insert(
            track.track_id,
            Branch {
                src,
                elements,
                pad,
                video,
                participant_id: track.participant_id.clone(),
            },
        );
        self.layout();
        Ok(())
    }

    /// Removes a track (its participant left or unpublished): its tile goes, the others
    /// are laid out again.
    pub fn remove(&mut self, track_id: u32) {
        let Some(b) = self.branches.remove(&track_id) else {
            return;
        };
        // Unlink first, so that nothing flows into the released pad.
        if let Some(src) = b.elements.last().and_then(|q| q.static_pad("src")) {
            let _ = src.unlink(&b.pad);
        }
        let target = if b.video {
            &self.compositor
        } else {
            &self.mixer
        };
        target.release_request_pad(&b.pad);
        for e in &b.elements {
            let _ = e.set_state(gst::State::Null);
        }
        let _ = self.pipeline.remove_many(&b.elements);
        self.layout();
    }

    /// Each video track's tile now (by track id).
    pub fn tiles(&self) -> Vec<(u32, Tile)> {
        let videos: Vec<u32> = self
            .branches
            .iter()
            .filter(|(_, b)| b.video)
            .map(|(id, _)| *id)
            .collect();
        let tiles = gallery(videos.len(), self.spec.width, self.spec.height);
        videos.into_iter().zip(tiles).collect()
    }

    /// `participant` speaks now: their tile gets the frame.
    pub fn highlight(&mut self, participant: &str) {
        if self.speaker.as_deref() != Some(participant) {
            self.speaker = Some(participant.to_owned());
            self.layout();
        }
    }

    fn layout(&self) {
        let tiles = self.tiles();
        let speaking = tiles.iter().find(|(id, _)| {
            Some(self.branches[id].participant_id.as_str()) == self.speaker.as_deref()
        });
        match speaking {
            Some((_, t)) => {
                for (pad, bar) in self.speaker_frame.iter().zip(frame_bars(t)) {
                    pad.set_property("xpos", bar.x);
                    pad.set_property("ypos", bar.y);
                    pad.set_property("width", bar.width);
                    pad.set_property("height", bar.height);
                    pad.set_property("alpha", 1.0f64);
                }
            }
            None => {
                for pad in &self.speaker_frame {
                    pad.set_property("alpha", 0.0f64);
                }
            }
        }
        for (id, t) in tiles {
            let b = &self.branches[&id];
            b.pad.set_property("xpos", t.x);
            b.pad.set_property("ypos", t.y);
            b.pad.set_property("width", t.width);
            b.pad.set_property("height", t.height);
        }
    }

    /// The pipeline's running time now: where a recording stopped now ends.
    pub fn now(&self) -> Option<gst::ClockTime> {
        let clock = self.pipeline.clock()?;
        Some(clock.time().saturating_sub(self.pipeline.base_time()?))
    }

    /// Ends the video and the mix at running time `end`: what comes later is dropped,
    /// and we wait (up to `limit`) until both got there, since a busy machine can leave
    /// the live pipeline behind the clock and ending it at once would cut its tail.
    fn cut_at(&self, end: gst::ClockTime, limit: Duration) {
        self.cut.store(end.nseconds(), Ordering::Relaxed);
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.at_cut.iter().all(|r| r.load(Ordering::Relaxed)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("the composite did not reach its end in time; its tail is cut");
    }

    /// Hands one RTP packet of `track_id` to the composite; false if it is not taken.
    pub fn push(&self, track_id: u32, rtp: &[u8]) -> bool {
        self.branches
            .get(&track_id)
            .is_some_and(|b| push(&b.src, rtp))
    }

    pub fn error(&self) -> Option<String> {
        error_of(&self.pipeline)
    }

    /// Ends the composite at running time `end` (see [`Composite::now`]; None: now):
    /// the last fragment is written and the file closed.
    pub fn finish(self, end: Option<gst::ClockTime>) -> Result<PathBuf, RecordingError> {
        if let Some(end) = end.or_else(|| self.now()) {
            self.cut_at(end, Duration::from_secs(5));
        }
        for b in self.branches.values() {
            let _ = b.src.end_of_stream();
        }
        finish_pipeline(&self.pipeline, Duration::from_secs(20))
            .gst(|| format!("finishing {}", self.path.display()))?;
        Ok(self.path)
    }
}
