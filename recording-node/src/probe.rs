//! Reading back what a recording wrote, by decoding it end to end with GStreamer: the
//! manifest's durations come from here, and so do the tests' checks.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::{GstContext, RecordingError};
use crate::pipeline::{appsink, launch, wait_end};

/// A decoded audio file, as mono 32-bit float samples.
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<f32>,
    /// From the first to the end of the last decoded buffer.
    pub duration: Duration,
}

/// A decoded composite.
#[derive(Debug, Default, Clone)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// From the first to the end of the last decoded video frame.
    pub duration: Duration,
    pub audio_buffers: u64,
}

#[derive(Default)]
struct Span {
    first: Option<gst::ClockTime>,
    end: Option<gst::ClockTime>,
}

impl Span {
    fn add(&mut self, b: &gst::BufferRef) {
        if let Some(pts) = b.pts() {
            self.first = Some(self.first.map_or(pts, |f| f.min(pts)));
            let end = pts + b.duration().unwrap_or(gst::ClockTime::ZERO);
            self.end = Some(self.end.map_or(end, |e| e.max(end)));
        }
    }

    fn duration(&self) -> Duration {
        match (self.first, self.end) {
            (Some(f), Some(e)) => Duration::from_nanos((e - f).nseconds()),
            _ => Duration::ZERO,
        }
    }
}

/// Runs `pipeline` to the end (errors are returned), with a deadline.
fn run(pipeline: &gst::Pipeline, what: &Path) -> Result<(), RecordingError> {
    let decoding = || format!("decoding {}", what.display());
    pipeline.set_state(gst::State::Playing).gst(decoding)?;
    wait_end(pipeline, Duration::from_secs(120))
        .map_err(|e| RecordingError::Pipeline(format!("{}: {e}", decoding())))
}

fn quoted(path: &Path) -> Result<String, RecordingError> {
    let s = path
        .to_str()
        .ok_or_else(|| RecordingError::Invalid(format!("path is not UTF-8: {}", path.display())))?;
    if s.contains('"') {
        return Err(RecordingError::Invalid(format!("path has a quote: {s}")));
    }
    Ok(format!("\"{s}\""))
}

/// Decodes an audio file (any container and codec GStreamer knows) to mono f32.
pub fn audio(path: &Path) -> Result<Audio, RecordingError> {
    const RATE: u32 = 48_000;
    crate::pipeline::init()?;
    let p = launch(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample ! \
         audio/x-raw,format=F32LE,channels=1,rate={RATE} ! appsink name=out sync=false",
        quoted(path)?
    ))?;
    let sink = appsink(&p, "out")?;
    let acc = Arc::new(Mutex::new((Vec::<f32>::new(), Span::default())));
    let a = acc.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut g = a.lock().unwrap_or_else(|e| e.into_inner());
                g.0.extend(
                    map.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                g.1.add(buf);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    run(&p, path)?;
    let (samples, span) = std::mem::take(&mut *acc.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Audio {
        rate: RATE,
        duration: span.duration(),
        samples,
    })
}

/// Decodes an MP4 composite end to end: its video and its audio.
pub fn composite(path: &Path) -> Result<Video, RecordingError> {
    audio_and_video(path, "qtdemux")
}

/// Decodes a WebM file (a browser's MediaRecorder writes them) end to end: its video
/// and its audio.
pub fn webm(path: &Path) -> Result<Video, RecordingError> {
    audio_and_video(path, "matroskademux")
}

