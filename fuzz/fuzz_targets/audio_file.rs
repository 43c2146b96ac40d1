//! What a recording node writes into a participant's audio file: RTP packets from the
//! relay (a media node, or anyone past the relay's mutual TLS), in any order, with any
//! sequence numbers, timestamps, header bits and Opus payloads. Nothing may panic; the
//! file must read back as Ogg whose granule positions never go back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recording_node::pipeline::AudioFile;
use recording_node::spec::{Codec, TrackSpec};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let track = TrackSpec {
        track_id: 7,
        participant_id: "p".into(),
        participant_name: "Fuzz".into(),
        codec: Codec::Opus,
        payload_type: 111,
    };
    let file = AudioFile::start(&track, dir.path(), 1).expect("the file starts");
    // Packets: a length byte, then that many bytes (raw: the RTP header is the input's).
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        file.push(packet);
        rest = tail;
    }
    let path = file.finish().expect("the file finishes");
    let mut reader = ogg::PacketReader::new(std::fs::File::open(&path).expect("written"));
    let mut last = 0u64;
    while let Ok(Some(p)) = reader.read_packet() {
        let at = p.absgp_page();
        assert!(at >= last, "granule went back: {last} then {at}");
        last = at;
    }
});
