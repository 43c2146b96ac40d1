//! Synthetic RTP, for the pipeline test and the recording benchmark: Opus tones and VP8
//! test patterns made by GStreamer's own encoders and payloaders (real streams, not
//! fixtures), and a player that hands packets over when they are due, as the relay does.
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::error::{GstContext, RecordingError};

/// RTP packets with the time (from the stream's start) each is due.
pub type Stream = Vec<(Duration, Vec<u8>)>;

/// Runs `desc` (a gst-launch description ending in a payloader) to the end and collects
/// its packets.
pub fn rtp(desc: &str) -> Result<Stream, RecordingError> {
    let p = crate::pipeline::launch(&format!("{desc} ! appsink name=out sync=false"))?;
    let sink = crate::pipeline::appsink(&p, "out")?;
    p.set_state(gst::State::Playing)
        .gst(|| format!("starting {desc}"))?;
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        let Some(b) = s.buffer() else { continue };
        let at = Duration::from_nanos(b.pts().map(|t| t.nseconds()).unwrap_or(0));
        out.push((
            at,
            b.map_readable().gst(|| "reading a buffer".into())?.to_vec(),
        ));
    }
    p.set_state(gst::State::Null)
        .gst(|| format!("stopping {desc}"))?;
    if out.is_empty() {
        return Err(RecordingError::Pipeline(format!("no RTP from {desc}")));
    }
    Ok(out)
}

/// An Opus tone of `hz`, 20 ms per packet, payload type 111.
pub fn tone(hz: u32, secs: u32) -> Result<Stream, RecordingError> {
    rtp(&format!(
        "audiotestsrc freq={hz} volume=0.5 num-buffers={} samplesperbuffer=960 ! \
         audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! rtpopuspay pt=111",
        secs * 50
    ))
}

/// A VP8 test pattern (`ball`, `smpte`, ...) of `width` x `height` at 25 fps, payload
/// type 96.
pub fn pattern(
    name: &str,
    width: u32,
    height: u32,
    kbps: u32,
    secs: u32,
) -> Result<Stream, RecordingError> {
    rtp(&format!(
        "videotestsrc pattern={name} num-buffers={} ! \
         video/x-raw,width={width},height={height},framerate=25/1 ! \
         vp8enc deadline=1 keyframe-max-dist=25 target-bitrate={} ! rtpvp8pay pt=96 mtu=1100",
        secs * 25,
        kbps * 1000
    ))
}

/// Hands every stream's packets to `push` when they are due (track id, packet).
pub fn play(streams: &[(u32, Stream)], mut push: impl FnMut(u32, &[u8])) {
    let mut all: Vec<(Duration, u32, &[u8])> = streams
        .iter()
        .flat_map(|(id, pkts)| pkts.iter().map(move |(at, p)| (*at, *id, p.as_slice())))
        .collect();
    all.sort_by_key(|(at, id, _)| (*at, *id));
    let start = Instant::now();
    for (at, id, p) in all {
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        push(id, p);
    }
}
