//! `gcp_iit` on a real GCE instance identity token (testdata/cloud/gcp, see SOURCES.md): a
//! `format=full` token for instance-1 in project fair-kingdom-308514, issued 2021-03-24 for
//! the audience `https://subscription.rhsm.redhat.com:443/subscription`, with the Google
//! signing keys (JWKS) published at that time. It verifies at a time inside its hour and
//! yields its selectors; a flipped byte in the claims or the signature, a key set without
//! its key, a time after its expiry, another audience, a nonce-bound audience it was not
//! issued for and a project not allowed are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::PathBuf;
use vouch_nodeattest::{
    GcpIitAttestor, GcpIitConfig, NodeAttestError, NodeAttestation, NodeAttestor, NodeIdentity,
    gcp_audience,
};
use vouch_testkit::{read_testdata, testdata};

/// 2021-03-24 15:00 UTC: iat 14:30:23, exp 15:30:23.
const NOW: u64 = 1_616_598_000;
const AUDIENCE: &str = "https://subscription.rhsm.redhat.com:443/subscription";

fn token() -> String {
    String::from_utf8(read_testdata("cloud/gcp/gce_identity_2021.jwt")).unwrap()
}

fn config(dir: PathBuf) -> GcpIitConfig {
    GcpIitConfig {
        keys_dir: dir,
        allowed_projects: vec![],
        bind_nonce: false,
        max_clock_skew_secs: 300,
    }
}

fn attestor() -> GcpIitAttestor {
    GcpIitAttestor::from_config(config(testdata("cloud/gcp"))).unwrap()
}

fn attest(
    a: &GcpIitAttestor,
    token: &str,
    audience: &str,
    now: u64,
) -> Result<NodeIdentity, NodeAttestError> {
    a.attest(
        &NodeAttestation {
            data: token.as_bytes(),
            nonce: "nonce-1",
            audience,
        },
        now,
    )
}

#[test]
fn the_real_token_verifies_with_its_selectors() {
    let id = attest(&attestor(), &token(), AUDIENCE, NOW).unwrap();
    assert_eq!(id.key, "gcp_iit:fair-kingdom-308514:2589221140676718026");
    for s in [
        "gcp_iit:project-id:fair-kingdom-308514",
        "gcp_iit:zone:us-east1-b",
        "gcp_iit:instance-name:instance-1",
        "gcp_iit:instance-id:2589221140676718026",
        "gcp_iit:project-number:161958465613",
        "gcp_iit:sa:161958465613-compute@developer.gserviceaccount.com",
    ] {
        assert!(
            id.selectors.iter().any(|x| x == s),
            "{s} in {:?}",
            id.selectors
        );
    }
    assert_eq!(id.hostname.as_deref(), Some("instance-1"));
    assert!(
        !id.reattestable,
        "without a nonce in its audience the token is replayable"
    );
}

/// Re-encode one part of the token after changing one byte of its decoded form.
fn tamper(part: usize, at: usize) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let t = token();
    let mut parts: Vec<String> = t.trim().split('.').map(str::to_string).collect();
    let mut d = e.decode(&parts[part]).unwrap();
    d[at] ^= 0x01;
    parts[part] = e.encode(d);
    parts.join(".")
}

