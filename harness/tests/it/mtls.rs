//! Internal gRPC is mutual TLS from the cluster CA: a node refuses a client without a
//! certificate, or with one from another CA, and serves one from the cluster CA.
use std::time::Duration;

use proto::v1::CloseMeetingRequest;
use proto::v1::media_node_control_client::MediaNodeControlClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::spec;

async fn close_meeting(port: u16, tls: ClientTlsConfig) -> Result<(), String> {
    let ep = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(3))
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    let ch = ep.connect().await.map_err(|e| format!("connect: {e}"))?;
    let req = CloseMeetingRequest {
        meeting_id: "abc-defg-hij".into(),
        reason: "test".into(),
    };
    MediaNodeControlClient::new(ch)
        .close_meeting(req)
        .await
        .map(|_| ())
        .map_err(|s| s.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_control_requires_a_client_certificate_from_the_cluster_ca() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let port = c.media[0].grpc;
    let ca = Certificate::from_pem(std::fs::read(c.pki.ca_file()).unwrap());
    let (cert, key) = c.pki.files("controller-1");
    let ours = Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());

    // Another CA's certificate, with the same names.
    let other_dir = tempfile::tempdir().unwrap();
    let other = harness::Pki::generate(other_dir.path(), &["controller-1".into()]).unwrap();
    let (ocert, okey) = other.files("controller-1");
    let theirs = Identity::from_pem(std::fs::read(ocert).unwrap(), std::fs::read(okey).unwrap());

    let no_cert = close_meeting(port, ClientTlsConfig::new().ca_certificate(ca.clone())).await;
    assert!(
        no_cert.is_err(),
        "a client without a certificate was served"
    );
    let foreign = close_meeting(
        port,
        ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .identity(theirs),
    )
    .await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was accepted"
    );
    let cluster = close_meeting(
        port,
        ClientTlsConfig::new().ca_certificate(ca).identity(ours),
    )
    .await;
    assert_eq!(cluster, Ok(()), "a cluster certificate must be served");

    // Plaintext to the TLS port fails too.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(3));
    let plain = match plain.connect().await {
        Ok(ch) => MediaNodeControlClient::new(ch)
            .close_meeting(CloseMeetingRequest {
                meeting_id: "abc-defg-hij".into(),
                reason: "x".into(),
            })
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain, "plaintext gRPC was served");
}
