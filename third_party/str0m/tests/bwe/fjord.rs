//! Fjord: the estimate rises under probing and falls under loss, at str0m's pacing
//! factor and at the one Fjord sets (2.5: PATCHES.md, change 7), with the leaky pacer
//! as Fjord carries it (changes 2 and 6). Upstream's loss tests check only a floor;
//! these check the fall.

use std::time::Duration;

use netem::{DataSize, NetemConfig, Probability, RandomLoss};
use str0m::RtcError;
use str0m::bwe::Bitrate;

use crate::common::{
    BweTestContext, Step, connect_with_bwe_paced, get_last_bwe_estimate, init_crypto_default,
    init_log,
};

/// The estimate after probing on a clean 5 Mbit/s link from a start at 500 kbit/s, and
/// after five seconds of 30 % loss on the same link.
///
/// 30 %, because below 25 % str0m 0.25's loss controller hardly acts: with this seed, 15 %
/// took the estimate from 4.58 to 4.29 Mbit/s, 20 % left it at 4.58, 25 % took it to
/// 0.83 (PATCHES.md, "Noticed").
fn rise_and_fall(pacing_factor: Option<f64>) -> Result<(Bitrate, Bitrate), RtcError> {
    init_log();
    init_crypto_default();
    let link = || {
        NetemConfig::new()
            .latency(Duration::from_millis(10))
            .link(netem::Bitrate::mbps(5), DataSize::kbytes(150))
            .seed(42)
    };
    let (mut l, mut r) =
        connect_with_bwe_paced(Bitrate::kbps(500), Bitrate::mbps(5), pacing_factor);
    let mut ctx = BweTestContext::new(&mut l, &mut r);
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
    Ok((risen, fallen))
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
