//! Fjord's test client and load bot on webrtc-rs: the WebRTC stack independent of the
//! media node's str0m, so that every media test is interop between two implementations.
pub mod client;
pub mod janus;
pub mod lean;
pub mod load;
pub mod media;
pub mod resilient;

pub use client::{
    AUDIO_KEPT, Bot, BotConfig, Live, LiveFrame, Received, Refused, SentFrame, Tapped, TrackCounts,
    Waiting, Welcome, create_meeting, create_meeting_answer,
};
pub use load::{Load, LoadReport, LoadSpec};
pub use media::{Clip, ClipSpec};
pub use resilient::{Rejoin, ResilientBot};
