//! Hybrid post-quantum key exchange on every TLS endpoint (issue 17 item 3).
//!
//! The workspace builds rustls with `prefer-post-quantum`, so the aws-lc-rs provider offers
//! X25519MLKEM768 (ML-KEM-768 with X25519, draft-ietf-tls-ecdhe-mlkem) first. These tests make
//! real loopback handshakes and read the group each side negotiated:
//! - a default client reaching the verifier's API negotiates X25519MLKEM768;
//! - a classical-only client (X25519 alone) still connects, and gets an HTTP answer;
//! - the agent's verifier client (reqwest over rustls) offers X25519MLKEM768 first: a TLS
//!   server that accepts both sees it chosen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use rustls::NamedGroup;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client_config(ca_pem: &[u8], provider: CryptoProvider) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Connect to the verifier at `h` with `provider`, send `GET /healthz`, and return the group
/// the handshake negotiated and the HTTP status line.
async fn handshake(h: &common::Harness, provider: CryptoProvider) -> (NamedGroup, String) {
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let cfg = client_config(&ca, provider);
    let addr = h.server.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let group = conn.negotiated_key_exchange_group().unwrap().name();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    (group, text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn verifier_api_prefers_x25519mlkem768_and_still_serves_classical_clients() {
    let h = common::Harness::new(|_| {}).await;

    // The provider every Vouch endpoint uses: the hybrid group comes first.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    assert_eq!(
        provider.kx_groups.first().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768)
    );
    let (group, status) = handshake(&h, provider).await;
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // A client that knows only X25519 (an older, classical-only TLS stack) still connects.
    let classical = CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let (group, status) = handshake(&h, classical).await;
    assert_eq!(group, NamedGroup::X25519);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // A client offering the hybrid group only is served with it (no silent fallback needed).
    let pq_only = CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let (group, _) = handshake(&h, pq_only).await;
    assert_eq!(group, NamedGroup::X25519MLKEM768);
}

#[tokio::test]
async fn agent_client_offers_x25519mlkem768_first() {
    // A TLS server accepting both the hybrid and the classical groups, with a certificate for
    // 127.0.0.1 under a CA only this test holds.
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    // The server lists X25519 first, but a rustls server takes the first of the client's
    // supported groups that it supports: the negotiated group is the client's first choice.
    // Without `prefer-post-quantum` the client would list X25519 first and this would fail.
    let provider = CryptoProvider {
        kx_groups: vec![
            rustls::crypto::aws_lc_rs::kx_group::X25519,
            rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let server_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let group = tls
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name();
        let mut buf = [0u8; 4096];
        let _ = tls.read(&mut buf).await;
        let body = br#"{"error":{"kind":"internal","message":"test server"}}"#;
        let head = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(body).await.unwrap();
        tls.shutdown().await.ok();
        group
    });
    let client =
        vouch_agent::VerifierClient::new(&format!("https://{addr}"), Some(&ca_path)).unwrap();
    // The answer is an error; what matters is the handshake before it.
    let _ = client.challenge().await;
    assert_eq!(server.await.unwrap(), NamedGroup::X25519MLKEM768);
}
