//! Fjord's SIP gateway: room systems and phones dial `sip:<meeting-id>@<gateway>` (or
//! `<meeting-id>.<password>@…`) and are joined to the meeting through the controller,
//! like any participant; the gateway carries the call's audio into the meeting and the
//! meeting's back.
//!
//! By concern: `server` (the SIP endpoint and each call's life: INVITE, joining,
//! answering, BYE either way), `dial` (the dialled name), `sdp` (the offer and our
//! answer), `bridge` (the call's media), `rtp` (the packets), `config`.
#[cfg(feature = "gateway")]
pub mod bridge;
#[cfg(feature = "gateway")]
pub mod config;
pub mod dial;
pub mod g711;
#[cfg(feature = "gateway")]
pub mod metrics;
pub mod rtp;
pub mod sdp;
#[cfg(feature = "gateway")]
pub mod server;
#[cfg(feature = "gateway")]
pub mod transcode;
