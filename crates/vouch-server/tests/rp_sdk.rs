//! The relying-party SDK's self-refreshing sources and middleware against the real thing: the
//! agent's Workload API on a Unix socket (short-lived SVIDs that rotate), the verifier's JWKS
//! over HTTPS on loopback (a key rotated and retired), and axum services over mTLS and HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use vouch_rp::{
    AllowedIds, Attested, JwksConfig, JwksSource, PeerSpiffeId, RequireResultLayer,
    RequireSpiffeIdLayer, RpError, SpiffeId, SpiffeTlsListener, TlsPeer, X509Source,
};
use vouch_server::unix_now;

/// One HTTP/1.1 GET over TLS with `cfg` to `addr`: the response text and the DER of the
/// server's leaf certificate, or the handshake/IO error.
async fn get_over(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    headers: &str,
) -> std::io::Result<(String, Vec<u8>)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("db.vouch.local").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok((String::from_utf8_lossy(&out).into_owned(), cert))
}

/// One TLS connection kept open for several HTTP/1.1 requests.
struct KeepAlive(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl KeepAlive {
    async fn open(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("db.vouch.local").unwrap();
        Self(
            tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .unwrap(),
        )
    }

    /// GET / on the open connection: the status line and headers, then the body by its
    /// Content-Length.
    async fn get(&mut self) -> String {
        self.0
            .write_all(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).await.unwrap();
        head + &String::from_utf8(body).unwrap()
    }
}

fn serial(der: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    c.raw_serial().to_vec()
}

/// An entry granting `id` to this test process (its uid and executable) for `ttl` seconds.
async fn entry_for_me(h: &common::Harness, workload: &str, id: &str, ttl: u64) {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let exe = vouch_evidence::sha256_file(std::path::Path::new("/proc/self/exe")).unwrap();
    let sel = [
        format!("vouch:workload:{workload}"),
        format!("unix:uid:{uid}"),
        format!("unix:sha256:{exe}"),
    ];
    let e = vouch_identity::Entry::new(
        format!("e-{}", id.rsplit('/').next().unwrap()),
        &vouch_identity::SpiffeId::parse(id).unwrap(),
        sel.iter()
            .map(|s| vouch_identity::Selector::parse(s).unwrap())
            .collect(),
        ttl,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&e).await.unwrap();
}

/// X509Source: a server and a client on one source serve and check mTLS in a few lines; the
/// SVIDs live 4 s and rotate, and new connections keep working after the first SVID expired;
/// peers with a SPIFFE ID not on the allow list are refused (by the TLS verifier and by the
/// middleware); when the node fails attestation the source drops its SVID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_rotates_svids_under_live_mtls_and_refuses_wrong_ids() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    entry_for_me(&h, "svc", "spiffe://vouch.local/db", 4).await;
    let _api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    // --- what a relying party writes ---
    let source = X509Source::connect(&sock).await.unwrap();
    let me = SpiffeId::parse("spiffe://vouch.local/db").unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|PeerSpiffeId(id): PeerSpiffeId| async move { format!("hello {id}") }),
        )
        .layer(RequireSpiffeIdLayer::new(AllowedIds::Only(vec![
            me.clone(),
        ])));
    let mut tls = source.server_config(AllowedIds::AnyInTrustDomain).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = SpiffeTlsListener::new(tcp, Arc::new(tls)).unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<TlsPeer>(),
        )
        .await
    });
    let client = Arc::new(
        source
            .client_config(AllowedIds::Only(vec![me.clone()]))
            .unwrap(),
    );
    // ---

    let first = source.svid().unwrap();
    assert_eq!(first.spiffe_id(), &me);
    let (body, cert) = get_over(addr, client.clone(), "").await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("hello spiffe://vouch.local/db"), "{body}");
    assert_eq!(serial(&cert), serial(&first.chain()[0]));
    // A connection kept open across the rotation (HTTP/1.1 keep-alive).
    let mut kept = KeepAlive::open(addr, client.clone()).await;
    assert!(kept.get().await.starts_with("HTTP/1.1 200"));

    // Wait past the first SVID's expiry: the source must have rotated, and new connections
    // must still complete with the new SVID on both sides.
    let mut updates = source.updates();
    while unix_now() <= first.not_after() + 1 {
        let _ = tokio::time::timeout(Duration::from_secs(1), updates.changed()).await;
    }
    // The connection opened under the first SVID still serves.
    assert!(kept.get().await.starts_with("HTTP/1.1 200"));
    let now_svid = source.svid().unwrap();
    assert_ne!(serial(&now_svid.chain()[0]), serial(&first.chain()[0]));
    assert!(now_svid.not_after() > first.not_after());
    let (body, cert) = get_over(addr, client.clone(), "").await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_ne!(
        serial(&cert),
        serial(&first.chain()[0]),
        "served the expired SVID"
    );

    // A client that accepts only another SPIFFE ID refuses this server.
    let other = SpiffeId::parse("spiffe://vouch.local/other").unwrap();
    let picky = Arc::new(
        source
            .client_config(AllowedIds::Only(vec![other.clone()]))
            .unwrap(),
    );
    let e = get_over(addr, picky, "").await.unwrap_err();
    assert!(e.to_string().contains("not an accepted peer"), "{e}");

    // A server that accepts only another client refuses this one in the handshake...
    let mut strict = source
        .server_config(AllowedIds::Only(vec![other.clone()]))
        .unwrap();
    strict.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let strict_addr = tcp.local_addr().unwrap();
    let listener = SpiffeTlsListener::new(tcp, Arc::new(strict)).unwrap();
    let ok = Router::new().route("/", get(|| async { "in" }));
    tokio::spawn(async move {
        axum::serve(
            listener,
            ok.into_make_service_with_connect_info::<TlsPeer>(),
        )
        .await
    });
    let refused = get_over(strict_addr, client.clone(), "").await;
    assert!(
        refused
            .as_ref()
            .map_or(true, |(b, _)| !b.contains("HTTP/1.1")),
        "{refused:?}"
    );
    // ...and the middleware refuses it after the handshake with 403.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mw_addr = tcp.local_addr().unwrap();
    let mut any = source.server_config(AllowedIds::AnyInTrustDomain).unwrap();
    any.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = SpiffeTlsListener::new(tcp, Arc::new(any)).unwrap();
    let guarded = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(RequireSpiffeIdLayer::new(AllowedIds::Only(vec![other])));
    tokio::spawn(async move {
        axum::serve(
            listener,
            guarded.into_make_service_with_connect_info::<TlsPeer>(),
        )
        .await
    });
    let (body, _) = get_over(mw_addr, client.clone(), "").await.unwrap();
    assert!(body.starts_with("HTTP/1.1 403"), "{body}");
    assert!(body.contains("not an accepted peer"), "{body}");

    // The node fails attestation: the agent ends the stream with PermissionDenied and the
    // source stops presenting the SVID.
    std::fs::write(h.path("svc.bin"), "binary of svc, tampered").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Contraindicated
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while source.svid().is_ok() && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_secs(1), updates.changed()).await;
    }
    let e = source.svid().unwrap_err();
    assert!(matches!(e, RpError::WorkloadApi(_)), "{e}");
    assert!(get_over(addr, client, "").await.is_err());
}

