//! Relying-party checks on real and tampered results.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use vouch_rp::{ArStatus, Audience, Requirements, ResultVerifier, RpError, TrustClaim, TrustTier};

fn veraison() -> (String, Vec<u8>) {
    let jwt = String::from_utf8(vouch_testkit::read_testdata("ear/veraison_ear.jwt")).unwrap();
    let pem = vouch_testkit::read_testdata("ear/veraison_ear_pkey.pem");
    (jwt.trim().to_string(), pem)
}

fn lenient() -> Requirements {
    // The Veraison sample has no exp (it is a long-lived example) and names no audience.
    Requirements {
        require_exp: false,
        audience: Audience::Unchecked,
        ..Requirements::default()
    }
}

/// What the relying party of these tests, the database `db`, requires by default.
fn db() -> Requirements {
    Requirements::for_audience("db")
}

#[test]
fn veraison_ear_verifies_with_its_key() {
    let (jwt, pem) = veraison();
    let v = ResultVerifier::from_public_key_pem(&pem, Algorithm::ES256).unwrap();
    let r = v.verify(&jwt, &lenient()).unwrap();
    assert_eq!(r.status, ArStatus::Affirming);
    let sub = &r.ear.submods["PARSEC_TPM"];
    assert_eq!(sub.trust_vector.get(TrustClaim::Hardware), 2);
    assert_eq!(
        sub.policy_id.as_deref(),
        Some("https://veraison.example/policy/1/60a0068d")
    );
    assert_eq!(r.ear.iat, 1_666_529_184);
    assert!(sub.extensions.contains_key("ear.veraison.key-attestation"));
    // Requiring hardware affirmation passes too; requiring a claim it does not make fails.
    let mut req = lenient();
    req.tiers.insert(TrustClaim::Hardware, TrustTier::Affirming);
    v.verify(&jwt, &req).unwrap();
    req.tiers
        .insert(TrustClaim::Configuration, TrustTier::Affirming);
    assert!(matches!(v.verify(&jwt, &req), Err(RpError::Tier { .. })));
}

#[test]
fn required_submodules_and_evidence_kinds() {
    let (jwt, pem) = veraison();
    let v = ResultVerifier::from_public_key_pem(&pem, Algorithm::ES256).unwrap();
    let mut req = lenient();
    req.submods = vec!["PARSEC_TPM".into()];
    v.verify(&jwt, &req).unwrap();
    req.submods.push("sev-snp".into());
    assert_eq!(
        v.verify(&jwt, &req),
        Err(RpError::Submodule("sev-snp".into()))
    );
    // Veraison's result names no Vouch evidence kind: accepted only when any kind is.
    let mut req = lenient();
    req.evidence_kinds = vec!["composite".into()];
    assert_eq!(
        v.verify(&jwt, &req),
        Err(RpError::EvidenceKind("none".into()))
    );
    // A Vouch result names it on its workload submodule.
    let k = Signer::new("k1");
    let rp = ResultVerifier::from_jwks_json(&k.jwks()).unwrap();
    let mut c = claims("affirming", now() + 60);
    c["submods"]["workload"]["vouch.evidence-kind"] = json!("tee");
    let t = k.token(&c);
    req.evidence_kinds = vec!["tee".into(), "composite".into()];
    rp.verify(&t, &req).unwrap();
    req.evidence_kinds = vec!["composite".into()];
    assert_eq!(
        rp.verify(&t, &req),
        Err(RpError::EvidenceKind("tee".into()))
    );
}

#[test]
fn veraison_ear_with_a_flipped_byte_is_refused() {
    let (jwt, pem) = veraison();
    let v = ResultVerifier::from_public_key_pem(&pem, Algorithm::ES256).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut body = B64.decode(parts[1]).unwrap();
    let i = body.iter().position(|b| *b == b'2').unwrap();
    body[i] = b'3';
    let forged = format!("{}.{}.{}", parts[0], B64.encode(&body), parts[2]);
    assert_eq!(v.verify(&forged, &lenient()), Err(RpError::Signature));
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig));
    assert_eq!(v.verify(&forged, &lenient()), Err(RpError::Signature));
}

