//! The controller's domain: meetings, nodes, placements and recordings as the controller
//! reasons about them, with typed ids, enums and options where the stored records have
//! strings, integers and empty values. Records become these at the store's edge
//! (`store/convert.rs`), and these become the public API's messages at its edges
//! (`grpc/convert.rs`, `http/api.rs`); nothing else in the controller sees a record.
use common::cloud_recording::Wish;
use common::ids::{MeetingId, NodeId, RecordingId, Region};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeetingState {
    Active,
    Ended,
}

impl MeetingState {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingState::Active => "active",
            MeetingState::Ended => "ended",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Meeting {
    pub id: MeetingId,
    pub title: String,
    /// argon2id PHC string of the password, if the meeting has one.
    pub password_hash: Option<String>,
    /// The region the meeting's media and recordings must stay in.
    pub residency: Option<Region>,
    /// Data classification: the storage its recordings go to.
    pub classification: String,
    /// argon2id PHC string of the host key handed out once at creation.
    pub host_key_hash: String,
    pub state: MeetingState,
    pub created_unix_ms: i64,
    pub ended_unix_ms: Option<i64>,
    pub waiting_room: bool,
    pub locked: bool,
    /// Media encrypted end to end in the browsers: never recorded in the cloud.
    pub e2ee: bool,
    pub kind: MeetingKind,
    /// Webinars: argon2id PHC string of the panelist key handed out once at creation.
    pub panelist_key_hash: Option<String>,
    pub description: String,
    /// When it takes place (None: any time).
    pub schedule: Option<crate::schedule::Schedule>,
    /// Participants register first (None: nobody registers).
    pub registration: Option<Registration>,
    /// The signed-in user who made it (None: an operator key).
    pub owner: Option<Owner>,
    /// Its organisation forbids recording it on the servers.
    pub recording_forbidden: bool,
    /// Its organisation records meetings on the servers only when their maker chose a
    /// data classification, and this one was made without (it has the default).
    pub recording_needs_classification: bool,
    /// How long its personal data is kept after it ends (None: the cluster's).
    pub retention: Option<std::time::Duration>,
    /// Who may join.
    pub audience: Audience,
}

/// Who may join a meeting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Audience {
    /// Anyone with the link (and the password, if it has one).
    #[default]
    Anyone,
    /// Signed-in users, under the names their sign-in gives (exams, defences).
    SignedIn,
    /// Signed-in users of the organisation of the meeting's maker (staff meetings).
    Organisation,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anyone => "anyone",
            Self::SignedIn => "signed_in",
            Self::Organisation => "organisation",
        }
    }

    /// The API's and the record's spelling (empty: anyone).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "anyone" => Some(Self::Anyone),
            "signed_in" => Some(Self::SignedIn),
            "organisation" => Some(Self::Organisation),
            _ => None,
        }
    }
}

/// A local account: someone who signs in with an e-mail address and a password, without
/// an identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login, lower case; its domain is the account's organisation.
    pub email: String,
    pub name: String,
    /// Administers its organisation.
    pub admin: bool,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    pub created_unix_ms: i64,
    pub password_changed_unix_ms: i64,
}

/// An organisation's rules and defaults for its users' meetings.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgSettings {
    pub waiting_room: bool,
    pub recording_forbidden: bool,
    /// Its meetings are recorded on the servers only with a data classification.
    pub recording_needs_classification: bool,
    pub e2ee: bool,
    /// Regions its meetings may keep their media in (empty: any).
    pub allowed_regions: Vec<Region>,
    pub retention: Option<std::time::Duration>,
    pub updated_unix_ms: i64,
    pub updated_by: String,
}

impl Default for OrgSettings {
    /// What holds until an administrator sets something: waiting rooms on, as for a
    /// meeting without a password.
    fn default() -> Self {
        Self {
            waiting_room: true,
            recording_forbidden: false,
            recording_needs_classification: false,
            e2ee: false,
            allowed_regions: Vec::new(),
            retention: None,
            updated_unix_ms: 0,
            updated_by: String::new(),
        }
    }
}

/// Who made a meeting, as their identity provider names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    /// Their organisation when it came from the provider's claims (empty: the e-mail's
    /// domain).
    pub org: String,
}

impl Owner {
    /// The organisation: from the provider's claims, else the domain of the e-mail
    /// address.
    pub fn org(&self) -> &str {
        if self.org.is_empty() {
            email_domain(&self.email)
        } else {
            &self.org
        }
    }
}

