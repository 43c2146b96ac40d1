//! Two relay endpoints on loopback with certificates from a real cluster CA: the control
//! stream and media datagrams flow both ways, garbage datagrams are told apart, and a
//! peer whose certificate another CA signed is refused.
use std::net::SocketAddr;
use std::time::Duration;

use proto::v1::relay_control::Msg;
use proto::v1::{AnnounceTrack, RelayControl, RelayHello, Subscribe, TrackKind};
use relay::{Pem, WireError};

fn pem(pki: &harness::Pki, name: &str) -> Pem {
    let (cert, key) = pki.files(name);
    Pem {
        ca: std::fs::read(pki.ca_file()).unwrap(),
        cert: std::fs::read(cert).unwrap(),
        key: std::fs::read(key).unwrap(),
    }
}

fn hello() -> RelayControl {
    RelayControl {
        msg: Some(Msg::Hello(RelayHello {
            node_id: "recording-oslo-1".into(),
            meeting_id: "abc-defg-hij".into(),
            sink_only: true,
        })),
    }
}

const LOCAL: &str = "127.0.0.1:0";

/// A media node's relay server and a recording node's client endpoint, with
/// certificates of one cluster CA (kept in the returned dir), on loopback.
fn media_and_recording_endpoints() -> (
    tempfile::TempDir,
    quinn::Endpoint,
    SocketAddr,
    quinn::Endpoint,
) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["media-oslo-1".to_string(), "recording-oslo-1".to_string()];
    let pki = harness::Pki::generate(dir.path(), &names).unwrap();
    let server = relay::server(LOCAL.parse().unwrap(), &pem(&pki, "media-oslo-1")).unwrap();
    let addr: SocketAddr = server.local_addr().unwrap();
    let client = relay::client(LOCAL.parse().unwrap(), &pem(&pki, "recording-oslo-1")).unwrap();
    (dir, server, addr, client)
}

#[tokio::test]
async fn control_messages_and_media_datagrams_flow_between_cluster_peers() {
    let (_dir, server, addr, client) = media_and_recording_endpoints();

    let accepting = tokio::spawn(async move {
        let (mut link, first) = relay::accept(&server).await.unwrap().unwrap();
        // The source announces a track, waits for the subscription, then sends media and
        // one datagram that is not RTP.
        link.writer
            .send(&RelayControl {
                msg: Some(Msg::Announce(AnnounceTrack {
                    track_id: 5,
                    participant_id: "p1".into(),
                    participant_name: "Ada".into(),
                    kind: TrackKind::Audio as i32,
                    codec: "opus".into(),
                    clock_rate: 48_000,
                    layers: 1,
                    payload_type: 111,
                })),
            })
            .await
            .unwrap();
        let sub = link.reader.recv().await.unwrap().unwrap();
        assert!(matches!(
            sub.msg,
            Some(Msg::Subscribe(Subscribe { track_id: 5, .. }))
        ));
        for seq in 0..20u16 {
            let mut rtp = vec![0x80, 111];
            rtp.extend_from_slice(&seq.to_be_bytes());
            rtp.extend_from_slice(&[0; 8]);
            rtp.extend_from_slice(b"opus frame");
            link.send_media(5, &rtp).unwrap();
        }
        link.connection
            .send_datagram(bytes_of(b"garbage, not rtp at all"))
            .unwrap();
        (first, link)
    });

    let mut link = relay::connect(&client, addr, "media-oslo-1", &hello())
        .await
        .unwrap();
    let announce = link.reader.recv().await.unwrap().unwrap();
    let Some(Msg::Announce(a)) = announce.msg else {
        panic!("expected an announcement, got {announce:?}");
    };
    assert_eq!((a.track_id, a.codec.as_str()), (5, "opus"));
    link.writer
        .send(&RelayControl {
            msg: Some(Msg::Subscribe(Subscribe {
                track_id: 5,
                layer: 0,
                layers: 0,
            })),
        })
        .await
        .unwrap();
    let (mut media, mut garbage) = (0, 0);
    while media + garbage < 21 {
        match tokio::time::timeout(Duration::from_secs(5), link.recv_media())
            .await
            .expect("datagrams should arrive on loopback")
            .unwrap()
        {
            Ok((5, rtp)) => {
                assert!(rtp.ends_with(b"opus frame"));
                media += 1;
            }
            Ok((id, _)) => panic!("unexpected track {id}"),
            Err(WireError::NotRtp | WireError::Short(_)) => garbage += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((media, garbage), (20, 1));
    let (first, _server_link) = accepting.await.unwrap();
    assert_eq!(first, hello());
}

#[tokio::test]
async fn a_control_message_a_dropped_read_had_begun_arrives_whole() {
    let (_dir, server, addr, client) = media_and_recording_endpoints();
    let accepting = tokio::spawn(async move { relay::accept(&server).await.unwrap().unwrap() });
    // The dialling side writes by hand, to cut a message where it likes.
    let connection = client.connect(addr, "media-oslo-1").unwrap().await.unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    let hello_frame = relay::wire::encode_control(&hello()).unwrap();
    send.write_all(&hello_frame).await.unwrap();
    let (mut link, first) = accepting.await.unwrap();
    assert_eq!(first, hello());
    let sub = RelayControl {
        msg: Some(Msg::Subscribe(Subscribe {
            track_id: 5,
            layer: 0,
            layers: 0,
        })),
    };
    let frame = relay::wire::encode_control(&sub).unwrap();
    // Cut inside the length prefix, then inside the body; after each piece, a `select!`
    // that takes another branch drops the read waiting for the rest.
    for piece in [&frame[..2], &frame[2..5]] {
        send.write_all(piece).await.unwrap();
        tokio::select! {
            m = link.reader.recv() => panic!("part of a message read as {m:?}"),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    send.write_all(&frame[5..]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), link.reader.recv())
        .await
        .expect("the rest arrives on loopback")
        .unwrap();
    assert_eq!(got, Some(sub));
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}

#[tokio::test]
async fn a_peer_with_a_certificate_from_another_ca_is_refused() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cluster = harness::Pki::generate(d1.path(), &["media-oslo-1".into()]).unwrap();
    let stranger = harness::Pki::generate(d2.path(), &["recording-oslo-1".into()]).unwrap();
    let server = relay::server(LOCAL.parse().unwrap(), &pem(&cluster, "media-oslo-1")).unwrap();
    let addr = server.local_addr().unwrap();
    let accepting =
        tokio::spawn(async move { relay::accept(&server).await.map(|r| r.map(|_| ())) });
    // The stranger trusts the cluster CA (so it would accept the server), but its own
    // certificate comes from another CA.
    let mut p = pem(&stranger, "recording-oslo-1");
    p.ca = std::fs::read(cluster.ca_file()).unwrap();
    let client = relay::client(LOCAL.parse().unwrap(), &p).unwrap();
    let outcome = async {
        let mut link = relay::connect(&client, addr, "media-oslo-1", &hello()).await?;
        // TLS 1.3 finishes the client's side before the server has checked its
        // certificate: the refusal shows on the first read.
        link.reader.recv().await
    };
    let res = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .expect("the refusal should be quick");
    assert!(res.is_err(), "the stranger must not get a working link");
    let served = tokio::time::timeout(Duration::from_secs(10), accepting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(served, Some(Err(_))),
        "the server must not accept the stranger"
    );
}