/// A token like `token` whose header names `kid` instead (its signature no longer matters:
/// the key lookup comes first).
fn with_kid(token: &str, kid: &str) -> String {
    let (h, rest) = token.split_once('.').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&B64.decode(h).unwrap()).unwrap();
    header["kid"] = kid.into();
    format!("{}.{rest}", B64.encode(header.to_string()))
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// JwksSource: fetched over HTTPS from the verifier; a result under a rotated key is accepted
/// by refreshing on its unknown kid; made-up kids cause at most one fetch per min_refresh;
/// once the retired key leaves the JWKS (after its grace), results it signed are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_source_follows_a_key_rotation_and_drops_a_retired_key() {
    let h = common::Harness::new(|c| {
        c.signing_alg = vouch_server::SigningAlg::ES256;
        c.retired_key_grace = 3;
    })
    .await;
    let mut agent = h.agent("svc").await;
    h.trust(&mut agent).await;
    let before = agent.attest_once().await.unwrap().result;

    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let mut cfg = JwksConfig::default();
    cfg.min_refresh = Duration::from_secs(1);
    let keys = JwksSource::builder(format!("{}/.well-known/jwks.json", h.server.base_url))
        .ca_pem(&ca)
        .config(cfg)
        .build()
        .await
        .unwrap();
    let req = common::rp_requirements();
    keys.verify(&before, &req).await.unwrap();
    assert_eq!(keys.generation(), 1);

    vouch_server::Keyring::rotate(
        &h.cfg.data_dir.join("keys"),
        vouch_server::SigningAlg::ES256,
        unix_now(),
    )
    .unwrap();
    let mut after = before.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = agent.attest_once().await.unwrap().result;
        if kid(&after) != kid(&before) {
            break;
        }
    }
    assert_ne!(kid(&after), kid(&before));
    // The source holds only the old key: the unknown kid makes it fetch once, then accept.
    let r = keys.verify(&after, &req).await.unwrap();
    assert_eq!(r.kid.as_deref(), Some(kid(&after).as_str()));
    assert_eq!(keys.generation(), 2);
    // The old key is still published (grace): its results still verify.
    keys.verify(&before, &req).await.unwrap();

    // Made-up kids: one fetch at most per min_refresh, whatever their number.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..20 {
        let e = keys
            .verify(&with_kid(&after, &format!("made-up-{i}")), &req)
            .await;
        assert!(matches!(e, Err(RpError::UnknownKey(_))), "{e:?}");
    }
    assert_eq!(
        keys.generation(),
        3,
        "more than one fetch for 20 unknown kids"
    );

    // After the grace the retired key leaves the JWKS; once the source has fetched again,
    // the old key's results are refused, the new key's still accepted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    keys.refresh().await.unwrap();
    let e = keys.verify(&before, &req).await.unwrap_err();
    assert_eq!(e, RpError::UnknownKey(kid(&before)));
    keys.verify(&after, &req).await.unwrap();
}