/// The part of an e-mail address after its last `@` (empty without one): a user's
/// organisation.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, d)| d)
}

/// How a meeting's participants register.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registration {
    /// A host approves each registrant; else all are approved at once.
    pub manual_approval: bool,
    /// Asked besides name and e-mail.
    pub questions: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrantState {
    Pending,
    Approved,
    Rejected,
}

impl RegistrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrantState::Pending => "pending",
            RegistrantState::Approved => "approved",
            RegistrantState::Rejected => "rejected",
        }
    }
}

/// Someone registered for a meeting.
#[derive(Clone, Debug, PartialEq)]
pub struct Registrant {
    pub meeting: MeetingId,
    pub id: String,
    pub name: String,
    pub email: String,
    pub answers: Vec<String>,
    pub state: RegistrantState,
    pub registered_unix_ms: i64,
    pub decided_unix_ms: Option<i64>,
    /// argon2id PHC string of the key in their personal join link.
    pub key_hash: String,
}

/// How a participant's connection fares, as their media node measures it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub participant_id: String,
    pub rtt_ms: Option<f32>,
    /// Fraction of what the node sends them that they report lost.
    pub loss: Option<f32>,
    pub jitter_ms: Option<f32>,
}

/// One participant's time in a meeting (written by their media node).
#[derive(Clone, Debug, PartialEq)]
pub struct Attendance {
    pub participant_id: String,
    pub name: String,
    pub registrant_id: Option<String>,
    pub role: String,
    pub region: String,
    pub node_id: String,
    pub joined_unix_ms: i64,
    /// None while they are in, or when their node died before it could say.
    pub left_unix_ms: Option<i64>,
}

/// What kind of meeting: everyone may publish, or only its panelists (a webinar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MeetingKind {
    #[default]
    Meeting,
    /// Panelists and hosts publish; attendees only receive, and do not see each other.
    Webinar,
}

impl MeetingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingKind::Meeting => "meeting",
            MeetingKind::Webinar => "webinar",
        }
    }
    /// The kind a request names (empty: a meeting).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "meeting" => Some(MeetingKind::Meeting),
            "webinar" => Some(MeetingKind::Webinar),
            _ => None,
        }
    }
}

impl Meeting {
    pub fn is_ended(&self) -> bool {
        self.state == MeetingState::Ended
    }
}

/// What a meeting's hosts decided in it (its room record, written by the media nodes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Room {
    pub locked: bool,
    /// A host ended the meeting for everyone.
    pub ended: bool,
    /// Participants a host turned away at the waiting room or removed: never let in again.
    pub denied: Vec<String>,
    pub removed: Vec<String>,
    /// Every host action, oldest first (the newest 1000).
    pub actions: Vec<HostAction>,
    /// The meeting's cloud recording as its hosts asked for it, if they ever did.
    pub cloud: Option<CloudRecording>,
}

/// What a meeting's hosts asked of its cloud recording (the room record's, written by
/// the media node of the host who asked; carried out by the leader).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudRecording {
    pub recording: RecordingId,
    pub wish: Wish,
    pub since_unix_ms: i64,
    /// Why it stopped without a host stopping it.
    pub error: Option<String>,
}

impl CloudRecording {
    /// Whether the meeting is being recorded, or paused in a recording (participants are
    /// told either way).
    pub fn on(&self) -> bool {
        self.wish.on()
    }
}

/// A meeting's polls and Q&A (its collab record, written by the media nodes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collab {
    pub polls: Vec<Poll>,
    pub questions: Vec<Question>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Poll {
    pub id: u32,
    pub question: String,
    /// `single`, `multiple` or `text`.
    pub kind: &'static str,
    pub options: Vec<String>,
    pub anonymous: bool,
    /// `draft`, `open` or `ended`.
    pub state: &'static str,
    pub shared: bool,
    pub created_by_name: String,
    pub created_unix_ms: i64,
    pub launched_unix_ms: Option<i64>,
    pub ended_unix_ms: Option<i64>,
    /// How many answered.
    pub answered: u64,
    /// Answers per option.
    pub tally: Vec<u64>,
    /// Named polls: each answer and who gave it. Anonymous: none.
    pub answers: Vec<PollAnswer>,
    /// Free-text answers (anonymous polls: sorted, with no author).
    pub texts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PollAnswer {
    pub participant_id: String,
    pub name: String,
    pub choices: Vec<u32>,
    pub text: String,
    pub unix_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Question {
    pub id: u32,
    pub text: String,
    /// None for an anonymous question (its author is kept nowhere).
    pub author: Option<(String, String)>,
    pub asked_unix_ms: i64,
    pub votes: u64,
    pub answer: Option<String>,
    pub answered_live: bool,
    pub answered_by_name: Option<String>,
    pub dismissed: bool,
}

/// One entry of a meeting's audit trail.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostAction {
    pub seq: u64,
    pub unix_ms: i64,
    pub by: String,
    pub by_name: String,
    pub by_role: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// Which of the two kinds of node: media (the SFU) or recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Media,
    Recording,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Media => "media",
            NodeKind::Recording => "recording",
        }
    }
}