fn audio_and_video(path: &Path, demux: &str) -> Result<Video, RecordingError> {
    crate::pipeline::init()?;
    let p = launch(&format!(
        "filesrc location={} ! {demux} name=d \
         d.video_0 ! queue ! decodebin ! videoconvert ! appsink name=v sync=false \
         d.audio_0 ! queue ! decodebin ! audioconvert ! appsink name=a sync=false",
        quoted(path)?
    ))?;
    let out = Arc::new(Mutex::new((Video::default(), Span::default())));
    let sink = |name: &str| appsink(&p, name);
    let o = out.clone();
    sink("v")?.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut g = o.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(st) = sample.caps().and_then(|c| c.structure(0)) {
                    g.0.width = st.get::<i32>("width").unwrap_or(0) as u32;
                    g.0.height = st.get::<i32>("height").unwrap_or(0) as u32;
                }
                g.0.frames += 1;
                if let Some(b) = sample.buffer() {
                    g.1.add(b);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let o = out.clone();
    sink("a")?.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                o.lock().unwrap_or_else(|e| e.into_inner()).0.audio_buffers += 1;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    run(&p, path)?;
    let (mut v, span) = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    v.duration = span.duration();
    Ok(v)
}

/// Writes the composite's frame at `at` (from its start) as a PNG at `out`, for people
/// to look at (`fjord-bench-recording --frame`).
/// A frame of a composite: its size and its RGB pixels, row by row.
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Frame {
    /// The colour at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y * self.width + x) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Writes the frame of the composite at `path` shown at `at` to `out` as a PNG.
pub fn composite_frame_png(
    path: &Path,
    at: std::time::Duration,
    out: &Path,
) -> Result<(), RecordingError> {
    let Frame {
        width: w,
        height: h,
        rgb,
    } = composite_frame(path, at)?;
    let png = launch(&format!(
        "appsrc name=s caps=video/x-raw,format=RGB,width={w},height={h},framerate=1/1 ! \
         videoconvert ! pngenc ! filesink location={}",
        quoted(out)?
    ))?;
    let src = png
        .by_name("s")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| RecordingError::Invalid("no appsrc".into()))?;
    let mut padded = Vec::with_capacity(rgb.len());
    let row = 3 * w as usize;
    let stride = row.div_ceil(4) * 4;
    for r in rgb.chunks(row) {
        padded.extend_from_slice(r);
        padded.resize(padded.len() + stride - row, 0);
    }
    let _ = src.push_buffer(gst::Buffer::from_mut_slice(padded));
    let _ = src.end_of_stream();
    run(&png, out)
}

/// The frame of the composite at `path` shown at `at`, decoded.
pub fn composite_frame(path: &Path, at: std::time::Duration) -> Result<Frame, RecordingError> {
    crate::pipeline::init()?;
    let p = launch(&format!(
        "filesrc location={} ! qtdemux ! queue ! decodebin ! videoconvert ! \
         video/x-raw,format=RGB ! appsink name=v sync=false",
        quoted(path)?
    ))?;
    let taken: Arc<Mutex<Option<Frame>>> = Arc::default();
    let t = taken.clone();
    appsink(&p, "v")?.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample
                    .buffer()
                    .and_then(|b| b.pts())
                    .map_or(0, |p| p.nseconds());
                let mut g = t.lock().unwrap_or_else(|e| e.into_inner());
                if g.is_none() && pts >= at.as_nanos() as u64 {
                    let st = sample.caps().and_then(|c| c.structure(0));
                    let w = st.and_then(|s| s.get::<i32>("width").ok()).unwrap_or(0) as u32;
                    let h = st.and_then(|s| s.get::<i32>("height").ok()).unwrap_or(0) as u32;
                    if let Some(b) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        // Rows are padded to 4 bytes: keep 3 × width of each.
                        let stride = b.len() / h.max(1) as usize;
                        let rows = b.chunks(stride).flat_map(|r| &r[..3 * w as usize]);
                        *g = Some(Frame {
                            width: w,
                            height: h,
                            rgb: rows.copied().collect(),
                        });
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    run(&p, path)?;
    let taken = taken.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.ok_or_else(|| {
        RecordingError::Invalid(format!("{} has no frame at {at:?}", path.display()))
    })
}

pub use common::tone::dominant_frequency;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dominant_frequency_of_a_sine_is_found() {
        let rate = 48_000;
        let tone = |f: f32| -> Vec<f32> {
            (0..rate / 2)
                .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin())
                .collect()
        };
        assert_eq!(dominant_frequency(&tone(440.0), rate, 100, 2000, 10), 440);
        assert_eq!(dominant_frequency(&tone(880.0), rate, 100, 2000, 10), 880);
    }
}
