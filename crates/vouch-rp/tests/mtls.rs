//! mTLS between two workloads over real TLS on loopback, peers accepted by SPIFFE ID and trust
//! bundle only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::PublicKeyData;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vouch_identity::{SpiffeId, SvidCa, TrustDomain};
use vouch_rp::{AllowedIds, SpiffeVerifier, svid_spiffe_id};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Svid {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn svid(ca: &SvidCa, id: &str, issued_at: u64, ttl: u64) -> Svid {
    let k = rcgen::KeyPair::generate().unwrap();
    let der = ca
        .issue(
            &SpiffeId::parse(id).unwrap(),
            &k.subject_public_key_info(),
            ttl,
            issued_at,
        )
        .unwrap();
    Svid {
        cert: CertificateDer::from(der),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der())),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Run one handshake; Ok(the client ID the server saw) or the error.
async fn handshake(
    server: &Svid,
    server_accepts: Arc<SpiffeVerifier>,
    client: Option<&Svid>,
    client_accepts: Arc<SpiffeVerifier>,
) -> Result<String, String> {
    let scfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(server_accepts)
        .with_single_cert(vec![server.cert.clone()], server.key.clone_key())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(client_accepts);
    let ccfg = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert.clone()], c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(scfg));
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut b = [0u8; 4];
        tls.read_exact(&mut b)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok::<_, String>(svid_spiffe_id(&peer).unwrap().to_string())
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ccfg));
    let client_side = async {
        let mut tls = connector
            .connect(ServerName::try_from("db.invalid").unwrap(), tcp)
            .await
            .map_err(|e| format!("client: {e}"))?;
        tls.write_all(b"ping")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut b = [0u8; 4];
        tls.read_exact(&mut b)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        Ok::<_, String>(())
    };
    let c = client_side.await;
    let s = srv.await.unwrap();
    c?;
    s
}

#[tokio::test]
async fn mtls_by_spiffe_id() {
    let td = TrustDomain::parse("example.org").unwrap();
    let t = now();
    let ca = SvidCa::generate(&td, 86_400, t).unwrap();
    let bundle = vec![ca.cert_der().to_vec()];
    let db = svid(&ca, "spiffe://example.org/db", t, 3600);
    let app = svid(&ca, "spiffe://example.org/app", t, 3600);
    let only = |id: &str| {
        SpiffeVerifier::new(
            &td,
            &bundle,
            AllowedIds::Only(vec![SpiffeId::parse(id).unwrap()]),
        )
        .unwrap()
    };

    let seen = handshake(
        &db,
        only("spiffe://example.org/app"),
        Some(&app),
        only("spiffe://example.org/db"),
    )
    .await
    .unwrap();
    assert_eq!(seen, "spiffe://example.org/app");

    // The client expects another server identity.
    let e = handshake(
        &db,
        only("spiffe://example.org/app"),
        Some(&app),
        only("spiffe://example.org/billing"),
    )
    .await
    .unwrap_err();
    assert!(e.contains("not an accepted peer"), "{e}");

    // The server does not accept this client's identity.
    assert!(
        handshake(
            &db,
            only("spiffe://example.org/billing"),
            Some(&app),
            only("spiffe://example.org/db")
        )
        .await
        .is_err()
    );

    // No client certificate at all.
    assert!(
        handshake(
            &db,
            only("spiffe://example.org/app"),
            None,
            only("spiffe://example.org/db")
        )
        .await
        .is_err()
    );

    // An expired client SVID.
    let old = svid(&ca, "spiffe://example.org/app", t - 7200, 3600);
    assert!(
        handshake(
            &db,
            only("spiffe://example.org/app"),
            Some(&old),
            only("spiffe://example.org/db")
        )
        .await
        .is_err()
    );

    // A server SVID from another trust domain's CA, even with an accepted-looking path.
    let other_td = TrustDomain::parse("evil.org").unwrap();
    let evil_ca = SvidCa::generate(&other_td, 86_400, t).unwrap();
    let evil = svid(&evil_ca, "spiffe://evil.org/db", t, 3600);
    let e = handshake(
        &evil,
        only("spiffe://example.org/app"),
        Some(&app),
        only("spiffe://example.org/db"),
    )
    .await
    .unwrap_err();
    assert!(e.contains("does not chain"), "{e}");
    // Even trusting the evil CA, the trust domain must match.
    let lenient = SpiffeVerifier::new(
        &td,
        &[evil_ca.cert_der().to_vec()],
        AllowedIds::AnyInTrustDomain,
    )
    .unwrap();
    let e = handshake(&evil, only("spiffe://example.org/app"), Some(&app), lenient)
        .await
        .unwrap_err();
    assert!(e.contains("not in trust domain"), "{e}");
}
