//! SLSA v1 provenance in DSSE envelopes: made by an independent producer (the PyPI
//! `in-toto-attestation` and `securesystemslib` packages, tests/data/slsa_provenance.py) over
//! a real file, and real public provenance (a GitHub Actions attestation from
//! slsa-framework/slsa-verifier's test data, testdata/slsa/, see testdata/SOURCES.md), each
//! verified, and refused when tampered.
//!
//! Needs target/pyenv with `in-toto-attestation` (scripts/deps.sh --test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use vouch_image::provenance::{self, MAX_ENVELOPE_BYTES, Policy, ProvenanceError, VerifyingKey};
use vouch_testkit::read_testdata;

const BUILDER: &str =
    "https://github.com/vouch-test/builder/.github/workflows/build.yml@refs/tags/v1.0.0";
const BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";
const REPO: &str = "https://github.com/vouch-test/app";
const REF: &str = "refs/tags/v1.2.0";

struct Made {
    _dir: tempfile::TempDir,
    out: PathBuf,
    digest: String,
}

impl Made {
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.out.join(name)).unwrap()
    }
    fn key(&self, alg: &str) -> VerifyingKey {
        VerifyingKey::from_pem(&String::from_utf8(self.read(&format!("{alg}.pub"))).unwrap())
            .unwrap()
    }
}

