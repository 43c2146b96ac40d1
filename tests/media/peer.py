"""A meeting participant on aiortc, the third WebRTC stack of the media tests.

It joins through the controller like a browser does, speaks the media node's signaling
protocol (docs/signaling.md), may publish (Opus silence and a VP8 test pattern, with a
noise block that makes the encoder spend its bitrate if asked), and
counts every RTP packet it sends and receives below aiortc's jitter buffers, per RTP
timestamp, so that a test can compare what a subscriber got with what a publisher sent
frame by frame. With `--janus`, it takes part in a room of Janus's VideoRoom instead (the
peer SFU the benchmarks compare with): a publisher publishes there, a subscriber waits
for `--publishers` feeds and subscribes to all of them on one PeerConnection. At the end
it prints one JSON object on stdout:

    {"participant_id": ..., "errors": [...signaling errors...],
     "ice_servers": how many the join answer offered,
     "local_candidate": the type of our side of the pair ICE chose (host, relay, ...),
     "sent": {"audio"|"video": [[timestamp, packets, unix_ms], ...]},
     "received": {participant_id: {"audio"|"video": {timestamp: packets}}},
     "completed": {participant_id: {"audio"|"video": {timestamp: unix_ms of its last packet}}},
     "rtp_received": total RTP packets received (any m-line, retransmissions included)}
"""

import argparse
import asyncio
import fractions
import json
import os
import sys
import time
import urllib.request

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
import aiortc.rtcrtpreceiver
from aiortc.codecs import vpx
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp
from websockets.asyncio.client import connect


def rtp_header(data):
    """(payload type, timestamp, ssrc) of a plain RTP packet."""
    return (
        data[1] & 0x7F,
        int.from_bytes(data[4:8], "big"),
        int.from_bytes(data[8:12], "big"),
    )


def rtp_seq_and_payload(data):
    """The sequence number and payload of a plain RTP packet (RFC 3550 §5.1), or None."""
    at = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < at + 4:
            return None
        at += 4 + 4 * int.from_bytes(data[at + 2 : at + 4], "big")
    if len(data) < at:
        return None
    return int.from_bytes(data[2:4], "big"), data[at:]


class Counts:
    """What crosses the DTLS transport, as plain RTP, in both directions."""

    def __init__(self):
        self.sent = {}  # ssrc -> {timestamp: [packets, unix_ms]}
        # (ssrc, payload type, sequence number, timestamp, payload head, unix ms)
        self.received = []
        self.rtp_received = 0

    def on_send(self, data):
        _, ts, ssrc = rtp_header(data)
        frame = self.sent.setdefault(ssrc, {}).setdefault(ts, [0, int(time.time() * 1000)])
        frame[0] += 1

    def on_receive(self, data):
        if len(data) < 12:
            return
        self.rtp_received += 1
        pt, ts, ssrc = rtp_header(data)
        parsed = rtp_seq_and_payload(data)
        if parsed:
            seq, payload = parsed
            self.received.append((ssrc, pt, seq, ts, payload[:2], int(time.time() * 1000)))

    def frames_received(self, ssrc_mid, rtx_pts):
        """mid -> {timestamp: packets}: each original packet once, whether it came
        first time or as a retransmission (RTX, RFC 4588: the original sequence number
        leads the payload); and mid -> {timestamp: Unix ms its last packet came}."""
        seen = set()
        out = {}
        last = {}
        for ssrc, pt, seq, ts, head, at in self.received:
            mid = ssrc_mid.get(ssrc)
            if mid is None:
                continue
            if pt in rtx_pts:
                if len(head) < 2:
                    continue  # padding only
                seq = int.from_bytes(head, "big")
            if (mid, seq) in seen:
                continue
            seen.add((mid, seq))
            frames = out.setdefault(mid, {})
            frames[ts] = frames.get(ts, 0) + 1
            last.setdefault(mid, {})[ts] = at
        return out, last


COUNTS = Counts()
_send_rtp = RTCDtlsTransport._send_rtp
_handle_rtp_data = RTCDtlsTransport._handle_rtp_data


async def send_rtp(self, data):
    if not is_rtcp(data):
        COUNTS.on_send(data)
    await _send_rtp(self, data)


async def handle_rtp_data(self, data, arrival_time_ms):
    COUNTS.on_receive(data)
    await _handle_rtp_data(self, data, arrival_time_ms)


