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

mod core;
pub mod driver;
pub mod rtp;
mod sink;
#[cfg(test)]
mod tests;

pub use self::core::{
    LinkKey, PeerKey, RelayEvent, Sfu, SfuCommand, SfuOutput, SfuStats, SignalOut, SinkKey, Source,
    layer_for_size,
};
pub use self::sink::payload_type;
