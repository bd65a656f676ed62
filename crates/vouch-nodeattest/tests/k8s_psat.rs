//! `k8s_psat` on a real projected service-account token: `testdata/k8s/eks_psat_token.jwt`,
//! issued by an Amazon EKS cluster's API server (eu-west-1, 2025-11-24, with the node claims
//! of Kubernetes >= 1.30), and the real JWKS of that cluster's issuer that verifies it
//! (`testdata/k8s/eks_jwks.json`); see testdata/SOURCES.md. Its audience is
//! `sts.amazonaws.com` (it was projected for AWS IAM roles), so the cluster here is configured
//! with that audience; the refusals change one thing at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use vouch_nodeattest::k8s_psat::{K8sPsat, PsatCluster, fetch_jwks};
use vouch_nodeattest::{NodeAttestError, NodeAttestation, NodeAttestor};
use vouch_testkit::read_testdata;

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/B88E7287E54DB073AC9CDC2FD1BE0969";
const AUD: &str = "sts.amazonaws.com";
const SA: &str = "hakawai:hakawai-litellm-proxy";
/// The token's `iat` and `nbf`; `exp` is a day later.
const IAT: u64 = 1_763_969_878;
const EXP: u64 = 1_764_056_278;

fn token() -> Vec<u8> {
    read_testdata("k8s/eks_psat_token.jwt")
}

fn jwks() -> Vec<u8> {
    read_testdata("k8s/eks_jwks.json")
}

fn cluster(issuer: &str, aud: &str, allow: &[&str], jwks: &[u8]) -> PsatCluster {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    PsatCluster::new("eks-dev", issuer, aud, &allow, jwks).unwrap()
}

fn attestor() -> K8sPsat {
    K8sPsat::new(vec![cluster(ISSUER, AUD, &[SA], &jwks())]).unwrap()
}

