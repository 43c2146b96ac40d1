//! Relay control messages ↔ the node's own types, written once for every relay peer:
//! track announcements (links to other media nodes and recording sinks), participants,
//! chat, reactions and whiteboard operations. What comes from a far node is checked
//! here as our own participants' messages are checked by signaling: a message that
//! fails is `None`, and the caller ignores it.
use common::ids::{MeetingId, ParticipantId};
use common::token::Role;
use proto::v1::relay_control::Msg;
use proto::v1::{
    AnnounceTrack, RelayControl, RemoteBoardOp, RemoteChat, RemoteParticipant, RemoteReaction,
    TrackKind,
};
use relay::Codec;
use signaling::limits::{MAX_CHAT_CHARS, REACTION_EMOJI, bounded_name};
use str0m::media::MediaKind;

use crate::board::BoardOp;
use crate::room::{Participant, ServerMsg};
use crate::sfu::{LinkKey, RemoteTrackInfo, SfuCommand};

/// The clock rates a far node's track may announce (Hz).
const CLOCK_RATES: std::ops::RangeInclusive<u32> = 1_000..=192_000;

pub fn control(msg: Msg) -> RelayControl {
    RelayControl { msg: Some(msg) }
}

/// A track the SFU announced (`RelayEvent::Announce`), as the relay announces it under
/// `track_id` (`layers`: 3 for a simulcast track a link carries layer by layer, else 1).
pub fn announce(
    track_id: u32,
    participant: &ParticipantId,
    name: String,
    kind: MediaKind,
    codec: Codec,
    clock_rate: u32,
    layers: u8,
) -> RelayControl {
    control(Msg::Announce(AnnounceTrack {
        track_id,
        participant_id: participant.to_string(),
        participant_name: name,
        kind: if kind == MediaKind::Audio {
            TrackKind::Audio
        } else {
            TrackKind::Video
        } as i32,
        codec: codec.name().into(),
        clock_rate,
        layers: u32::from(layers),
        payload_type: u32::from(codec.payload_type()),
    }))
}

/// A far node's announcement as the SFU takes it, a remote track of `meeting` on link
/// `link`; None when it is not one we can take (a codec or participant id not ours, no
/// known kind, a track id out of range or an unlikely clock rate).
pub fn remote_track(a: AnnounceTrack, link: LinkKey, meeting: &MeetingId) -> Option<SfuCommand> {
    let (Some(codec), Ok(participant)) = (
        Codec::parse(&a.codec),
        ParticipantId::parse(&a.participant_id),
    ) else {
        tracing::debug!(
            codec = a.codec,
            "far track ignored: codec or participant id not ours"
        );
        return None;
    };
    let kind = match TrackKind::try_from(a.kind) {
        Ok(TrackKind::Audio) => MediaKind::Audio,
        Ok(TrackKind::Video) => MediaKind::Video,
        _ => return None,
    };
    if a.track_id > relay::wire::MAX_TRACK_ID || !CLOCK_RATES.contains(&a.clock_rate) {
        return None;
    }
    Some(SfuCommand::RemoteTrack(RemoteTrackInfo {
        link,
        meeting: meeting.clone(),
        track_id: a.track_id,
        participant,
        name: bounded_name(a.participant_name),
        kind,
        codec,
        clock_rate: a.clock_rate,
        layers: a.layers.min(3) as u8,
    }))
}

/// One of our participants as told to the far node.
pub fn participant_msg(p: &Participant) -> RelayControl {
    control(Msg::Participant(RemoteParticipant {
        participant_id: p.participant_id.clone(),
        name: p.name.clone(),
        role: p.role.as_str().to_owned(),
        audio_muted: p.audio_muted,
        video_muted: p.video_muted,
        hand_raised_unix_ms: p.hand_raised_unix_ms.unwrap_or(0),
        waiting: p.waiting,
        joined_unix_ms: p.joined_unix_ms,
        local_recording: p.local_recording,
    }))
}

/// A far node's participant, as shown here.
pub fn participant(p: RemoteParticipant) -> Participant {
    Participant {
        participant_id: p.participant_id,
        name: bounded_name(p.name),
        role: Role::parse(&p.role).unwrap_or_default(),
        audio_muted: p.audio_muted,
        video_muted: p.video_muted,
        hand_raised_unix_ms: (p.hand_raised_unix_ms > 0).then_some(p.hand_raised_unix_ms),
        waiting: p.waiting,
        joined_unix_ms: p.joined_unix_ms,
        local_recording: p.local_recording,
    }
}

/// A far participant's chat message; None when empty or longer than ours may be.
pub fn chat(c: RemoteChat) -> Option<ServerMsg> {
    let ok = !c.text.trim().is_empty() && c.text.chars().count() <= MAX_CHAT_CHARS;
    ok.then(|| ServerMsg::Chat {
        from: c.from,
        name: bounded_name(c.name),
        text: c.text,
        unix_ms: c.unix_ms,
    })
}

/// A far participant's reaction; None when it is not one of ours.
pub fn reaction(r: RemoteReaction) -> Option<ServerMsg> {
    let ok = REACTION_EMOJI.contains(&r.emoji.as_str());
    ok.then(|| ServerMsg::Reaction {
        from: r.from,
        name: bounded_name(r.name),
        emoji: r.emoji,
        unix_ms: r.unix_ms,
    })
}

pub fn board_op_msg(op: BoardOp) -> RemoteBoardOp {
    RemoteBoardOp {
        op_id: op.op_id,
        author: op.author,
        stroke_id: op.stroke_id,
        tool: op.tool,
        color: op.color,
        width: op.width,
        points: op.points,
        text: op.text,
    }
}

/// A far participant's whiteboard operation; None when it fails the checks ours pass.
pub fn board_op(o: RemoteBoardOp) -> Option<BoardOp> {
    let op = BoardOp {
        op_id: o.op_id,
        author: o.author,
        stroke_id: o.stroke_id,
        tool: o.tool,
        color: o.color,
        width: o.width,
        points: o.points,
        text: o.text,
    };
    op.check().is_ok().then_some(op)
}