#[test]
fn one_flipped_byte_in_the_claims_or_the_signature_is_refused() {
    let t = token();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t.split('.').nth(1).unwrap())
        .unwrap();
    // A digit of the instance id.
    let at = claims
        .windows(19)
        .position(|w| w == b"2589221140676718026")
        .unwrap();
    let e = attest(&attestor(), &tamper(1, at + 5), AUDIENCE, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    let e = attest(&attestor(), &tamper(2, 17), AUDIENCE, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn a_key_set_without_its_key_does_not_verify_it() {
    // Google's same published set with the signing key removed (the other key kept).
    let set: serde_json::Value =
        serde_json::from_slice(&read_testdata("cloud/gcp/google_oauth2_v3_certs_2021.json"))
            .unwrap();
    let mut set = set;
    set["keys"].as_array_mut().unwrap().remove(0);
    let a = GcpIitAttestor::with_key_files(
        config(PathBuf::from("/unused")),
        vec![("keys.json".into(), serde_json::to_vec(&set).unwrap())],
    )
    .unwrap();
    let e = attest(&a, &token(), AUDIENCE, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    // The other key under the token's kid: the signature does not verify.
    set["keys"][0]["kid"] = "6a8ba5652a7044121d4fedac8f14d14c54e4895b".into();
    let a = GcpIitAttestor::with_key_files(
        config(PathBuf::from("/unused")),
        vec![("keys.json".into(), serde_json::to_vec(&set).unwrap())],
    )
    .unwrap();
    let e = attest(&a, &token(), AUDIENCE, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn an_expired_token_is_refused() {
    // exp 1616599823 + 300 s of skew.
    assert!(attest(&attestor(), &token(), AUDIENCE, 1_616_600_100).is_ok());
    let e = attest(&attestor(), &token(), AUDIENCE, 1_616_600_200).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Issued after the verification time.
    let e = attest(&attestor(), &token(), AUDIENCE, 1_616_590_000).unwrap_err();
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
}

#[test]
fn another_audience_is_refused() {
    let e = attest(&attestor(), &token(), "vouch", NOW).unwrap_err();
    assert!(e.to_string().contains("audience"), "{e}");
}

#[test]
fn with_nonce_binding_the_token_must_name_this_nonce() {
    let mut c = config(testdata("cloud/gcp"));
    c.bind_nonce = true;
    let a = GcpIitAttestor::from_config(c).unwrap();
    let e = attest(&a, &token(), AUDIENCE, NOW).unwrap_err();
    assert!(
        e.to_string().contains(&gcp_audience(AUDIENCE, "nonce-1")),
        "{e}"
    );
}

#[test]
fn a_project_not_allowed_is_refused() {
    let mut c = config(testdata("cloud/gcp"));
    c.allowed_projects = vec!["another-project".into()];
    let e = attest(
        &GcpIitAttestor::from_config(c.clone()).unwrap(),
        &token(),
        AUDIENCE,
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
    c.allowed_projects.push("fair-kingdom-308514".into());
    assert!(
        attest(
            &GcpIitAttestor::from_config(c).unwrap(),
            &token(),
            AUDIENCE,
            NOW
        )
        .is_ok()
    );
}

#[test]
fn malformed_tokens_are_refused_with_a_reason() {
    for bad in ["", "a.b", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "\u{0}"] {
        let e = attest(&attestor(), bad, AUDIENCE, NOW).unwrap_err();
        assert!(
            matches!(e, NodeAttestError::Malformed { .. }),
            "{bad:?}: {e}"
        );
    }
    assert!(serde_json::from_str::<GcpIitConfig>(r#"{"keys_dir":"/x","y":1}"#).is_err());
    let c: GcpIitConfig = serde_json::from_str(r#"{"keys_dir":"/x"}"#).unwrap();
    assert!(c.bind_nonce, "nonce binding is the default");
}

/// Every single-bit change of any decoded byte of the real token's three parts is refused:
/// none is accepted, none panics.
#[test]
fn no_single_bit_flip_anywhere_is_accepted() {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let a = attestor();
    let t = token();
    let parts: Vec<Vec<u8>> = t.trim().split('.').map(|p| e.decode(p).unwrap()).collect();
    for (k, part) in parts.iter().enumerate() {
        for i in 0..part.len() {
            for bit in [0x01u8, 0x80] {
                let mut ps = parts.clone();
                ps[k][i] ^= bit;
                let tok = ps.iter().map(|p| e.encode(p)).collect::<Vec<_>>().join(".");
                assert!(
                    attest(&a, &tok, AUDIENCE, NOW).is_err(),
                    "part {k} byte {i} bit {bit:#x} accepted"
                );
            }
        }
    }
}