/// RequireResultLayer: no result → 401, a forged one (one flipped byte) → 403, a
/// contraindicated one → 403 naming the status, a good one → 200 with the attested subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_result_layer_admits_only_affirming_results() {
    let h = common::Harness::new(|_| {}).await;
    let mut agent = h.agent("svc").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap().result;
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let keys = JwksSource::builder(format!("{}/.well-known/jwks.json", h.server.base_url))
        .ca_pem(&ca)
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|Attested(r): Attested| async move {
                format!("hello {}", r.subject.clone().unwrap_or_default())
            }),
        )
        .layer(RequireResultLayer::new(
            keys.clone(),
            common::rp_requirements(),
        ));
    let alt = Router::new().route("/", get(|| async { "in" })).layer(
        RequireResultLayer::new(keys, common::rp_requirements())
            .header(axum::http::HeaderName::from_static("x-vouch-result")),
    );
    let serve = |app: Router| async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        a
    };
    let (addr, alt_addr) = (serve(app).await, serve(alt).await);
    let http = reqwest::Client::new();
    let ask = |a: std::net::SocketAddr, header: Option<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let mut r = http.get(format!("http://{a}/"));
            if let Some((k, v)) = header {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let bearer = |t: &str| Some(("authorization", format!("Bearer {t}")));

    assert_eq!(ask(addr, None).await.0, 401);
    assert_eq!(
        ask(addr, Some(("authorization", "Basic eA==".into())))
            .await
            .0,
        401
    );
    let (s, body) = ask(addr, bearer(&good)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("hello "), "{body}");

    let mut forged = good.clone().into_bytes();
    let n = forged.len();
    forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
    let (s, body) = ask(addr, bearer(&String::from_utf8(forged).unwrap())).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("signature"), "{body}");

    // The result in a header of the service's choosing.
    assert_eq!(ask(alt_addr, bearer(&good)).await.0, 401);
    assert_eq!(
        ask(alt_addr, Some(("x-vouch-result", good.clone())))
            .await
            .0,
        200
    );

    std::fs::write(h.path("svc.bin"), "binary of svc, tampered").unwrap();
    let bad = agent.attest_once().await.unwrap();
    assert_eq!(bad.status, vouch_core::ArStatus::Contraindicated);
    let (s, body) = ask(addr, bearer(&bad.result)).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("contraindicated"), "{body}");
}