#[test]
fn veraison_ear_under_another_key_is_refused() {
    let (jwt, _) = veraison();
    let other = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcjSp8/MWM3gy8TugWO1TpQSj/vIk\nsLpC+g8l5S3lpGb7PWWGoCAjEP8/A59VZwLXgwoZzN0WxuBPjpaWiWsfCQ==\n-----END PUBLIC KEY-----\n";
    let v = ResultVerifier::from_public_key_pem(other, Algorithm::ES256).unwrap();
    assert_eq!(v.verify(&jwt, &lenient()), Err(RpError::Signature));
}

struct Signer {
    pair: Ed25519KeyPair,
    kid: String,
}

impl Signer {
    fn new(kid: &str) -> Self {
        Self {
            pair: Ed25519KeyPair::generate().unwrap(),
            kid: kid.into(),
        }
    }

    fn jwks(&self) -> String {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": self.kid,
            "x": B64.encode(self.pair.public_key().as_ref())}]})
        .to_string()
    }

    fn sign(&self, header: Value, claims: &Value) -> String {
        let h = B64.encode(header.to_string());
        let c = B64.encode(claims.to_string());
        let input = format!("{h}.{c}");
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn token(&self, claims: &Value) -> String {
        self.sign(
            json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(status: &str, exp: u64) -> Value {
    json!({
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iat": now(), "exp": exp, "sub": "node/app", "eat_nonce": "n1", "aud": "db",
        "ear.verifier-id": {"build": "t", "developer": "t"},
        "submods": {"workload": {"ear.status": status,
            "ear.trustworthiness-vector": {"instance-identity": 2, "executables": 2, "hardware": 0}}}
    })
}

#[test]
fn affirming_result_passes_and_checks_audience_and_nonce() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let t = s.token(&claims("affirming", now() + 60));
    let r = v.verify(&t, &db()).unwrap();
    assert_eq!(r.subject.as_deref(), Some("node/app"));
    let mut req = Requirements {
        nonce: Some("n1".into()),
        ..db()
    };
    v.verify(&t, &req).unwrap();
    req.audience = Audience::Required("other".into());
    assert_eq!(v.verify(&t, &req), Err(RpError::Audience("other".into())));
    req.audience = Audience::Required("db".into());
    req.nonce = Some("n2".into());
    assert_eq!(v.verify(&t, &req), Err(RpError::Nonce));
}

/// Issue 12: a relying party cannot forget the audience. Requirements that name none refuse
/// every result, a well-signed affirming one included, and say how to name one; not checking
/// the audience is an explicit choice.
#[test]
fn issue_12_requirements_without_an_audience_refuse_every_result() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let t = s.token(&claims("affirming", now() + 60));
    let e = v.verify(&t, &Requirements::default()).unwrap_err();
    assert_eq!(e, RpError::NoAudience);
    assert!(e.to_string().contains("Requirements::for_audience"), "{e}");
    // An empty name is no audience either.
    assert_eq!(
        v.verify(&t, &Requirements::for_audience("")),
        Err(RpError::NoAudience)
    );
    // Refused before the token is read: a configuration error, whatever is presented.
    assert_eq!(
        v.verify("a.b.c", &Requirements::default()),
        Err(RpError::NoAudience)
    );
    let inspect = Requirements {
        audience: Audience::Unchecked,
        ..Requirements::default()
    };
    v.verify(&t, &inspect).unwrap();
}

/// Issue 12: a result obtained for one relying party is refused by another, and a result
/// requested with no audience (it used to pass any audience check: `aud` was validated only
/// when present) is refused by every relying party that names itself.
#[test]
fn issue_12_a_result_for_another_audience_or_for_none_is_refused() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let for_db = s.token(&claims("affirming", now() + 60));
    v.verify(&for_db, &db()).unwrap();
    assert_eq!(
        v.verify(&for_db, &Requirements::for_audience("cache")),
        Err(RpError::Audience("cache".into()))
    );
    let mut c = claims("affirming", now() + 60);
    c.as_object_mut().unwrap().remove("aud");
    let for_nobody = s.token(&c);
    let e = v.verify(&for_nobody, &db()).unwrap_err();
    assert_eq!(e, RpError::Audience("db".into()));
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn expired_result_is_refused() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let t = s.token(&claims("affirming", now() - 60));
    assert_eq!(v.verify(&t, &db()), Err(RpError::Expired));
    let mut c = claims("affirming", now() + 60);
    c.as_object_mut().unwrap().remove("exp");
    let t = s.token(&c);
    assert!(matches!(v.verify(&t, &db()), Err(RpError::Malformed(_))));
}

