//! The SFU core (DESIGN §5): a sans-IO state machine over str0m. It is fed with
//! `(now, input)` — commands from signaling, datagrams from the one UDP socket, timeouts —
//! and drained of outputs: datagrams to send and signaling messages to peers. It owns no
//! socket, clock or task; `driver` does.
//!
//! Routing: every published track (a str0m `Mid` of a publishing peer) is offered to every
//! other peer of the same meeting as a send-only m-line; media is forwarded packet by
//! packet (str0m's RTP mode): each RTP packet the publisher sent is written into every
//! subscriber's `Rtc` that receives on that m-line, renumbered by `rtp::Forwarder` into
//! the subscriber's own stream, never reassembled into frames. Keyframe requests from
//! subscribers go to the publisher, throttled per layer.
//!
//! The core by concern (all `impl Sfu` blocks over the one state in `core`):
//! - `api`: keys, commands and outputs; `core`: the state and the command entry point;
//! - `peer`: a peer's state and tracks; `members`: joining, leaving, mute, breakout
//!   rooms; `relays`: links to other media nodes and sinks, their state and commands;
//! - `drive`: the datagram and timeout entry points and the drive loop over every
//!   peer's `Rtc`; `negotiation`: SDP offers and answers;
//! - `forward`: packets from publishers and links to subscribers, sinks and links;
//! - `simulcast`: which layer each subscriber gets, link layers, keyframe requests;
//! - `slots`: receive slots — which published track feeds which slot of each receiver
//!   that declared its view; `dynacast`: which layers publishers need to send;
//! - `speaker`: active speaker detection; `stats`: counters; `codec`: codecs;
//! - `rtp`: pure packet-level work (keyframe detection, `Forwarder`, which every
//!   subscriber and sink uses to switch layers); `sink`: the RTP a sink or link gets.
//!
//! Dependencies go one way: `sink` and `rtp` know nothing of the core.

mod api;
mod codec;
mod core;
mod drive;
pub mod driver;
mod dynacast;
mod forward;
mod members;
mod negotiation;
mod peer;
mod relays;
#[cfg(any(test, feature = "rig"))]
pub mod rig;
pub mod rtp;
mod simulcast;
mod sink;
mod slots;
mod speaker;
mod stats;
#[cfg(test)]
mod tests;

pub use self::api::{
    LinkKey, PeerKey, RelayEvent, RemoteTrackInfo, SfuCommand, SfuOutput, SignalOut, SinkKey,
    Source,
};
pub use self::core::Sfu;
pub use self::simulcast::layer_for_size;
pub use self::stats::{PeerQuality, SfuStats};