/// Run the Python producer over a real file of random bytes.
fn make() -> Made {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let artifact = dir.path().join("app.bin");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&artifact, &bytes).unwrap();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/deps.sh --test` (it installs in-toto-attestation)",
        python.display()
    );
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/slsa_provenance.py"))
        .arg(&artifact)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "slsa_provenance.py failed (in-toto-attestation in target/pyenv? scripts/deps.sh --test): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    Made {
        _dir: dir,
        out,
        digest,
    }
}

fn full_policy() -> Policy {
    Policy {
        builder_id: Some(BUILDER.into()),
        source_repo: Some(REPO.into()),
        source_ref: Some(REF.into()),
        build_type: Some(BUILD_TYPE.into()),
    }
}

/// The envelope with its base64 `field` (payload or signatures[0].sig) decoded, one bit of
/// byte `at` flipped, and encoded again.
fn flip(envelope: &[u8], field: &str, at: usize) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let slot = if field == "payload" {
        &mut v["payload"]
    } else {
        &mut v["signatures"][0]["sig"]
    };
    let std = base64::engine::general_purpose::STANDARD;
    let mut raw = std.decode(slot.as_str().unwrap()).unwrap();
    raw[at] ^= 0x01;
    *slot = std.encode(raw).into();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn provenance_from_in_toto_attestation_verifies_and_every_tampering_is_refused() {
    let m = make();
    let policy = full_policy();
    // Each algorithm the producer signs with verifies under its key, with the full policy.
    for alg in ["ecdsa", "ed25519", "rsa"] {
        let got = provenance::verify(
            &m.read(&format!("good-{alg}.json")),
            &[m.key(alg)],
            &m.digest,
            &policy,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(got.builder_id, BUILDER);
        assert_eq!(got.source_repo.as_deref(), Some(REPO));
        assert_eq!(got.source_ref.as_deref(), Some(REF));
        assert_eq!(got.subject, "app.bin");
        assert_eq!(got.key_id, m.key(alg).id());
    }
    let good = m.read("good-ecdsa.json");
    let keys = [m.key("ecdsa")];
    let refused = |env: &[u8], keys: &[VerifyingKey], digest: &str, p: &Policy| {
        provenance::verify(env, keys, digest, p).unwrap_err()
    };
    // One flipped byte in the payload (inside the subject's digest text), in the signature.
    let e = refused(&flip(&good, "payload", 120), &keys, &m.digest, &policy);
    assert!(matches!(e, ProvenanceError::Signature(_)), "{e}");
    let e = refused(&flip(&good, "sig", 20), &keys, &m.digest, &policy);
    assert!(matches!(e, ProvenanceError::Signature(_)), "{e}");
    // Another key (the producer's Ed25519 and RSA keys did not sign this envelope).
    let e = refused(&good, &[m.key("ed25519"), m.key("rsa")], &m.digest, &policy);
    assert!(matches!(e, ProvenanceError::Signature(_)), "{e}");
    // The envelope is about another artifact: a subject that is not this file's digest...
    let e = refused(&m.read("other-subject.json"), &keys, &m.digest, &policy);
    assert!(e.to_string().contains("no subject"), "{e}");
    // ... or this provenance presented for another file.
    let other = hex::encode(sha2::Sha256::digest(b"another artifact"));
    let e = refused(&good, &keys, &other, &policy);
    assert!(matches!(e, ProvenanceError::Subject(_)), "{e}");
    // A valid signature over another payload type.
    let e = refused(
        &m.read("wrong-payload-type.json"),
        &keys,
        &m.digest,
        &policy,
    );
    assert!(e.to_string().contains("payloadType"), "{e}");
    // The type relabelled in a good envelope: the PAE covers it, the signature no longer holds.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["payloadType"] = "application/vnd.in-toto+json ".into();
    let e = refused(&serde_json::to_vec(&v).unwrap(), &keys, &m.digest, &policy);
    assert!(e.to_string().contains("payloadType"), "{e}");
    // The envelope signed as application/json relabelled in-toto: the PAE binds the type
    // into what was signed, so the signature no longer verifies.
    let mut v: serde_json::Value =
        serde_json::from_slice(&m.read("wrong-payload-type.json")).unwrap();
    v["payloadType"] = provenance::PAYLOAD_TYPE.into();
    let e = refused(&serde_json::to_vec(&v).unwrap(), &keys, &m.digest, &policy);
    assert!(matches!(e, ProvenanceError::Signature(_)), "{e}");
    // Downgrades, each validly signed: a Statement v0.1, SLSA provenance v0.2.
    let e = refused(&m.read("statement-v01.json"), &keys, &m.digest, &policy);
    assert!(e.to_string().contains("Statement/v0.1"), "{e}");
    let e = refused(&m.read("predicate-v02.json"), &keys, &m.digest, &policy);
    assert!(e.to_string().contains("provenance/v0.2"), "{e}");
    // Policy: each field wrong by itself.
    for (field, p) in [
        (
            "builder id",
            Policy {
                builder_id: Some(format!("{BUILDER}x")),
                ..full_policy()
            },
        ),
        (
            "source repository",
            Policy {
                source_repo: Some("https://github.com/vouch-test/other".into()),
                ..full_policy()
            },
        ),
        (
            "source ref",
            Policy {
                source_ref: Some("refs/heads/main".into()),
                ..full_policy()
            },
        ),
        (
            "build type",
            Policy {
                build_type: Some(
                    "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1".into(),
                ),
                ..full_policy()
            },
        ),
    ] {
        let e = refused(&good, &keys, &m.digest, &p);
        assert!(
            matches!(e, ProvenanceError::Policy(_)) && e.to_string().contains(field),
            "{field}: {e}"
        );
    }
    // Oversized: the good envelope padded with spaces past the bound is refused unread.
    let mut big = good.clone();
    big.resize(MAX_ENVELOPE_BYTES + 1, b' ');
    let e = refused(&big, &keys, &m.digest, &policy);
    assert!(e.to_string().contains("more than"), "{e}");
    // Too many signatures, and garbage.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let sig = v["signatures"][0].clone();
    v["signatures"] = serde_json::Value::Array(vec![sig; 17]);
    let e = refused(&serde_json::to_vec(&v).unwrap(), &keys, &m.digest, &policy);
    assert!(e.to_string().contains("17 signatures"), "{e}");
    for junk in [&b""[..], b"{", b"[]", b"{\"payloadType\":1}", b"\xff\xfe"] {
        assert!(matches!(
            refused(junk, &keys, &m.digest, &policy),
            ProvenanceError::Envelope(_)
        ));
    }
}

fn real_bundle_key(bundle: &[u8]) -> VerifyingKey {
    let v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            v["verificationMaterial"]["certificate"]["rawBytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    VerifyingKey::from_certificate_der(&der).unwrap()
}

#[test]
fn real_github_actions_provenance_verifies_and_is_refused_tampered() {
    let bundle = read_testdata("slsa/MODULE.bazel.intoto.jsonl");
    let artifact = read_testdata("slsa/MODULE.bazel");
    let digest = hex::encode(sha2::Sha256::digest(&artifact));
    let keys = [real_bundle_key(&bundle)];
    let policy = Policy {
        builder_id: Some(
            "https://github.com/bazel-contrib/publish-to-bcr/.github/workflows/publish.yaml@refs/tags/v0.0.1"
                .into(),
        ),
        source_repo: Some("https://github.com/aspect-build/rules_lint".into()),
        source_ref: Some("refs/heads/publish-to-bcr".into()),
        build_type: Some(BUILD_TYPE.into()),
    };
    let got = provenance::verify(&bundle, &keys, &digest, &policy).unwrap();
    assert_eq!(got.subject, "MODULE.bazel");
    // The artifact with one byte changed.
    let mut changed = artifact.clone();
    changed[0] ^= 1;
    let e = provenance::verify(
        &bundle,
        &keys,
        &hex::encode(sha2::Sha256::digest(&changed)),
        &policy,
    )
    .unwrap_err();
    assert!(matches!(e, ProvenanceError::Subject(_)), "{e}");
    // A flipped byte in the bundle's payload and in its signature.
    let mut v: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let env = serde_json::to_vec(&v["dsseEnvelope"]).unwrap();
    for field in ["payload", "sig"] {
        v["dsseEnvelope"] = serde_json::from_slice(&flip(&env, field, 40)).unwrap();
        let e = provenance::verify(&serde_json::to_vec(&v).unwrap(), &keys, &digest, &policy)
            .unwrap_err();
        assert!(matches!(e, ProvenanceError::Signature(_)), "{field}: {e}");
    }
    // Another key: our own producer's is not this builder's.
    let m = make();
    let e = provenance::verify(&bundle, &[m.key("ecdsa")], &digest, &policy).unwrap_err();
    assert!(matches!(e, ProvenanceError::Signature(_)), "{e}");
    // A release tag policy refuses this branch build.
    let e = provenance::verify(
        &bundle,
        &keys,
        &digest,
        &Policy {
            source_ref: Some("refs/tags/v1.3.1".into()),
            ..policy
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("source ref"), "{e}");
}

#[test]
fn real_provenance_certificate_chains_to_the_sigstore_trusted_root() {
    let bundle = read_testdata("slsa/MODULE.bazel.intoto.jsonl");
    let root = read_testdata("slsa/trusted_root.json");
    let digest = hex::encode(sha2::Sha256::digest(read_testdata("slsa/MODULE.bazel")));
    let s = provenance::fulcio_signer(&bundle, &root).unwrap();
    // Fulcio names the reusable workflow that signed: the builder id the provenance claims.
    assert_eq!(
        s.identity,
        "https://github.com/bazel-contrib/publish-to-bcr/.github/workflows/publish.yaml@refs/tags/v0.0.1"
    );
    assert_eq!(s.issuer, "https://token.actions.githubusercontent.com");
    let got = provenance::verify(&bundle, &[s.key], &digest, &Policy::default()).unwrap();
    assert_eq!(got.builder_id, s.identity);

    // Another trusted root (sigstore's staging instance) neither logged nor issued it: its
    // Rekor log is not the one that logged it (checked first).
    let e = provenance::fulcio_signer(&bundle, &read_testdata("slsa/trusted_root_staging.json"))
        .unwrap_err();
    assert!(e.to_string().contains("not one of the"), "{e}");
    // The certificate with one flipped bit in its signature (its last byte): the Rekor entry
    // names the real one (tests/rekor.rs re-logs the bundle to reach the chain check).
    let mut v: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let slot = &mut v["verificationMaterial"]["certificate"]["rawBytes"];
    let mut der = std_b64.decode(slot.as_str().unwrap()).unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    *slot = std_b64.encode(der).into();
    let e = provenance::fulcio_signer(&serde_json::to_vec(&v).unwrap(), &root).unwrap_err();
    assert!(e.to_string().contains("names another certificate"), "{e}");
    // Claimed to be logged an hour later: Rekor did not sign that time (tests/rekor.rs
    // logs it at such times with a log of its own: refused as outside the validity).
    let mut v: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    v["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = "1743036450".into();
    let e = provenance::fulcio_signer(&serde_json::to_vec(&v).unwrap(), &root).unwrap_err();
    assert!(e.to_string().contains("signed entry timestamp"), "{e}");
}

/// Every single-bit change anywhere in a producer's envelope is refused, except inside the
/// `keyid` name and value (a hint DSSE does not sign), and none panics.
#[test]
fn every_flipped_bit_outside_the_keyid_hint_is_refused() {
    let m = make();
    let keys = [m.key("ed25519")];
    let good = m.read("good-ed25519.json");
    let policy = full_policy();
    provenance::verify(&good, &keys, &m.digest, &policy).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let keyid = v["signatures"][0]["keyid"].as_str().unwrap();
    // The hint's name and value: with its name changed it is an unknown field and the
    // signature (which never covered it) still verifies.
    let start = text.find("\"keyid\"").unwrap();
    let hint = start..text.find(keyid).unwrap() + keyid.len();
    let mut accepted = Vec::new();
    for i in 0..good.len() {
        for bit in [0x01u8, 0x20, 0x80] {
            let mut t = good.clone();
            t[i] ^= bit;
            if provenance::verify(&t, &keys, &m.digest, &policy).is_ok() && !hint.contains(&i) {
                accepted.push((i, bit));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted with a flipped bit at {accepted:?}"
    );
}