#[test]
fn alg_none_and_alg_confusion_are_refused() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let c = claims("affirming", now() + 60);
    let h = B64.encode(json!({"alg": "none", "kid": "k1"}).to_string());
    let unsigned = format!("{h}.{}.", B64.encode(c.to_string()));
    assert_eq!(
        v.verify(&unsigned, &db()),
        Err(RpError::Algorithm("none".into()))
    );
    let hs = s.sign(json!({"alg": "HS256", "kid": "k1"}), &c);
    assert_eq!(
        v.verify(&hs, &db()),
        Err(RpError::Algorithm("HS256".into()))
    );
    let es = s.sign(json!({"alg": "ES256", "kid": "k1"}), &c);
    assert!(matches!(v.verify(&es, &db()), Err(RpError::Algorithm(_))));
}

#[test]
fn wrong_key_and_unknown_kid_are_refused() {
    let s = Signer::new("k1");
    let impostor = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let t = impostor.token(&claims("affirming", now() + 60));
    assert_eq!(v.verify(&t, &db()), Err(RpError::Signature));
    let stranger = Signer::new("k9");
    let t = stranger.token(&claims("affirming", now() + 60));
    assert_eq!(v.verify(&t, &db()), Err(RpError::UnknownKey("k9".into())));
}

#[test]
fn status_and_tiers_are_enforced() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let t = s.token(&claims("contraindicated", now() + 60));
    assert_eq!(
        v.verify(&t, &db()),
        Err(RpError::Status("contraindicated".into()))
    );
    let t = s.token(&claims("warning", now() + 60));
    assert!(v.verify(&t, &db()).is_err());
    let req = Requirements {
        accept_warning: true,
        ..db()
    };
    v.verify(&t, &req).unwrap();
    let t = s.token(&claims("affirming", now() + 60));
    let mut req = db();
    req.tiers.insert(TrustClaim::Hardware, TrustTier::Affirming);
    assert!(matches!(v.verify(&t, &req), Err(RpError::Tier { .. })));
}

/// Issue 12: a required tier is met by AR4SI's tier of the value, negative codes included:
/// -32 is affirming (it was read as a warning, like 32), -96 a warning (it was read as
/// contraindicated, like 96), and -1..=1 is no claim.
#[test]
fn negative_trust_values_meet_requirements_by_their_ar4si_tier() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    let with_hardware = |value: i8| {
        let mut c = claims("affirming", now() + 60);
        c["submods"]["workload"]["ear.trustworthiness-vector"]["hardware"] = json!(value);
        s.token(&c)
    };
    let mut affirming = db();
    affirming
        .tiers
        .insert(TrustClaim::Hardware, TrustTier::Affirming);
    let mut warning = db();
    warning
        .tiers
        .insert(TrustClaim::Hardware, TrustTier::Warning);
    for value in [-2, -32] {
        v.verify(&with_hardware(value), &affirming).unwrap();
    }
    for value in [-33, -96] {
        let t = with_hardware(value);
        assert!(matches!(
            v.verify(&t, &affirming),
            Err(RpError::Tier { ref tier, .. }) if tier == "warning"
        ));
        v.verify(&t, &warning).unwrap();
    }
    for value in [-97, -128] {
        assert!(matches!(
            v.verify(&with_hardware(value), &warning),
            Err(RpError::Tier { ref tier, .. }) if tier == "contraindicated"
        ));
    }
    assert!(matches!(
        v.verify(&with_hardware(-1), &warning),
        Err(RpError::Tier { ref tier, .. }) if tier == "none"
    ));
}

#[test]
fn garbage_never_panics() {
    let s = Signer::new("k1");
    let v = ResultVerifier::from_jwks_json(&s.jwks()).unwrap();
    for t in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9..",
        &"A".repeat(100_000),
    ] {
        assert!(v.verify(t, &db()).is_err());
    }
    assert!(ResultVerifier::from_jwks_json("{}").is_err());
    assert!(ResultVerifier::from_jwks_json(r#"{"keys": []}"#).is_err());
}
