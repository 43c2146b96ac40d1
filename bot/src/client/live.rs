//! Live media: a participant that sends audio as it comes (a gateway bridging a call)
//! instead of a clip, and hands every packet it receives to a tap as it arrives.
use std::time::{Duration, Instant};

use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::packetizer::Packetizer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::publish::{Sender, opus, packetizer};

/// One Opus frame to send: its payload, how long it plays, and its audio level (RFC
/// 6464: -dBov, 0 loudest, 127 silence), by which the node picks the loudest speakers.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub data: Vec<u8>,
    pub duration: Duration,
    pub level: u8,
}

/// A packet received from the meeting, as the tap gets it.
#[derive(Clone, Debug)]
pub struct Tapped {
    /// Whose it is: the participant the slot carries (or the stream's name).
    pub from: String,
    pub kind: &'static str,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// The live ends of a participant: the audio it sends, and where what it receives goes.
pub struct Live {
    pub audio: mpsc::Receiver<LiveFrame>,
    pub tap: mpsc::Sender<Tapped>,
}

/// Sends the frames of `audio` on the negotiated audio track `sender` as they come,
/// until the channel closes or the track does.
pub(super) async fn start_live(
    (track, sender): Sender,
    mut audio: mpsc::Receiver<LiveFrame>,
) -> anyhow::Result<JoinHandle<()>> {
    let codec = opus();
    let mut packetizer = packetizer(&track, &sender, &codec).await?;
    Ok(tokio::spawn(async move {
        while let Some(f) = audio.recv().await {
            let samples = (f.duration.as_secs_f64() * f64::from(codec.clock_rate)) as u32;
            let Ok(packets) =
                packetizer.packetize(Instant::now(), &bytes::Bytes::from(f.data), samples)
            else {
                return;
            };
            let level = [HeaderExtension::AudioLevel(AudioLevelExtension {
                level: f.level.min(127),
                voice: f.level < 127,
            })];
            for p in packets {
                if write(&track, p, &level).await.is_err() {
                    return;
                }
            }
        }
    }))
}

async fn write(
    track: &TrackLocalStaticRTP,
    p: rtc::rtp::Packet,
    ext: &[HeaderExtension],
) -> anyhow::Result<()> {
    track.write_rtp_with_extensions(p, ext).await?;
    Ok(())
}