/// Whether a node takes new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Active,
    /// Finishing what it has before maintenance: never chosen for anything new.
    Draining,
    /// A record that says neither (written by a newer or broken node): not chosen.
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Unknown => "unknown",
        }
    }
}

/// What a media node may take. 0 in a field means "not accounted" (except participants,
/// where 0 means it takes nobody).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Capacity {
    pub participants: u32,
    pub bitrate_kbps: u64,
    pub cpu_cores: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MediaNode {
    pub id: NodeId,
    pub region: Region,
    pub zone: String,
    /// Base URL of the node's WebSocket signaling.
    pub signal_url: String,
    /// Address of its control gRPC service.
    pub grpc_addr: String,
    /// Address of its QUIC relay (cascading and recording feeds); None: it has none.
    pub relay_addr: Option<String>,
    pub capacity: Capacity,
    pub version: String,
    pub state: NodeState,
    pub lease_id: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecordingNode {
    pub id: NodeId,
    pub region: Region,
    pub grpc_addr: String,
    pub storage_classes: Vec<String>,
    pub slots: u32,
    pub version: String,
    pub state: NodeState,
    pub lease_id: i64,
    /// Base URL of its signed file downloads; None: it serves none.
    pub download_url: Option<String>,
}

/// A node's last load report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeLoad {
    pub participants: u32,
    pub meetings: u32,
    pub tracks: u32,
    pub bitrate_in_kbps: u64,
    pub bitrate_out_kbps: u64,
    pub cpu_cores: f64,
    pub recordings: u32,
    /// When the node measured it.
    pub updated_unix_ms: i64,
}

/// A meeting's placement in one slot, with the store revision that last wrote it (for
/// compare-and-swap).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPlacement {
    pub node: NodeId,
    /// Increases each time the slot moves to another node.
    pub epoch: u64,
    pub placed_unix_ms: i64,
    pub mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingState {
    Starting,
    Recording,
    Stopped,
    Failed,
    Deleted,
    /// A host paused it: its node holds it and takes no media.
    Paused,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Starting => "starting",
            RecordingState::Recording => "recording",
            RecordingState::Stopped => "stopped",
            RecordingState::Failed => "failed",
            RecordingState::Deleted => "deleted",
            RecordingState::Paused => "paused",
        }
    }
    /// Whether a recording in this state holds a slot of its node.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            RecordingState::Starting | RecordingState::Recording | RecordingState::Paused
        )
    }
}

/// A stretch of a recording with no media, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub start_unix_ms: i64,
    /// 0 while the gap is open (the recording ended in it).
    pub end_unix_ms: i64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub id: RecordingId,
    pub meeting: MeetingId,
    /// The recording node writing it (the latest segment's).
    pub node: NodeId,
    pub state: RecordingState,
    pub files: Vec<String>,
    pub gaps: Vec<Gap>,
    pub started_unix_ms: i64,
    pub stopped_unix_ms: Option<i64>,
    pub deleted_unix_ms: Option<i64>,
    pub classification: String,
    /// The media node it records from.
    pub media_node: NodeId,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// 1, plus one for each move to another recording node after one was lost.
    pub segment: u32,
    /// Nodes that recorded the earlier segments, oldest first.
    pub earlier_nodes: Vec<NodeId>,
    /// How long its files and record are kept after it stops (None: the cluster's).
    pub retention: Option<std::time::Duration>,
    /// What its manifests said as its segments ended: the bytes of its files, and how
    /// long the segments recorded.
    pub bytes: u64,
    pub duration_ms: u64,
}

impl Recording {
    pub fn holds_slot(&self) -> bool {
        self.state.holds_slot()
    }
}
