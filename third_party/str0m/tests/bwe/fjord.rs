//! Fjord: the estimate rises under probing and falls under loss, at str0m's pacing
//! factor and at the one Fjord sets (2.5: PATCHES.md, change 7), with the leaky pacer
//! as Fjord carries it (changes 2 and 6). Upstream's loss tests check only a floor;
//! these check the fall.

use std::time::{Duration, Instant};

use netem::{DataSize, NetemConfig, Probability, RandomLoss};
use str0m::bwe::{Bitrate, BweKind};
use str0m::{Event, RtcError};

use crate::common::{
    BweTestContext, Step, connect_with_bwe_paced_at, get_last_bwe_estimate, init_crypto_default,
    init_log,
};

/// The estimate after probing on a clean 5 Mbit/s link from a start at 500 kbit/s, and
/// after five seconds of 30 % loss on the same link.
///
/// 30 %, because below 25 % str0m 0.25's loss controller hardly acts: with this seed, 15 %
/// took the estimate from 4.58 to 4.29 Mbit/s, 20 % left it at 4.58, 25 % took it to
/// 0.83 (PATCHES.md, "Noticed").
fn rise_and_fall(pacing_factor: Option<f64>) -> Result<(Bitrate, Bitrate), RtcError> {
    let run = run_rise_and_fall(Instant::now(), pacing_factor, true, false)?;
    Ok((run.risen, run.fallen))
}

/// What one run of the rise and the fall did.
struct Run {
    risen: Bitrate,
    fallen: Bitrate,
    /// Every estimate the sender reported, with its time since the sender's start.
    estimates: Vec<(Duration, Bitrate)>,
    /// Every RTP packet the receiver got: its arrival time since the receiver's start,
    /// SSRC and sequence number.
    received: Vec<(Duration, u32, u64)>,
}

/// Both peers' clocks start at `start`: str0m maps times to NTP time against one epoch per
/// process, so two runs see the same rounding only from the same start.
fn run_rise_and_fall(
    start: Instant,
    pacing_factor: Option<f64>,
    pacer_alone: bool,
    write_only: bool,
) -> Result<Run, RtcError> {
    init_log();
    init_crypto_default();
    let link = || {
        NetemConfig::new()
            .latency(Duration::from_millis(10))
            .link(netem::Bitrate::mbps(5), DataSize::kbytes(150))
            .seed(42)
    };
    let (mut l, mut r) =
        connect_with_bwe_paced_at(start, Bitrate::kbps(500), Bitrate::mbps(5), pacing_factor);
    l._set_pacer_alone_timeouts(pacer_alone);
    r._set_pacer_alone_timeouts(pacer_alone);
    let mut ctx = BweTestContext::new(&mut l, &mut r);
    ctx.write_only = write_only;
    ctx.run_plan(
        &mut l,
        &mut r,
        &[
            Step::Conditions {
                description: "clean 5 Mbit/s link",
                config: link(),
            },
            Step::Media {
                description: "2 Mbit/s of media, 5 wanted",
                desired_bitrate: Bitrate::mbps(5),
                media_send_rate: Bitrate::mbps(2),
            },
            Step::Run {
                description: "probing raises the estimate",
                duration: Duration::from_secs(5),
            },
        ],
    )?;
    let risen = get_last_bwe_estimate(&l).expect("an estimate after probing");
    ctx.run_plan(
        &mut l,
        &mut r,
        &[
            Step::Conditions {
                description: "30 % loss",
                config: link().loss(RandomLoss::new(Probability::new(0.30))),
            },
            Step::Run {
                description: "the loss controller lowers the estimate",
                duration: Duration::from_secs(5),
            },
        ],
    )?;
    let fallen = get_last_bwe_estimate(&l).expect("an estimate under loss");
    let estimates = l
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                Some((*t - l.start, *estimate))
            }
            _ => None,
        })
        .collect();
    let received = r
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::RtpPacket(p) => Some((*t - l.start, *p.header.ssrc, *p.seq_no)),
            _ => None,
        })
        .collect();
    Ok(Run {
        risen,
        fallen,
        estimates,
        received,
    })
}

