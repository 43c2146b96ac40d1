//! Opus to and from 8 kHz PCM for calls in G.711 (the laws themselves are `g711`'s):
//! one GStreamer pipeline each way per call, pushed into from the bridge and calling back
//! with what comes out.
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use bot::LiveFrame;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

/// The pipeline `description`, playing, with its appsrc `in` and appsink `out` (the
/// bot library's builder).
fn pipeline(
    description: &str,
) -> anyhow::Result<(gst::Pipeline, gst_app::AppSrc, gst_app::AppSink)> {
    gst::init().context("initialise GStreamer")?;
    bot::media::with_source(description)
}

/// The bytes of an appsink's next sample.
fn sample_bytes(sink: &gst_app::AppSink) -> Result<Vec<u8>, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
    Ok(map.as_slice().to_vec())
}

fn push(src: &gst_app::AppSrc, bytes: Vec<u8>) -> anyhow::Result<()> {
    src.push_buffer(gst::Buffer::from_mut_slice(bytes))
        .map_err(|e| anyhow::anyhow!("push into the transcoder: {e}"))?;
    Ok(())
}

/// The caller's G.711, decoded to PCM here, encoded to 20 ms Opus frames for the
/// meeting, each with the level of the caller's latest packet.
pub struct ToOpus {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    level: Arc<AtomicU8>,
}

impl ToOpus {
    pub fn new(out: mpsc::Sender<LiveFrame>) -> anyhow::Result<Self> {
        let (pipeline, src, sink) = pipeline(
            "appsrc name=in is-live=true do-timestamp=true format=time \
               caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 \
             ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1 \
             ! opusenc frame-size=20 bitrate=24000 ! appsink name=out sync=false",
        )?;
        let level = Arc::new(AtomicU8::new(127));
        let frame_level = level.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let data = sample_bytes(sink)?;
                    // A full channel: the frame is lost, as on the network.
                    let _ = out.try_send(LiveFrame {
                        data,
                        duration: Duration::from_millis(20),
                        level: frame_level.load(Ordering::Relaxed),
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing)?;
        Ok(Self {
            pipeline,
            src,
            level,
        })
    }

    pub fn push(&self, pcm: &[i16]) -> anyhow::Result<()> {
        self.level.store(crate::g711::level(pcm), Ordering::Relaxed);
        push(
            &self.src,
            pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        )
    }
}

impl Drop for ToOpus {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The meeting's Opus, decoded and resampled to 8 kHz mono PCM for the caller.
pub struct FromOpus {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
}

impl FromOpus {
    pub fn new(out: mpsc::Sender<Vec<i16>>) -> anyhow::Result<Self> {
        let (pipeline, src, sink) = pipeline(
            "appsrc name=in is-live=true do-timestamp=true format=time \
               caps=audio/x-opus,channel-mapping-family=0,channels=2,rate=48000 \
             ! opusdec ! audioconvert ! audioresample \
             ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! appsink name=out sync=false",
        )?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let bytes = sample_bytes(sink)?;
                    let pcm = bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    let _ = out.try_send(pcm);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing)?;
        Ok(Self { pipeline, src })
    }

    pub fn push(&self, opus: &[u8]) -> anyhow::Result<()> {
        push(&self.src, opus.to_vec())
    }
}

impl Drop for FromOpus {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