/// JwksSource when the verifier goes away: the last good keys keep verifying (a failed
/// refresh changes nothing) until they are older than max_stale; then every result is refused
/// (KeysStale), and RequireResultLayer answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_source_keeps_last_good_keys_until_max_stale() {
    let h = common::Harness::new(|_| {}).await;
    let mut agent = h.agent("svc").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap().result;
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let mut cfg = JwksConfig::default();
    cfg.max_stale = Duration::from_secs(3);
    let keys = JwksSource::builder(format!("{}/.well-known/jwks.json", h.server.base_url))
        .ca_pem(&ca)
        .config(cfg)
        .build()
        .await
        .unwrap();
    let req = common::rp_requirements();
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(RequireResultLayer::new(keys.clone(), req.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let ask = || {
        let good = good.clone();
        async move {
            reqwest::Client::new()
                .get(format!("http://{addr}/"))
                .bearer_auth(good)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(ask().await, 200);

    let common::Harness { server, dir, .. } = h;
    server.shutdown().await;
    let e = keys.refresh().await.unwrap_err();
    assert!(matches!(e, RpError::Keys(_)), "{e}");
    // Still within max_stale: the last good keys verify.
    keys.verify(&good, &req).await.unwrap();
    assert_eq!(keys.generation(), 1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let e = keys.verify(&good, &req).await.unwrap_err();
    assert!(matches!(e, RpError::KeysStale { .. }), "{e}");
    assert_eq!(ask().await, 503);
    drop(dir);
}

/// JwtSource: this workload's JWT-SVID fetched from the agent, validated offline against the
/// JWT bundle the source keeps; another audience, a flipped byte and an unknown trust domain
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_fetches_and_validates_jwt_svids() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    agent.attest_once().await.unwrap();
    entry_for_me(&h, "svc", "spiffe://vouch.local/db", 600).await;
    let _api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    let jwt = vouch_rp::JwtSource::connect(&sock).await.unwrap();
    let token = jwt.fetch_svid(&["database"]).await.unwrap();
    let (id, claims) = jwt.validate(&token, "database").unwrap();
    assert_eq!(id.to_string(), "spiffe://vouch.local/db");
    assert!(claims.exp > unix_now());

    let e = jwt.validate(&token, "payments").unwrap_err();
    assert!(e.to_string().contains("audience"), "{e}");
    let mut forged = token.clone().into_bytes();
    let n = forged.len();
    forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
    let e = jwt
        .validate(&String::from_utf8(forged).unwrap(), "database")
        .unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    // The same token claiming another trust domain: no bundle for it.
    let (h64, rest) = token.split_once('.').unwrap();
    let (p64, sig) = rest.split_once('.').unwrap();
    let mut payload: serde_json::Value = serde_json::from_slice(&B64.decode(p64).unwrap()).unwrap();
    payload["sub"] = "spiffe://elsewhere.example/db".into();
    let moved = format!("{h64}.{}.{sig}", B64.encode(payload.to_string()));
    let e = jwt.validate(&moved, "database").unwrap_err();
    assert!(e.to_string().contains("no JWT bundle"), "{e}");
}