fn assert_rises_and_falls(pacing_factor: Option<f64>) -> Result<(), RtcError> {
    let (risen, fallen) = rise_and_fall(pacing_factor)?;
    assert!(
        risen >= Bitrate::mbps(2),
        "factor {pacing_factor:?}: probing from 500 kbit/s on a 5 Mbit/s link reached only {risen}"
    );
    assert!(
        fallen <= risen * 0.8,
        "factor {pacing_factor:?}: 30 % loss left the estimate at {fallen} (from {risen})"
    );
    Ok(())
}

#[test]
fn the_estimate_rises_under_probing_and_falls_under_loss_at_the_default_pacing_factor()
-> Result<(), RtcError> {
    assert_rises_and_falls(None)
}

#[test]
fn the_estimate_rises_under_probing_and_falls_under_loss_at_fjords_pacing_factor()
-> Result<(), RtcError> {
    assert_rises_and_falls(Some(2.5))
}

/// PATCHES.md, change 10: a timeout that only the pacer is due for drives the pacer
/// alone. The rise and the fall, run with it and with the full walk of every subsystem
/// (upstream's way), send the same: the receiver gets the same packets at the same
/// times, and the sender reports the same estimates.
///
/// Up to this harness's own noise: two runs of the full walk from one start are equal
/// about half of the time, and otherwise part from about the 300th packet by some tens
/// of microseconds. Driving the subsystems that are not due (ICE among them) cost a
/// packet's arrival 200 µs and one packet in the window, so the bound is 100 µs.
#[test]
fn driving_the_pacer_alone_sends_what_the_full_walk_sends() -> Result<(), RtcError> {
    let start = Instant::now();
    let alone = run_rise_and_fall(start, Some(2.5), true, false)?;
    let full = run_rise_and_fall(start, Some(2.5), false, false)?;
    assert_sent_alike(&alone, &full)
}

/// PATCHES.md, change 15: packets written through `DirectApi::stream_tx_to_write`, whose
/// timeout stamps them and drives the pacer without recomputing every stream's timers,
/// go out as those written through `DirectApi::stream_tx`: the rise and the fall, run
/// both ways, send the same, to this harness's noise (as for change 10).
#[test]
fn writing_through_stream_tx_to_write_sends_what_stream_tx_sends() -> Result<(), RtcError> {
    let start = Instant::now();
    let write_only = run_rise_and_fall(start, Some(2.5), true, true)?;
    let stream_tx = run_rise_and_fall(start, Some(2.5), true, false)?;
    assert_sent_alike(&write_only, &stream_tx)
}

/// The two runs sent the same packets, at times at most 100 µs apart, and the sender
/// reported the same estimates.
fn assert_sent_alike(one: &Run, other: &Run) -> Result<(), RtcError> {
    let (alone, full) = (one, other);
    assert!(
        full.received.len() > 1_000,
        "the run sent too little to compare: {} packets",
        full.received.len()
    );
    assert_eq!(
        alone.received.len(),
        full.received.len(),
        "packets received"
    );
    for (a, f) in alone.received.iter().zip(&full.received) {
        assert_eq!((a.1, a.2), (f.1, f.2), "the packets received, in order");
        let apart = a.0.abs_diff(f.0);
        assert!(
            apart <= Duration::from_micros(100),
            "packet {} arrived {apart:?} apart: {:?} in one run, {:?} in the other",
            a.2,
            a.0,
            f.0
        );
    }
    assert_eq!(alone.estimates.len(), full.estimates.len(), "estimates");
    for (a, f) in alone.estimates.iter().zip(&full.estimates) {
        assert_eq!(a.1, f.1, "the estimates, in order");
        assert!(
            a.0.abs_diff(f.0) <= Duration::from_millis(1),
            "estimate times {a:?}, {f:?}"
        );
    }
    Ok(())
}
