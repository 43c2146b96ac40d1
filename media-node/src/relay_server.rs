//! The media node's end of the relay (DESIGN §6): a QUIC endpoint where recording nodes
//! (sinks) subscribe to a meeting hosted here, and where other media nodes of our
//! meetings connect (a hello that is not `sink_only`: see `mesh`). Each link says hello with the meeting; it
//! is then attached to that meeting's SFU shard as a sink, gets an announcement for every
//! published track, and the RTP of the tracks it subscribes to as datagrams. Keyframe
//! requests go back to the publishers through the SFU.
use std::collections::HashSet;
use std::sync::Arc;

use common::ids::MeetingId;
use proto::v1::relay_control::Msg;
use proto::v1::{RelayControl, RemoveTrack, SpeakerChanged};
use tokio_util::sync::CancellationToken;

use crate::Node;
use crate::mesh::{LinkError, convert};
use crate::sfu::RelayEvent;

pub async fn serve(endpoint: quinn::Endpoint, node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = relay::accept(&endpoint) => a,
        };
        let Some(accepted) = accepted else { break };
        let node = node.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match accepted {
                Ok((link, hello)) => {
                    if let Err(e) = serve_link(link, hello, node, shutdown).await {
                        tracing::info!(error = %e, "relay link ended");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "relay connection refused"),
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
}

/// How long a sink's hello waits for its meeting to be hosted here: the leader may start
/// a recording's next segment on this node as soon as the meeting is placed here, a
/// moment before the controller's PrepareMeeting lands. Refused at once, the segment
/// would end at its first second.
const HOSTED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `meeting` once this node hosts it, if it does within [`HOSTED_WAIT`].
async fn hosted_soon(node: &Node, meeting: MeetingId) -> Option<MeetingId> {
    let until = tokio::time::Instant::now() + HOSTED_WAIT;
    loop {
        if node.hosts(&meeting) {
            return Some(meeting);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn serve_link(
    link: relay::Link,
    hello: RelayControl,
    node: Arc<Node>,
    shutdown: CancellationToken,
) -> Result<(), LinkError> {
    let Some(Msg::Hello(hello)) = hello.msg else {
        return Err(LinkError::Refused("no hello".into()));
    };
    if !hello.sink_only {
        // Another media node: the connection carries every meeting we have in common.
        crate::mesh::Mesh::serve_connection(node.mesh.clone(), link, hello).await;
        return Ok(());
    }
    let meeting = match MeetingId::parse(&hello.meeting_id) {
        Ok(m) => hosted_soon(&node, m).await,
        Err(_) => None,
    };
    let Some(meeting) = meeting else {
        link.connection
            .close(1u32.into(), b"meeting not hosted on this node");
        return Err(LinkError::Refused(format!(
            "{} asked for meeting {:?}, not hosted here",
            hello.node_id, hello.meeting_id
        )));
    };
    tracing::info!(peer = %hello.node_id, %meeting, "relay sink attached");
    let (session, mut events) = node.sfu.attach_sink(&meeting);
    let mut subscribed: HashSet<u32> = HashSet::new();
    // Its simulcast tracks, whose packets are counted by layer.
    let mut simulcast: HashSet<u32> = HashSet::new();
    let sink_layers = ["l", "m", "h"].map(|l| {
        node.metrics
            .relay_sink_layer_packets
            .with_label_values(&[l])
    });
    let mut writer = link.writer;
    let mut reader = link.reader;
    let connection = link.connection;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.recv() => match e {
                None => break,
                Some(RelayEvent::Media { track_id, layer, packet }) => {
                    if subscribed.contains(&track_id) {
                        // Full buffers drop datagrams, as a lossy link would.
                        match relay::send_packet(&connection, track_id, packet) {
                            Ok(()) => {
                                node.metrics.relay_packets_out.inc();
                                if simulcast.contains(&track_id) {
                                    sink_layers[usize::from(layer.min(2))].inc();
                                }
                            }
                            Err(relay::RelayError::Datagram(quinn::SendDatagramError::ConnectionLost(_))) => break,
                            Err(_) => node.metrics.relay_dropped.inc(),
                        }
                    }
                }
                Some(RelayEvent::Announce { track_id, participant, name, kind, codec, clock_rate, layers }) => {
                    if layers > 1 {
                        simulcast.insert(track_id);
                    }
                    // A sink gets one layer of each track.
                    writer.send(&convert::announce(track_id, &participant, name, kind, codec, clock_rate, 1)).await?;
                }
                Some(RelayEvent::Keyframe { .. } | RelayEvent::Layers { .. }) => {}
                Some(RelayEvent::Speaker { participant }) => {
                    let speaker = SpeakerChanged { participant_id: participant.to_string() };
                    writer.send(&convert::control(Msg::Speaker(speaker))).await?;
                }
                Some(RelayEvent::Remove { track_id }) => {
                    subscribed.remove(&track_id);
                    simulcast.remove(&track_id);
                    writer.send(&convert::control(Msg::Remove(RemoveTrack { track_id }))).await?;
                }
            },
            m = reader.recv() => match m? {
                None => break,
                Some(RelayControl { msg: Some(Msg::Subscribe(s)) }) => {
                    subscribed.insert(s.track_id);
                    session.keyframe(s.track_id);
                }
                Some(RelayControl { msg: Some(Msg::Unsubscribe(u)) }) => { subscribed.remove(&u.track_id); }
                Some(RelayControl { msg: Some(Msg::Keyframe(k)) }) => session.keyframe(k.track_id),
                Some(RelayControl { msg: Some(Msg::Layer(l)) }) if l.width > 0 && l.height > 0 => {
                    session.show_at(l.track_id, l.width, l.height);
                }
                Some(other) => tracing::debug!(?other, "relay message ignored"),
            },
        }
    }
    tracing::info!(peer = %hello.node_id, %meeting, "relay sink detached");
    Ok(())
}