fn attest(
    a: &K8sPsat,
    data: &[u8],
    now: u64,
) -> Result<vouch_nodeattest::NodeIdentity, NodeAttestError> {
    a.attest(
        &NodeAttestation {
            data,
            nonce: "n",
            audience: "vouch",
        },
        now,
    )
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn parts(t: &[u8]) -> (String, String, String) {
    let s = std::str::from_utf8(t).unwrap().trim();
    let v: Vec<&str> = s.split('.').collect();
    (v[0].into(), v[1].into(), v[2].into())
}

#[test]
fn the_real_token_verifies_with_its_clusters_real_key() {
    let id = attest(&attestor(), &token(), IAT + 3600).unwrap();
    assert_eq!(
        id.key,
        "k8s_psat:eks-dev:ceb6b98b-f46f-448d-8a2d-4e036c36a243"
    );
    assert_eq!(
        id.selectors,
        [
            "k8s_psat:cluster:eks-dev",
            "k8s_psat:agent_ns:hakawai",
            "k8s_psat:agent_sa:hakawai-litellm-proxy",
            "k8s_psat:agent_pod_name:hakawai-litellm-proxy-57456bb9cb-bwzxh",
            "k8s_psat:agent_pod_uid:989f1a6e-8af7-4740-93d8-206f8daf9a84",
            "k8s_psat:agent_node_name:ip-10-15-179-190.eu-west-1.compute.internal",
            "k8s_psat:agent_node_uid:ceb6b98b-f46f-448d-8a2d-4e036c36a243",
        ]
    );
    assert_eq!(
        id.hostname.as_deref(),
        Some("ip-10-15-179-190.eu-west-1.compute.internal")
    );
    assert!(id.reattestable);
    // A trailing newline (as a token file may end) is not part of the token.
    let mut nl = token();
    nl.push(b'\n');
    assert_eq!(attest(&attestor(), &nl, IAT).unwrap(), id);
}

#[test]
fn every_one_byte_change_to_the_token_is_refused() {
    let a = attestor();
    let t = token();
    let t = std::str::from_utf8(&t).unwrap().trim().as_bytes().to_vec();
    for i in 0..t.len() {
        let mut m = t.clone();
        // Another base64url character (or, for a dot, a character): still token-shaped.
        m[i] = match m[i] {
            b'A' => b'B',
            b'.' => b'A',
            _ => b'A',
        };
        let r = attest(&a, &m, IAT + 60);
        assert!(r.is_err(), "byte {i} changed and still accepted");
    }
}

#[test]
fn a_changed_claim_under_the_real_signature_is_a_signature_failure() {
    let (h, p, s) = parts(&token());
    let claims = String::from_utf8(unb64(&p)).unwrap();
    // One byte of the signed claims: another namespace, another node, another audience.
    for (from, to) in [
        ("\"hakawai\"", "\"hakawaj\""),
        ("ceb6b98b", "ceb6b98c"),
        ("sts.amazonaws.com", "sts.amazonaws.con"),
    ] {
        let forged = format!("{h}.{}.{s}", b64(claims.replacen(from, to, 1).as_bytes()));
        match attest(&attestor(), forged.as_bytes(), IAT) {
            Err(NodeAttestError::Signature { why, .. }) => assert!(why.contains("does not verify")),
            other => panic!("{from} -> {to}: {other:?}"),
        }
    }
    // The header's key id changed: no such key.
    let header = String::from_utf8(unb64(&h))
        .unwrap()
        .replace("e3b1d1", "e3b1d2");
    let forged = format!("{}.{p}.{s}", b64(header.as_bytes()));
    match attest(&attestor(), forged.as_bytes(), IAT) {
        Err(NodeAttestError::Signature { why, .. }) => {
            assert!(why.contains("no RS256 key"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // The signature's last byte.
    let mut sig = unb64(&s);
    *sig.last_mut().unwrap() ^= 1;
    let forged = format!("{h}.{p}.{}", b64(&sig));
    assert!(matches!(
        attest(&attestor(), forged.as_bytes(), IAT),
        Err(NodeAttestError::Signature { .. })
    ));
}

#[test]
fn another_audience_is_refused() {
    let a = K8sPsat::new(vec![cluster(ISSUER, "vouch", &[SA], &jwks())]).unwrap();
    match attest(&a, &token(), IAT) {
        Err(NodeAttestError::Refused { why, .. }) => {
            assert!(why.contains("audience \"vouch\""), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_validity_window_is_enforced_with_the_skew() {
    let a = attestor();
    assert!(attest(&a, &token(), EXP + 59).is_ok());
    match attest(&a, &token(), EXP + 60) {
        Err(NodeAttestError::Refused { why, .. }) => assert!(why.contains("expired"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(attest(&a, &token(), IAT - 60).is_ok());
    match attest(&a, &token(), IAT - 61) {
        Err(NodeAttestError::Refused { why, .. }) => {
            assert!(why.contains("not valid before"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // No skew: expired at exp itself.
    let strict = attestor().with_skew(0).unwrap();
    assert!(attest(&strict, &token(), EXP - 1).is_ok());
    assert!(attest(&strict, &token(), EXP).is_err());
    assert!(attestor().with_skew(601).is_err());
}

#[test]
fn another_issuer_is_refused() {
    let a = K8sPsat::new(vec![cluster(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/00000000000000000000000000000000",
        AUD,
        &[SA],
        &jwks(),
    )])
    .unwrap();
    match attest(&a, &token(), IAT) {
        Err(NodeAttestError::Refused { why, .. }) => {
            assert!(why.contains("not a configured cluster"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_service_account_not_on_the_allow_list_is_refused() {
    for allow in [&["vouch:vouch-agent"][..], &[][..], &["hakawai:other"][..]] {
        let a = K8sPsat::new(vec![cluster(ISSUER, AUD, allow, &jwks())]).unwrap();
        match attest(&a, &token(), IAT) {
            Err(NodeAttestError::Refused { why, .. }) => {
                assert!(
                    why.contains("hakawai:hakawai-litellm-proxy is not allowed"),
                    "{why}"
                )
            }
            other => panic!("{allow:?}: {other:?}"),
        }
    }
}

/// The RSA public key that verifies the token, as the bytes an HMAC confusion attack would use
/// as the shared secret (the JWK's modulus, and the JWK JSON itself).
fn public_key_secrets() -> Vec<Vec<u8>> {
    let set: serde_json::Value = serde_json::from_slice(&jwks()).unwrap();
    let k = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "e3b1d185e0d794058a6346c32b2575ac0efb622e")
        .unwrap();
    vec![
        unb64(k["n"].as_str().unwrap()),
        serde_json::to_vec(k).unwrap(),
        jwks(),
    ]
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    use hmac::Mac as _;
    let (h, p, _) = parts(&token());
    let header = String::from_utf8(unb64(&h)).unwrap();
    // alg none, with and without a signature part.
    let none = b64(header.replace("RS256", "none").as_bytes());
    for t in [
        format!("{none}.{p}."),
        format!("{none}.{p}"),
        format!("{none}.{p}.AAAA"),
    ] {
        assert!(attest(&attestor(), t.as_bytes(), IAT).is_err(), "{t}");
    }
    // HS256 keyed with the issuer's public key: the signature is valid HMAC, never accepted.
    for alg in ["HS256", "HS384", "HS512"] {
        let hh = b64(header.replace("RS256", alg).as_bytes());
        for secret in public_key_secrets() {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(format!("{hh}.{p}").as_bytes());
            let t = format!("{hh}.{p}.{}", b64(&mac.finalize().into_bytes()));
            match attest(&attestor(), t.as_bytes(), IAT) {
                Err(NodeAttestError::Signature { why, .. }) => {
                    assert!(why.contains("not accepted"), "{why}")
                }
                other => panic!("{alg}: {other:?}"),
            }
        }
    }
    // The RSA signature presented as ES256 or PS256.
    let (_, _, s) = parts(&token());
    for alg in ["ES256", "PS256", "RS512"] {
        let hh = b64(header.replace("RS256", alg).as_bytes());
        assert!(matches!(
            attest(&attestor(), format!("{hh}.{p}.{s}").as_bytes(), IAT),
            Err(NodeAttestError::Signature { .. })
        ));
    }
}

#[test]
fn unusable_key_sets_and_cluster_lists_are_configuration_errors() {
    // The set without the token's key: the token no longer verifies.
    let mut set: serde_json::Value = serde_json::from_slice(&jwks()).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "e3b1d185e0d794058a6346c32b2575ac0efb622e");
    let a = K8sPsat::new(vec![cluster(
        ISSUER,
        AUD,
        &[SA],
        &serde_json::to_vec(&set).unwrap(),
    )])
    .unwrap();
    assert!(matches!(
        attest(&a, &token(), IAT),
        Err(NodeAttestError::Signature { .. })
    ));
    // Only a symmetric key, or a short RSA key: nothing usable.
    for bad in [
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#.to_string(),
        r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#.to_string(),
        r#"{"keys":[]}"#.to_string(),
        "not json".to_string(),
    ] {
        let r = PsatCluster::new("c", ISSUER, AUD, &[], bad.as_bytes());
        assert!(matches!(r, Err(NodeAttestError::Config { .. })), "{bad}");
    }
    // Names and issuers unique; allow-list entries namespace:name.
    let c = cluster(ISSUER, AUD, &[SA], &jwks());
    assert!(K8sPsat::new(vec![c.clone(), c]).is_err());
    assert!(K8sPsat::new(vec![]).is_err());
    assert!(PsatCluster::new("c", ISSUER, AUD, &["no-namespace".into()], &jwks()).is_err());
    assert!(PsatCluster::new("a:b", ISSUER, AUD, &[], &jwks()).is_err());
}

#[test]
fn garbage_is_malformed_never_a_panic() {
    let a = attestor();
    for g in [
        &b""[..],
        b"a.b",
        b"a.b.c.d",
        b"\xff\xfe.x.y",
        b"..",
        b"eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        &[b'a'; 70_000][..],
    ] {
        assert!(attest(&a, g, IAT).is_err());
    }
}

#[tokio::test]
async fn the_real_jwks_is_fetched_by_oidc_discovery_over_https() {
    // The discovery document is built here (its issuer is the loopback server); the JWKS it
    // points at is the EKS cluster's real one, served unchanged.
    let fetched = serve_discovery_result(jwks(), None).await.0.unwrap();
    assert_eq!(fetched, jwks());
    let a = K8sPsat::new(vec![cluster(ISSUER, AUD, &[SA], &fetched)]).unwrap();
    assert!(attest(&a, &token(), IAT).is_ok());

    // A document naming another issuer is refused.
    let (r, _) = serve_discovery_result(jwks(), Some(ISSUER)).await;
    assert!(
        matches!(r, Err(NodeAttestError::Config { ref why, .. }) if why.contains("names issuer")),
        "{r:?}"
    );
    // Without the server's CA, its certificate is not trusted.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let _ca = https_on(l, HashMap::new()).await;
    let r = fetch_jwks(&format!("https://127.0.0.1:{port}"), None).await;
    assert!(matches!(r, Err(NodeAttestError::Config { .. })), "{r:?}");
    // Plain http is refused before any request.
    assert!(fetch_jwks("http://127.0.0.1:1", None).await.is_err());
    // An oversized JWKS is refused.
    let (r, _) = serve_discovery_result(vec![b' '; 300 * 1024], None).await;
    assert!(
        matches!(r, Err(NodeAttestError::Config { ref why, .. }) if why.contains("more than")),
        "{r:?}"
    );
    // A JWKS with no usable key is refused.
    let (r, _) = serve_discovery_result(br#"{"keys":[]}"#.to_vec(), None).await;
    assert!(r.is_err());
}

/// Serve `jwks` behind a discovery document naming the server itself as issuer, and fetch it.
async fn serve_discovery_result(
    jwks: Vec<u8>,
    names: Option<&str>,
) -> (Result<Vec<u8>, NodeAttestError>, String) {
    // The port is chosen first so the document can name it.
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_l.local_addr().unwrap().port();
    let issuer = format!("https://127.0.0.1:{port}");
    let mut routes = HashMap::new();
    routes.insert("/keys".to_string(), jwks);
    routes.insert(
        "/.well-known/openid-configuration".to_string(),
        serde_json::to_vec(&serde_json::json!({
            "issuer": names.unwrap_or(&issuer),
            "jwks_uri": format!("{issuer}/keys"),
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .unwrap(),
    );
    let ca = https_on(std_l, routes).await;
    (fetch_jwks(&issuer, Some(&ca)).await, issuer)
}

/// A loopback HTTPS server on `l` answering fixed bodies by path, with a fresh self-signed
/// certificate for 127.0.0.1, which it answers (PEM).
async fn https_on(l: std::net::TcpListener, routes: HashMap<String, Vec<u8>>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    l.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(l).unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let routes = routes.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let (status, body) = match routes.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", Vec::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    ck.cert.pem().into_bytes()
}

#[test]
fn the_attestor_is_built_from_the_verifiers_settings() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("eks.jwks.json");
    std::fs::write(&jwks_path, jwks()).unwrap();
    let settings = serde_json::json!({
        "clusters": [{
            "name": "eks-dev",
            "issuer": ISSUER,
            "audience": AUD,
            "jwks": jwks_path,
            "service_account_allow_list": [SA],
        }],
        "max_clock_skew_secs": 0,
    });
    let a = K8sPsat::from_settings(&settings).unwrap();
    assert!(attest(&a, &token(), EXP - 1).is_ok());
    // The skew configured (0), not the default.
    assert!(attest(&a, &token(), EXP).is_err());
    // The audience defaults to `vouch`: the real token (for sts.amazonaws.com) is refused.
    let mut s = settings.clone();
    s["clusters"][0].as_object_mut().unwrap().remove("audience");
    let a = K8sPsat::from_settings(&s).unwrap();
    assert!(matches!(
        attest(&a, &token(), IAT),
        Err(NodeAttestError::Refused { .. })
    ));
    // Unknown keys, a missing JWKS file, a skew over 600: configuration errors.
    for bad in [
        serde_json::json!({"clusters": [], "skew": 5}),
        serde_json::json!({"clusters": []}),
        serde_json::json!({"clusters": [{"name": "c", "issuer": ISSUER, "jwks": "/nonexistent", "service_account_allow_list": []}]}),
        {
            let mut s = settings.clone();
            s["max_clock_skew_secs"] = 601.into();
            s
        },
    ] {
        assert!(
            matches!(
                K8sPsat::from_settings(&bad),
                Err(NodeAttestError::Config { .. })
            ),
            "{bad}"
        );
    }
}

/// ES256 (the algorithm API servers sign with when given a P-256 service-account key). No
/// real ES256 projected token with its key was found in public test data, so this one is
/// **minted here**: a fresh P-256 key, and the real EKS token's claims re-signed with it,
/// audience `vouch`. It shows the ES256 path only; the real-token tests above are RS256.
#[test]
fn an_es256_token_minted_here_verifies_and_is_refused_when_changed() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65);
    let set = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "minted-p256",
        "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
    }]});
    let (_, p, _) = parts(&token());
    let mut claims: serde_json::Value = serde_json::from_slice(&unb64(&p)).unwrap();
    claims["aud"] = serde_json::json!(["vouch"]);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("minted-p256".into());
    let t = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .unwrap();
    let a = K8sPsat::new(vec![cluster(
        ISSUER,
        "vouch",
        &[SA],
        &serde_json::to_vec(&set).unwrap(),
    )])
    .unwrap();
    let id = attest(&a, t.as_bytes(), IAT).unwrap();
    assert_eq!(
        id.key,
        "k8s_psat:eks-dev:ceb6b98b-f46f-448d-8a2d-4e036c36a243"
    );
    // One byte of the signature; the same signature labelled RS256; another kid.
    let (h, p, s) = parts(t.as_bytes());
    let mut sig = unb64(&s);
    sig[10] ^= 1;
    assert!(matches!(
        attest(&a, format!("{h}.{p}.{}", b64(&sig)).as_bytes(), IAT),
        Err(NodeAttestError::Signature { .. })
    ));
    let hdr = String::from_utf8(unb64(&h)).unwrap();
    for forged in [
        hdr.replace("ES256", "RS256"),
        hdr.replace("minted-p256", "other"),
    ] {
        assert!(matches!(
            attest(
                &a,
                format!("{}.{p}.{s}", b64(forged.as_bytes())).as_bytes(),
                IAT
            ),
            Err(NodeAttestError::Signature { .. })
        ));
    }
    // The real RS256 token does not verify with the P-256 key set.
    assert!(attest(&a, &token(), IAT).is_err());
}
