//! The etcd keyspace (DESIGN §3): the only place that spells a key.
use crate::ids::{MeetingId, NodeId, ParticipantId, RecordingId, Region};

/// One of a meeting's placements: its region, and which of the region's nodes (0 for
/// the first, `n` > 0 for the nodes it spilled over to when the ones before were full).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub region: Region,
    pub n: u32,
}

impl Slot {
    /// The first slot of `region`.
    pub fn first(region: Region) -> Self {
        Self { region, n: 0 }
    }
}

impl std::fmt::Display for Slot {
    /// `oslo`, or `oslo/2` for a spill-over slot (as in the key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.n {
            0 => write!(f, "{}", self.region),
            n => write!(f, "{}/{n}", self.region),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Keyspace {
    prefix: String,
}

/// A key of ours, parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    MediaNode(NodeId),
    RecordingNode(NodeId),
    Load(NodeId),
    Meeting(MeetingId),
    Placement(MeetingId, Slot),
    /// What the meeting's hosts decided (`MeetingRoomRecord`).
    Room(MeetingId),
    /// The meeting's polls and Q&A (`MeetingCollabRecord`).
    Collab(MeetingId),
    Recording(RecordingId),
    Other,
}

impl Keyspace {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }
    /// Everything of Fjord's, for the controller's watch.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }
    pub fn media_node(&self, id: &NodeId) -> String {
        format!("{}/nodes/media/{id}", self.prefix)
    }
    pub fn recording_node(&self, id: &NodeId) -> String {
        format!("{}/nodes/recording/{id}", self.prefix)
    }
    pub fn load(&self, id: &NodeId) -> String {
        format!("{}/load/{id}", self.prefix)
    }
    pub fn meeting(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}", self.prefix)
    }
    pub fn room(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}/room", self.prefix)
    }
    pub fn collab(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}/collab", self.prefix)
    }
    /// A meeting's registrants (each `/registrants/{id}`).
    pub fn registrants_of(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}/registrants/", self.prefix)
    }
    pub fn registrant(&self, id: &MeetingId, registrant: &str) -> String {
        format!("{}/meetings/{id}/registrants/{registrant}", self.prefix)
    }
    /// A meeting's attendance (each `/attendance/{participant}`).
    pub fn attendance_of(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}/attendance/", self.prefix)
    }
    pub fn attendance(&self, id: &MeetingId, participant: &ParticipantId) -> String {
        format!("{}/meetings/{id}/attendance/{participant}", self.prefix)
    }
    /// An organisation's settings (`org`: a checked domain name).
    pub fn org_settings(&self, org: &str) -> String {
        format!("{}/orgs/{org}/settings", self.prefix)
    }
    pub fn placements_of(&self, id: &MeetingId) -> String {
        format!("{}/meetings/{id}/placement/", self.prefix)
    }
    pub fn placement(&self, id: &MeetingId, slot: &Slot) -> String {
        format!("{}/meetings/{id}/placement/{slot}", self.prefix)
    }
    pub fn recording(&self, id: &RecordingId) -> String {
        format!("{}/recordings/{id}", self.prefix)
    }
    /// Files of deleted recordings still on recording nodes that were away when they
    /// were deleted (each `/{node}/{recording}`, the value its storage classification).
    pub fn erasures(&self) -> String {
        format!("{}/erasures/", self.prefix)
    }
    pub fn erasure(&self, node: &NodeId, recording: &RecordingId) -> String {
        format!("{}/erasures/{node}/{recording}", self.prefix)
    }
    /// Local accounts (each `/{hex of the lower-case e-mail address}`: any address is a
    /// key of its own, whatever characters it has).
    pub fn accounts(&self) -> String {
        format!("{}/accounts/", self.prefix)
    }
    pub fn account(&self, email: &str) -> String {
        let hex: String = email
            .to_lowercase()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}/accounts/{hex}", self.prefix)
    }
    pub fn election(&self) -> String {
        format!("{}/election/controller", self.prefix)
    }

    pub fn parse(&self, key: &str) -> Key {
        let Some(rest) = key
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Key::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let parsed = match parts.as_slice() {
            ["nodes", "media", id] => NodeId::parse(id).ok().map(Key::MediaNode),
            ["nodes", "recording", id] => NodeId::parse(id).ok().map(Key::RecordingNode),
            ["load", id] => NodeId::parse(id).ok().map(Key::Load),
            ["meetings", id] => MeetingId::parse(id).ok().map(Key::Meeting),
            ["meetings", id, "room"] => MeetingId::parse(id).ok().map(Key::Room),
            ["meetings", id, "collab"] => MeetingId::parse(id).ok().map(Key::Collab),
            ["meetings", id, "placement", region] => MeetingId::parse(id)
                .ok()
                .zip(Region::parse(region).ok())
                .map(|(m, r)| Key::Placement(m, Slot::first(r))),
            ["meetings", id, "placement", region, nth] => MeetingId::parse(id)
                .ok()
                .zip(Region::parse(region).ok())
                // Only the spelling we write: `2`, never `02` or `0`.
                .zip(
                    nth.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0 && n.to_string() == *nth),
                )
                .map(|((m, region), n)| Key::Placement(m, Slot { region, n })),
            ["recordings", id] => RecordingId::parse(id).ok().map(Key::Recording),
            _ => None,
        };
        parsed.unwrap_or(Key::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back() {
        let ks = Keyspace::new("/fjord");
        let n = NodeId::parse("n1").unwrap();
        let m = MeetingId::parse("abc-defg-hij").unwrap();
        let r = Region::parse("oslo").unwrap();
        assert_eq!(ks.parse(&ks.media_node(&n)), Key::MediaNode(n.clone()));
        assert_eq!(
            ks.parse(&ks.recording_node(&n)),
            Key::RecordingNode(n.clone())
        );
        assert_eq!(ks.parse(&ks.load(&n)), Key::Load(n));
        assert_eq!(ks.parse(&ks.meeting(&m)), Key::Meeting(m.clone()));
        assert_eq!(ks.parse(&ks.room(&m)), Key::Room(m.clone()));
        assert_eq!(ks.parse(&ks.collab(&m)), Key::Collab(m.clone()));
        let first = Slot::first(r.clone());
        assert_eq!(
            ks.parse(&ks.placement(&m, &first)),
            Key::Placement(m.clone(), first)
        );
        let spill = Slot { region: r, n: 2 };
        assert_eq!(
            ks.placement(&m, &spill),
            "/fjord/meetings/abc-defg-hij/placement/oslo/2"
        );
        assert_eq!(
            ks.parse(&ks.placement(&m, &spill)),
            Key::Placement(m, spill)
        );
        assert_eq!(
            ks.parse("/fjord/meetings/abc-defg-hij/placement/oslo/0"),
            Key::Other
        );
        assert_eq!(
            ks.parse("/fjord/meetings/abc-defg-hij/placement/oslo/02"),
            Key::Other
        );
        assert_eq!(ks.parse("/other/nodes/media/n1"), Key::Other);
        assert_eq!(ks.parse("/fjord/election/controller/694d"), Key::Other);
        assert_eq!(ks.parse("/fjord/nodes/media/Bad Id"), Key::Other);
    }
}