RTCDtlsTransport._send_rtp = send_rtp
RTCDtlsTransport._handle_rtp_data = handle_rtp_data


def discarding_decoder_worker(loop, input_q, output_q, decode_error):
    """Takes the place of aiortc's decoder thread. This peer never reads the tracks it
    receives (it counts their RTP above), so every frame aiortc decoded piled up unread
    in the track's queue, and decoding was most of a subscriber's CPU: on a machine of
    two cores a test with several subscribers was then timing Python's backlog, not
    the node. Jitter buffer, NACK, PLI on gaps and RTCP run as before."""
    while input_q.get() is not None:
        pass
    asyncio.run_coroutine_threadsafe(output_q.put(None), loop)


aiortc.rtcrtpreceiver.decoder_worker = discarding_decoder_worker


class Pattern(MediaStreamTrack):
    """A moving luma ramp at a fixed frame rate; with `noise`, a block of fresh random
    luma (half the width and height) moves across it, which no encoder can predict, so
    VP8 spends its whole target bitrate (aiortc's: 500 kbps) on every frame."""

    kind = "video"

    def __init__(self, width, height, fps, noise=False):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.noise = noise
        self.ramp = bytes(range(256)) * ((2 * width * height) // 256 + 2)
        self.start = None
        self.n = 0

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        else:
            self.n += 1
        wait = self.start + self.n / self.fps - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y = self.width * self.height
        offset = (self.n * 7) % y
        luma = self.ramp[offset : offset + y]
        if self.noise:
            luma = bytearray(luma)
            bw, bh = self.width // 2, self.height // 2
            x0 = (self.n * 4) % (self.width - bw)
            y0 = (self.n * 2) % (self.height - bh)
            for row in range(y0, y0 + bh):
                at = row * self.width + x0
                luma[at : at + bw] = os.urandom(bw)
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128]) * (y // 4))
        frame.planes[2].update(bytes([128]) * (y // 4))
        frame.pts = self.n * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


def sdp_streams(sdp):
    """Per m-section of an SDP: its mid and SSRCs (main and RTX); and the payload types
    that are retransmissions (`a=fmtp:N apt=M`)."""
    out, rtx_pts = {}, set()
    for section in sdp.split("\nm=")[1:]:
        mid, ssrcs = None, set()
        for line in section.splitlines():
            line = line.strip()
            if line.startswith("a=mid:"):
                mid = line[6:]
            elif line.startswith("a=ssrc:"):
                ssrcs.add(int(line[7:].split()[0]))
            elif line.startswith("a=fmtp:") and "apt=" in line:
                rtx_pts.add(int(line[7:].split()[0]))
        if mid is not None:
            out[mid] = ssrcs
    return out, rtx_pts


def nominated_candidate_type(pc):
    """The type of our side of the candidate pair ICE chose (host, srflx, relay), or None."""
    for t in pc.getTransceivers():
        transport = t.sender.transport or t.receiver.transport
        if transport is None:
            continue
        nominated = getattr(transport.transport._connection, "_nominated", {})
        for pair in nominated.values():
            return pair.local_candidate.type
    return None


def join(controller, meeting, name):
    body = json.dumps({"name": name}).encode()
    req = urllib.request.Request(
        f"{controller}/v1/meetings/{meeting}/join",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def plugin_data(event):
    """What the VideoRoom plugin says in a Janus message (nothing in an `ack`)."""
    return event.get("plugindata", {}).get("data", {})


class JanusRoom:
    """A client of Janus's HTTP API and its VideoRoom plugin (Janus 1.x, multistream):
    one session, one handle, and a long poll that hands this peer its events."""

    def __init__(self, api, room):
        self.api, self.room = api, room
        self.session = self.handle = None
        self.events = asyncio.Queue()
        self.poller = None

    def _post(self, url, body):
        body = dict(body, transaction=os.urandom(8).hex())
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=15) as r:
            reply = json.load(r)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus refused {body}: {reply.get('error')}")
        return reply

    async def post(self, url, body):
        return await asyncio.to_thread(self._post, url, body)

    async def attach(self):
        reply = await self.post(self.api, {"janus": "create"})
        self.session = f"{self.api}/{reply['data']['id']}"
        reply = await self.post(
            self.session, {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        self.handle = f"{self.session}/{reply['data']['id']}"
        self.poller = asyncio.create_task(self._poll())

    async def _poll(self):
        def get():
            with urllib.request.urlopen(f"{self.session}?maxev=16", timeout=40) as r:
                return json.load(r)

        while True:
            events = await asyncio.to_thread(get)
            for e in events if isinstance(events, list) else [events]:
                if e.get("janus") == "event":
                    await self.events.put(e)

    async def request(self, body, jsep=None, answer=None):
        """A VideoRoom request. Without `answer` its answer is in the reply
        (listparticipants); otherwise it is the first event for which `answer(event)`
        holds (news of other publishers pass by). Fails with the plugin's error."""
        msg = {"janus": "message", "body": body}
        if jsep:
            msg["jsep"] = jsep
        event = await self.post(self.handle, msg)
        while True:
            data = plugin_data(event)
            if "error" in data:
                raise RuntimeError(f"janus videoroom refused {body['request']}: {data['error']}")
            if answer is None or answer(event):
                return event
            event = await asyncio.wait_for(self.events.get(), 15)

    async def publishers(self, n):
        """The feed ids of the room's first `n` publishers, once there are that many."""
        while True:
            e = await self.request({"request": "listparticipants", "room": self.room})
            feeds = [p["id"] for p in plugin_data(e)["participants"] if p.get("publisher")]
            if len(feeds) >= n:
                return sorted(feeds)[:n]
            await asyncio.sleep(0.2)

    async def close(self):
        if self.poller:
            self.poller.cancel()
        if self.session:
            try:
                await self.post(self.session, {"janus": "destroy"})
            except Exception:
                pass


async def run_janus(args):
    """As `run`, in a Janus VideoRoom: `participant_id` is the peer's feed id (a
    publisher's) or its name (a subscriber's); `received` is keyed by feed id."""
    room = JanusRoom(args.janus, args.room)
    await room.attach()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    senders, mids, ssrc_mid, rtx_pts = [], {}, {}, set()
    participant = args.name
    if args.publish:
        senders.append(("audio", pc.addTrack(AudioStreamTrack())))
        senders.append(("video", pc.addTrack(Pattern(args.width, args.height, args.fps, args.noise))))
        e = await room.request(
            {"request": "join", "ptype": "publisher", "room": args.room, "display": args.name},
            answer=lambda e: plugin_data(e).get("videoroom") == "joined",
        )
        participant = str(plugin_data(e)["id"])
        await pc.setLocalDescription(await pc.createOffer())
        e = await room.request(
            {"request": "publish"},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
            answer=lambda e: "jsep" in e,
        )
        await pc.setRemoteDescription(RTCSessionDescription(e["jsep"]["sdp"], "answer"))
    else:
        feeds = await room.publishers(args.publishers)
        e = await room.request(
            {
                "request": "join",
                "ptype": "subscriber",
                "room": args.room,
                "streams": [{"feed": f} for f in feeds],
            },
            answer=lambda e: "jsep" in e,
        )
        for s in plugin_data(e)["streams"]:
            if "feed_id" in s:
                mids[s["mid"]] = (str(s["feed_id"]), s["type"])
        streams, rtx_pts = sdp_streams(e["jsep"]["sdp"])
        for mid, ssrcs in streams.items():
            for s in ssrcs:
                ssrc_mid[s] = mid
        await pc.setRemoteDescription(RTCSessionDescription(e["jsep"]["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await room.request(
            {"request": "start"},
            jsep={"type": "answer", "sdp": pc.localDescription.sdp},
            answer=lambda e: plugin_data(e).get("started") == "ok",
        )
    await asyncio.sleep(args.duration)
    report = report_of(participant, [], senders, ssrc_mid, rtx_pts, mids, pc, 0)
    await pc.close()
    await room.close()
    return report


def report_of(participant, errors, senders, ssrc_mid, rtx_pts, mids, pc, ice_servers):
    """The JSON report (see the module's doc) from what COUNTS saw."""
    sent = {}
    for kind, sender in senders:
        frames = COUNTS.sent.get(sender._ssrc, {})
        sent[kind] = [[ts, n, at] for ts, (n, at) in frames.items()]
    received, completed = {}, {}
    frames_by_mid, last_by_mid = COUNTS.frames_received(ssrc_mid, rtx_pts)
    for mid, frames in frames_by_mid.items():
        if mid not in mids:
            continue
        pid, kind = mids[mid]
        received.setdefault(pid, {})[kind] = {str(ts): n for ts, n in frames.items()}
        completed.setdefault(pid, {})[kind] = {str(ts): at for ts, at in last_by_mid[mid].items()}
    return {
        "participant_id": participant,
        "ice_servers": ice_servers,
        "local_candidate": nominated_candidate_type(pc),
        "errors": errors,
        "sent": sent,
        "received": received,
        "completed": completed,
        "rtp_received": COUNTS.rtp_received,
    }


async def run(args):
    joined = await asyncio.to_thread(join, args.controller, args.meeting, args.name)
    url = f"{joined['signal_url']}?token={joined['token']}"
    # The TURN servers the join answer offers (a cluster with [turn]), as a browser uses them.
    ice = [
        RTCIceServer(urls=s["urls"], username=s["username"], credential=s["credential"])
        for s in joined.get("ice_servers", [])
    ]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
    senders = []
    if args.publish:
        senders.append(("audio", pc.addTrack(AudioStreamTrack())))
        senders.append(("video", pc.addTrack(Pattern(args.width, args.height, args.fps, args.noise))))
    else:
        pc.addTransceiver("audio", direction="recvonly")

    errors = []
    mids = {}  # mid -> (participant id, kind), from `slots` messages
    ssrc_mid = {}  # ssrc -> mid, from the node's offers
    rtx_pts = set()
    own = {t.mid for t in pc.getTransceivers()}

    async with connect(url, max_size=2**20) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        if args.bad_first_offer:
            await ws.send(json.dumps({"type": "offer", "sdp": "v=0 this is no SDP"}))
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        if not args.bad_first_offer:
            await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        own = {t.mid for t in pc.getTransceivers()}
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=timeout)
            except asyncio.TimeoutError:
                break
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "error":
                errors.append(msg)
                if args.bad_first_offer and msg.get("in_reply_to") == "offer" and not pc.remoteDescription:
                    await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
            elif kind == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                if deadline is None:
                    deadline = time.time() + args.duration
            elif kind == "offer":
                streams, pts = sdp_streams(msg["sdp"])
                rtx_pts |= pts
                for mid, ssrcs in streams.items():
                    for s in ssrcs:
                        ssrc_mid[s] = mid
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                if args.answer == "inactive":
                    for t in pc.getTransceivers():
                        if t.mid not in own:
                            t.direction = "inactive"
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
            elif kind == "slots":
                # Each receive slot's m-line and whom it carries (the test's meetings are
                # small: a slot keeps its participant).
                for slot in msg["slots"]:
                    if slot.get("participant_id"):
                        mids[slot["mid"]] = (slot["participant_id"], slot["kind"])
        await ws.send(json.dumps({"type": "leave"}))

    report = report_of(joined["participant_id"], errors, senders, ssrc_mid, rtx_pts, mids, pc, len(ice))
    await pc.close()
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--controller", help="Fjord: the controller's URL")
    p.add_argument("--meeting", help="Fjord: the meeting's id")
    p.add_argument("--janus", help="Janus: its HTTP API (http://…/janus), instead of Fjord")
    p.add_argument("--room", type=int, help="Janus: the VideoRoom's id")
    p.add_argument("--publishers", type=int, default=1, help="Janus: feeds to subscribe to")
    p.add_argument("--name", required=True)
    p.add_argument("--publish", action="store_true")
    p.add_argument("--answer", choices=["recvonly", "inactive"], default="recvonly")
    p.add_argument("--bad-first-offer", action="store_true")
    p.add_argument("--duration", type=float, default=10.0, help="seconds after the answer")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--noise", action="store_true", help="a moving block of random luma")
    p.add_argument("--bitrate", type=int, help="VP8 target in kbps (aiortc's default: 500)")
    args = p.parse_args()
    if args.bitrate:
        vpx.DEFAULT_BITRATE = args.bitrate * 1000
    if args.janus:
        if args.room is None:
            p.error("--janus needs --room")
        result = asyncio.run(run_janus(args))
    else:
        if not (args.controller and args.meeting):
            p.error("--controller and --meeting are needed (or --janus and --room)")
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
