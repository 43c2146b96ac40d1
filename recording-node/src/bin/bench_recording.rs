//! How many recordings one core keeps up with in real time: runs N composites (each of
//! P participants' VP8 video and Opus audio, composed at 1280x720 25 fps and encoded to
//! H.264, the first participant framed as the active speaker) and M per-participant audio files side by side for D seconds, fed with real RTP
//! in real time, and prints the CPU they took (from /proc) and whether the composites
//! kept up (their length against the wall clock).
//!
//! `cargo build --release -p recording-node && ./target/release/fjord-bench-recording`
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use recording_node::pipeline::{AudioFile, Composite};
use recording_node::spec::{Codec, CompositeSpec, TrackSpec};
use recording_node::{probe, synth};

#[derive(Parser)]
#[command(about = "Recording benchmark: composites and audio files per CPU core")]
struct Args {
    /// Composite recordings at once.
    #[arg(long, default_value_t = 1)]
    composites: usize,
    /// Participants (video + audio) in each composite.
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// Per-participant audio files at once (separately from the composites).
    #[arg(long, default_value_t = 50)]
    audio: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// x264's speed preset of the composites (ultrafast, superfast, veryfast, faster).
    #[arg(long, default_value = "ultrafast", value_parser = |s: &str| recording_node::spec::Preset::parse(s).ok_or(format!("{s}: ultrafast, superfast, veryfast or faster")))]
    preset: recording_node::spec::Preset,
    /// Frames a second of the composites.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Width and height of each participant's video as the node receives it (the
    /// simulcast layer that fits a tile of the 2x2 gallery is 640x360).
    #[arg(long, default_value_t = 640)]
    video_width: u32,
    #[arg(long, default_value_t = 360)]
    video_height: u32,
    /// Where the files go (a temporary directory by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Writes the first composite's frame from the middle of the run here (PNG), to
    /// look at its quality and the names on its tiles.
    #[arg(long)]
    frame: Option<std::path::PathBuf>,
}

fn cpu_seconds() -> f64 {
    common::node::CpuSampler::process_cpu_seconds().unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    recording_node::pipeline::init()?;
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "encoding {} s of {} participants' test media once…",
        a.seconds, a.participants
    );
    let patterns = ["ball", "smpte", "snow", "pinwheel", "spokes", "gamut"];
    let mut streams = Vec::new();
    let mut tracks = Vec::new();
    for p in 0..a.participants {
        let (aid, vid) = (2 * p as u32 + 1, 2 * p as u32 + 2);
        streams.push((aid, synth::tone(300 + 100 * p as u32, a.seconds)?));
        streams.push((
            vid,
            synth::pattern(
                patterns[p % patterns.len()],
                a.video_width,
                a.video_height,
                600,
                a.seconds,
            )?,
        ));
        for (id, codec) in [(aid, Codec::Opus), (vid, Codec::Vp8)] {
            tracks.push(TrackSpec {
                track_id: id,
                participant_id: format!("p{p}"),
                participant_name: format!("P{p}"),
                codec,
                payload_type: if codec == Codec::Opus { 111 } else { 96 },
            });
        }
    }
    let audio_stream = synth::tone(440, a.seconds)?;
    let spec = CompositeSpec {
        fps: a.fps,
        preset: a.preset,
        ..CompositeSpec::default()
    };
    let mut composites = Vec::new();
    for i in 0..a.composites {
        let mut c = Composite::start(spec, &dir.join(format!("composite-{i}.mp4")))?;
        for t in &tracks {
            c.add(t)?;
        }
        // Someone speaks: their tile is framed, as in a meeting.
        c.highlight("p0");
        composites.push(c);
    }
    let mut files = Vec::new();
    for i in 0..a.audio {
        let t = TrackSpec {
            track_id: 1,
            participant_id: format!("a{i}"),
            participant_name: "listener".into(),
            codec: Codec::Opus,
            payload_type: 111,
        };
        files.push(AudioFile::start(&t, &dir, 1)?);
    }
    eprintln!(
        "recording {} composites ({} participants each) and {} audio files for {} s…",
        a.composites, a.participants, a.audio, a.seconds
    );
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    synth::play(&streams, |id, p| {
        for c in &composites {
            c.push(id, p);
        }
    });
    let (cpu1, wall) = (cpu_seconds(), t0.elapsed());
    let mut lengths = Vec::new();
    for (i, c) in composites.into_iter().enumerate() {
        let end = c.now();
        let path = c.finish(end)?;
        if let (0, Some(out)) = (i, &a.frame) {
            probe::composite_frame_png(&path, Duration::from_secs(u64::from(a.seconds) / 2), out)?;
            eprintln!(
                "the composite's frame at {} s: {}",
                a.seconds / 2,
                out.display()
            );
        }
        lengths.push(
            probe::composite(&path)
                .context("decoding a composite")?
                .duration,
        );
    }
    // Audio files alone, fed the same way, so their share is measured on its own.
    let (cpu2, t2) = (cpu_seconds(), Instant::now());
    synth::play(&[(1, audio_stream)], |_, p| {
        for f in &files {
            f.push(p);
        }
    });
    let (cpu3, wall_audio) = (cpu_seconds(), t2.elapsed());
    for f in files {
        f.finish()?;
    }
    let composite_cores = (cpu1 - cpu0) / wall.as_secs_f64();
    let audio_cores = (cpu3 - cpu2) / wall_audio.as_secs_f64();
    let shortest = lengths.iter().min().copied().unwrap_or(Duration::ZERO);
    println!(
        "composites: {} x {} participants ({}x{} each), 1280x720 {} fps H.264 x264 {}: {:.2} CPU \
         cores for {:.1} s; shortest composite {:.2} s ({})",
        a.composites,
        a.participants,
        a.video_width,
        a.video_height,
        a.fps,
        a.preset.as_str(),
        composite_cores,
        wall.as_secs_f64(),
        shortest.as_secs_f64(),
        if shortest.as_secs_f64() >= wall.as_secs_f64() - 1.0 {
            "kept up"
        } else {
            "FELL BEHIND"
        }
    );
    println!(
        "  -> about {:.1} such composites per core in real time",
        a.composites as f64 / composite_cores.max(1e-9)
    );
    println!(
        "audio files: {} Opus streams remuxed to Ogg: {:.3} CPU cores -> about {:.0} streams per core",
        a.audio,
        audio_cores,
        a.audio as f64 / audio_cores.max(1e-9)
    );
    Ok(())
}
