//! Fjord's relay protocol, between media nodes and from media nodes to recording nodes:
//! one QUIC connection (quinn) per node pair, mutual TLS from the cluster CA. The
//! connecting side opens one bidirectional control stream and sends
//! [`RelayHello`](proto::v1::RelayHello) first; then both sides exchange
//! [`RelayControl`] messages on it (announce/remove track, subscribe/unsubscribe,
//! keyframe and layer requests). Media rides QUIC datagrams, one RTP packet each behind
//! the track id ([`wire`]), so a lost packet never holds up the others.
//!
//! The protocol knows nothing of who is a sink: a recording node is a peer that only
//! subscribes, and a media node cascading to another speaks the same messages both ways.
#![forbid(unsafe_code)]

pub mod codec;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use proto::v1::RelayControl;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

pub use crate::codec::Codec;
pub use crate::tls::Pem;
pub use crate::wire::WireError;

/// ALPN of this protocol's first version.
pub const ALPN: &[u8] = b"fjord-relay/1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("relay TLS: {0}")]
    Tls(String),
    #[error("relay endpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("relay connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("relay connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("relay control stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("relay control stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("relay datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    #[error("relay protocol: {0}")]
    Wire(#[from] WireError),
    #[error("relay protocol: {0}")]
    Protocol(String),
}

/// A link that carried nothing, keep-alives included, for this long is dead: media
/// nodes of a meeting notice a stalled link (and drop its tracks) within 2 s.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(IDLE_TIMEOUT / 4));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("a small timeout"),
    ));
    // A relayed packet is a browser's RTP packet (up to ~1,200 bytes) plus our id and
    // header extensions: it must fit one datagram from the first packet on, before path
    // MTU discovery has run. 1,400 bytes of UDP payload cross Ethernet and the usual
    // overlay networks (VXLAN: 1,450); discovery still probes for more.
    t.initial_mtu(1400);
    // Media must not queue behind the congestion window for long: drop rather than lag.
    t.datagram_send_buffer_size(1 << 20);
    t.datagram_receive_buffer_size(Some(1 << 20));
    Arc::new(t)
}

/// An endpoint that accepts relay connections on `addr` from peers with a certificate
/// of the cluster CA.
pub fn server(addr: SocketAddr, pem: &Pem) -> Result<quinn::Endpoint, RelayError> {
    let crypto = QuicServerConfig::try_from(tls::server_config(pem)?)
        .map_err(|e| RelayError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(quinn::Endpoint::server(config, addr)?)
}

/// An endpoint for connecting out, bound to `bind` (port 0 for any).
pub fn client(bind: SocketAddr, pem: &Pem) -> Result<quinn::Endpoint, RelayError> {
    let crypto = QuicClientConfig::try_from(tls::client_config(pem)?)
        .map_err(|e| RelayError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    let mut ep = quinn::Endpoint::client(bind)?;
    ep.set_default_client_config(config);
    Ok(ep)
}

/// One relay connection: the two halves of its control stream, and its datagrams.
pub struct Link {
    pub connection: quinn::Connection,
    pub writer: ControlWriter,
    pub reader: ControlReader,
}

pub struct ControlWriter(quinn::SendStream);

pub struct ControlReader {
    stream: quinn::RecvStream,
    /// What arrived of the next message(s) so far, kept across calls.
    buf: Vec<u8>,
}

impl ControlWriter {
    pub async fn send(&mut self, msg: &RelayControl) -> Result<(), RelayError> {
        let frame = wire::encode_control(msg)?;
        self.0.write_all(&frame).await?;
        Ok(())
    }
}

impl ControlReader {
    fn new(stream: quinn::RecvStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next message; `None` when the peer closed the stream cleanly.
    ///
    /// Cancel-safe: a call dropped half-way through a message (a `select!` that took
    /// another branch) leaves what it read for the next, so the stream never loses its
    /// place.
    pub async fn recv(&mut self) -> Result<Option<RelayControl>, RelayError> {
        loop {
            if let Some(&prefix) = self.buf.first_chunk::<4>() {
                let end = 4 + wire::control_len(prefix)?;
                if self.buf.len() >= end {
                    let msg = wire::decode_control(&self.buf[4..end]);
                    self.buf.drain(..end);
                    return Ok(Some(msg?));
                }
            }
            match self.stream.read_chunk(wire::MAX_CONTROL, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(quinn::ReadExactError::FinishedEarly(self.buf.len()).into());
                }
                Err(e) => return Err(quinn::ReadExactError::ReadError(e).into()),
            }
        }
    }
}

/// Opens another control stream on an established connection (one per meeting between
/// two media nodes) and sends `hello` on it.
pub async fn open(
    connection: &quinn::Connection,
    hello: &RelayControl,
) -> Result<(ControlWriter, ControlReader), RelayError> {
    let (send, recv) = connection.open_bi().await?;
    let mut writer = ControlWriter(send);
    writer.send(hello).await?;
    Ok((writer, ControlReader::new(recv)))
}

/// The next control stream the peer opens on `connection`, with its hello. Ends with
/// `Connection` when the connection closes.
pub async fn accept_stream(
    connection: &quinn::Connection,
) -> Result<(ControlWriter, ControlReader, RelayControl), RelayError> {
    let (send, recv) = connection.accept_bi().await?;
    let mut reader = ControlReader::new(recv);
    let first = reader
        .recv()
        .await?
        .ok_or_else(|| RelayError::Protocol("the peer closed before its hello".into()))?;
    if !matches!(first.msg, Some(proto::v1::relay_control::Msg::Hello(_))) {
        return Err(RelayError::Protocol(
            "the first message must be a hello".into(),
        ));
    }
    Ok((ControlWriter(send), reader, first))
}

/// Whether the peer of `connection` presented a certificate (verified against the
/// cluster CA during the handshake) that is valid for `name`: a node is who its hello
/// says only if its certificate names it.
pub fn peer_is(connection: &quinn::Connection, name: &str) -> bool {
    let Some(identity) = connection.peer_identity() else {
        return false;
    };
    let Ok(certs) = identity.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>() else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let (Ok(cert), Ok(subject)) = (
        webpki::EndEntityCert::try_from(leaf),
        rustls_pki_types::ServerName::try_from(name),
    ) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&subject).is_ok()
}

/// Connects to the relay endpoint of node `server_name` (the name its certificate
/// carries) at `addr`, opens the control stream and sends `hello`.
pub async fn connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    hello: &RelayControl,
) -> Result<Link, RelayError> {
    let connection = ep.connect(addr, server_name)?.await?;
    let (send, recv) = connection.open_bi().await?;
    let mut writer = ControlWriter(send);
    writer.send(hello).await?;
    Ok(Link {
        connection,
        writer,
        reader: ControlReader::new(recv),
    })
}

