//! X.509-SVIDs checked by OpenSSL (a verifier no one here wrote), JWT-SVIDs and bundles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::PublicKeyData;
use std::process::Command;
use vouch_identity::{
    JwtSvidSigner, JwtSvidValidator, SpiffeId, SvidCa, TrustDomain, bundle_jwks, cert_to_pem,
};

const NOW: u64 = 1_795_000_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn x509_svid_follows_the_standard_and_openssl_verifies_it() {
    let d = tempfile::tempdir().unwrap();
    let td = TrustDomain::parse("example.org").unwrap();
    let t = now();
    let ca = SvidCa::load_or_create(&d.path().join("ca"), &td, 86_400, t).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/db").unwrap();
    let der = ca
        .issue(&id, &leaf_key.subject_public_key_info(), 3600, t)
        .unwrap();
    let (ca_p, leaf_p) = (d.path().join("ca.pem"), d.path().join("leaf.pem"));
    std::fs::write(&ca_p, ca.cert_pem()).unwrap();
    std::fs::write(&leaf_p, cert_to_pem(&der)).unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        ca_p.to_str().unwrap(),
        leaf_p.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (_, text) = openssl(&["x509", "-in", leaf_p.to_str().unwrap(), "-noout", "-text"]);
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    for want in [
        "URI:spiffe://example.org/ns/prod/sa/db",
        "X509v3 Subject Alternative Name: critical",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "CA:FALSE",
        "TLS Web Server Authentication, TLS Web Client Authentication",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("Certificate Sign") && !text.contains("CRL Sign"),
        "{text}"
    );

    // Beyond its lifetime OpenSSL refuses it.
    let later = (t + 7200).to_string();
    let (ok, _) = openssl(&[
        "verify",
        "-attime",
        &later,
        "-CAfile",
        ca_p.to_str().unwrap(),
        leaf_p.to_str().unwrap(),
    ]);
    assert!(!ok, "an expired SVID verified");
    // Another trust domain's CA does not vouch for it.
    let other = SvidCa::generate(&TrustDomain::parse("other.org").unwrap(), 86_400, t).unwrap();
    let other_p = d.path().join("other.pem");
    std::fs::write(&other_p, other.cert_pem()).unwrap();
    let (ok, _) = openssl(&[
        "verify",
        "-CAfile",
        other_p.to_str().unwrap(),
        leaf_p.to_str().unwrap(),
    ]);
    assert!(!ok);
    // And that CA refuses to issue for this trust domain.
    assert!(
        other
            .issue(&id, &leaf_key.subject_public_key_info(), 60, t)
            .is_err()
    );

    // Reloaded from disk, the CA still issues SVIDs that chain to the same certificate.
    let again = SvidCa::load_or_create(&d.path().join("ca"), &td, 86_400, t).unwrap();
    assert_eq!(again.cert_der(), ca.cert_der());
    std::fs::write(
        &leaf_p,
        cert_to_pem(
            &again
                .issue(&id, &leaf_key.subject_public_key_info(), 60, t)
                .unwrap(),
        ),
    )
    .unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        ca_p.to_str().unwrap(),
        leaf_p.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}

#[test]
fn jwt_svids_validate_and_refusals() {
    let td = TrustDomain::parse("example.org").unwrap();
    let signer = JwtSvidSigner::generate().unwrap();
    let ca = SvidCa::generate(&td, 86_400, NOW).unwrap();
    let bundle = bundle_jwks(&[ca.cert_der()], &[signer.jwk()], 7, 300);
    assert_eq!(bundle["spiffe_sequence"], 7);
    assert_eq!(bundle["keys"][0]["use"], "x509-svid");
    assert_eq!(bundle["keys"][0]["crv"], "P-256");
    assert_eq!(bundle["keys"][0]["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(bundle["keys"][1]["use"], "jwt-svid");
    assert_eq!(bundle["keys"][1]["kid"], signer.kid());

    let v = JwtSvidValidator::from_bundle(&td, &bundle).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/web").unwrap();
    let t = signer.sign(&id, &["db".into()], 300, NOW).unwrap();
    let (got, claims) = v.validate(&t, "db", NOW + 10).unwrap();
    assert_eq!(got, id);
    assert_eq!(claims.exp, NOW + 300);

    assert!(v.validate(&t, "other-audience", NOW).is_err());
    assert!(v.validate(&t, "db", NOW + 300).is_err(), "expired");
    let other_td =
        JwtSvidValidator::from_bundle(&TrustDomain::parse("other.org").unwrap(), &bundle).unwrap();
    assert!(other_td.validate(&t, "db", NOW).is_err());
    let mut forged = t.clone().into_bytes();
    let n = forged.len();
    forged[n - 4] = if forged[n - 4] == b'A' { b'B' } else { b'A' };
    assert!(
        v.validate(std::str::from_utf8(&forged).unwrap(), "db", NOW)
            .is_err()
    );
    let stranger = JwtSvidSigner::generate().unwrap();
    let t2 = stranger.sign(&id, &["db".into()], 300, NOW).unwrap();
    assert!(v.validate(&t2, "db", NOW).is_err(), "unknown kid");
    let parts: Vec<&str> = t.split('.').collect();
    use base64::Engine as _;
    let none =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#);
    assert!(
        v.validate(&format!("{none}.{}.", parts[1]), "db", NOW)
            .is_err()
    );
    assert!(signer.sign(&id, &[], 300, NOW).is_err(), "aud is required");
}
