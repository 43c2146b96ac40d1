//! `fjord-bench-forward`: the SFU core forwarding one meeting's media on a virtual clock,
//! with str0m clients in memory (no sockets, no sleeping), so that a run is the same
//! work every time. Run under callgrind with the core's entry points as the only
//! functions collected, it gives the core's instructions per forwarded packet:
//! `scripts/forward-cost.sh` does that (docs/development.md).
//!
//! It prints what the core sent: datagrams out (every forwarded RTP packet, RTCP
//! and DTLS included), and what the subscribers got, so that a change that forwards
//! less cannot look cheaper.
use std::time::Duration;

use clap::Parser;
use media_node::sfu::PeerKey;
use media_node::sfu::rig::{As, Rig};

#[derive(Parser)]
#[command(name = "fjord-bench-forward")]
struct Args {
    /// Participants that send a microphone and a camera in three simulcast layers.
    #[arg(long, default_value_t = 5)]
    publishers: u64,
    /// Participants that only receive (default view: 3 voices, a 3×3 gallery).
    #[arg(long, default_value_t = 50)]
    subscribers: u64,
    /// Virtual seconds of media after everyone is connected.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Drain the core after each datagram (a node that keeps up, one datagram per
    /// wake), not once per 5 ms step.
    #[arg(long)]
    drain_each: bool,
}

fn main() {
    let args = Args::parse();
    let mut rig = Rig::new();
    rig.drain_each = args.drain_each;
    for n in 1..=args.publishers {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: true,
                simulcast: true,
                view: None,
            },
        );
    }
    for n in 0..args.subscribers {
        rig.join(1_000 + n, false);
    }
    // ICE, DTLS, the slots' offer and its answer.
    rig.run(Duration::from_secs(2));
    let before = rig.datagrams_out;
    let got_before: usize = rig.clients.iter().map(|c| c.frames.len()).sum();

    // 20 ms steps: an Opus packet from every publisher each step, a video frame (one
    // packet per simulcast layer) every other step, a keyframe every 2 s.
    let steps = args.seconds * 50;
    for step in 0..steps {
        for n in 1..=args.publishers {
            let key = PeerKey(n);
            rig.speak(key, &[0xfc, 0xff, 0xfe, step as u8], step);
            if step % 2 == 0 {
                let keyframe = step % 100 == 0;
                rig.send_layers(key, step / 2, |_| keyframe);
            }
        }
        rig.run(Duration::from_millis(20));
    }

    let got: usize = rig.clients.iter().map(|c| c.frames.len()).sum::<usize>() - got_before;
    println!(
        "publishers {} subscribers {} seconds {}",
        args.publishers, args.subscribers, args.seconds
    );
    println!("datagrams_out {}", rig.datagrams_out - before);
    println!("frames_received {got}");
}