/// Accepts the next relay connection and its control stream; returns it with the first
/// message (which must be a hello). `None` when the endpoint is closed.
pub async fn accept(ep: &quinn::Endpoint) -> Option<Result<(Link, RelayControl), RelayError>> {
    let incoming = ep.accept().await?;
    Some(
        async move {
            let connection = incoming.await?;
            let (writer, reader, first) = accept_stream(&connection).await?;
            Ok((
                Link {
                    connection,
                    writer,
                    reader,
                },
                first,
            ))
        }
        .await,
    )
}

/// Sends one RTP packet of `track_id` as a datagram on a relay connection (dropped, not
/// queued, if the link cannot take it): [`send_packet`] of a copy of `rtp`.
pub fn send_media(
    connection: &quinn::Connection,
    track_id: u32,
    rtp: &[u8],
) -> Result<(), RelayError> {
    send_packet(connection, track_id, wire::MediaPacket::from_rtp(rtp))
}

/// Sends `packet` as a datagram of media id `media_id` (track and layer, or a sink's
/// track id) on a relay connection, without copying it again (dropped, not queued, if
/// the link cannot take it).
pub fn send_packet(
    connection: &quinn::Connection,
    media_id: u32,
    packet: wire::MediaPacket,
) -> Result<(), RelayError> {
    connection.send_datagram(Bytes::from(packet.into_datagram(media_id)))?;
    Ok(())
}

/// The next media datagram of a relay connection: track id and RTP packet. Garbage
/// datagrams are errors the caller counts and skips; a closed connection ends with
/// `Connection`.
pub async fn recv_media(
    connection: &quinn::Connection,
) -> Result<Result<(u32, Bytes), WireError>, RelayError> {
    let d = connection.read_datagram().await?;
    Ok(wire::decode_datagram(&d).map(|(id, _)| (id, d.slice(wire::MEDIA_ID_LEN..))))
}

impl Link {
    /// [`send_media`] on this link.
    pub fn send_media(&self, track_id: u32, rtp: &[u8]) -> Result<(), RelayError> {
        send_media(&self.connection, track_id, rtp)
    }

    /// [`recv_media`] on this link.
    pub async fn recv_media(&self) -> Result<Result<(u32, Bytes), WireError>, RelayError> {
        recv_media(&self.connection).await
    }
}
