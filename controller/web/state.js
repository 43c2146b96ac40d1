// What the page's modules share about this visit: the meeting, the session and who is
// in it. What only one module needs stays in that module.
import { ROLE } from './protocol.js';

export const state = {
  meeting: null, // the meeting's id, as typed or from /m/{id}
  info: null, // GET /v1/meetings/{id}/public: title, kind, e2ee, registration, schedule
  me: undefined, // GET /v1/me: the signed-in user (null: nobody; undefined: not asked yet)
  title: null,
  joined: null, // the join's answer: participant_id, node_id, role, signal_url, token, ice_servers
  ws: null,
  pc: null,
  local: null, // our camera and microphone (a MediaStream)
  screen: null, // the screen we share, while we do
  role: null,
  welcomed: false, // in the meeting (after `welcome`), not in the waiting room
  room: {}, // the room's settings, from `room`
  participants: new Map(), // participant_id -> participant (in the meeting), as far as listed
  unlisted: 0, // others in the meeting the page has not been sent yet (welcome lists a page)
  rosterNext: 0, // where the next `roster_page` starts, in the node's order
  waiting: new Map(), // participant_id -> participant (in the waiting room; hosts only)
  midToParticipant: new Map(), // m-line -> whose media it carries
  midKind: new Map(), // m-line -> 'audio' | 'video'
  activeSpeaker: null,
  audioMuted: false,
  videoMuted: false,
  handRaised: false,
  offers: 0, // the node's offers (renegotiations) this session
};

export const isHost = () => state.role === ROLE.host || state.role === ROLE.co_host;

// A webinar's attendee watches and listens: no camera, no microphone.
export const watchOnly = () => !!(state.info && state.info.kind === 'webinar') && state.role === ROLE.attendee;

export const myId = () => state.joined && state.joined.participant_id;
