//! Offline Rekor verification (crates/vouch-image/src/rekor.rs) of the real public-good
//! sigstore bundle in testdata/slsa (a DSSE entry with its signed entry timestamp, inclusion
//! proof and signed checkpoint, checked against the real trusted_root.json), and each
//! refusal with a real tampered copy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use vouch_image::provenance::{self, ProvenanceError};
use vouch_image::rekor::{self, RekorError, TransparencyLog};
use vouch_testkit::read_testdata;

const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn bundle() -> serde_json::Value {
    serde_json::from_slice(&read_testdata("slsa/MODULE.bazel.intoto.jsonl")).unwrap()
}

fn cert(b: &serde_json::Value) -> Vec<u8> {
    STD.decode(
        b["verificationMaterial"]["certificate"]["rawBytes"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

fn logs() -> Vec<TransparencyLog> {
    TransparencyLog::from_trusted_root(&read_testdata("slsa/trusted_root.json")).unwrap()
}

fn validity(der: &[u8]) -> (u64, u64) {
    vouch_x509::validity(&vouch_x509::parse(der, "t").unwrap())
}

fn verify(b: &serde_json::Value) -> Result<rekor::VerifiedEntry, RekorError> {
    let c = cert(b);
    rekor::verify_bundle(b, &c, validity(&c), &logs())
}

#[test]
fn the_real_bundle_entry_verifies() {
    let got = verify(&bundle()).unwrap();
    assert_eq!(got.log_index, 188_622_862);
    assert_eq!(got.integrated_time, 1_743_032_850);
    assert_eq!(got.tree_size, Some(66_718_601));
    assert_eq!(got.log_url, "https://rekor.sigstore.dev");
}

fn entry(b: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut b["verificationMaterial"]["tlogEntries"][0]
}

fn flip_b64(slot: &mut serde_json::Value, at: usize) {
    let mut raw = STD.decode(slot.as_str().unwrap()).unwrap();
    raw[at] ^= 1;
    *slot = STD.encode(raw).into();
}

#[test]
fn a_tampered_inclusion_proof_is_refused() {
    // One flipped bit in the first and in the last hash of the audit path, and in the root.
    for (field, i) in [("hashes", 0usize), ("hashes", 12), ("rootHash", 0)] {
        let mut b = bundle();
        let proof = &mut entry(&mut b)["inclusionProof"];
        let slot = if field == "hashes" {
            &mut proof["hashes"][i]
        } else {
            &mut proof["rootHash"]
        };
        flip_b64(slot, 7);
        let e = verify(&b).unwrap_err();
        assert!(matches!(e, RekorError::Proof(_)), "{field}[{i}]: {e}");
    }
    // Another index in the tree, one leaf over and far off.
    for index in ["66718599", "66718601", "1"] {
        let mut b = bundle();
        entry(&mut b)["inclusionProof"]["logIndex"] = index.into();
        let e = verify(&b).unwrap_err();
        assert!(matches!(e, RekorError::Proof(_)), "{index}: {e}");
    }
    // A hash dropped from the path, and a bigger tree.
    let mut b = bundle();
    entry(&mut b)["inclusionProof"]["hashes"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert!(matches!(verify(&b).unwrap_err(), RekorError::Proof(_)));
    let mut b = bundle();
    entry(&mut b)["inclusionProof"]["treeSize"] = "66718602".into();
    assert!(matches!(verify(&b).unwrap_err(), RekorError::Proof(_)));
    // No proof at all in a v0.3 bundle.
    let mut b = bundle();
    entry(&mut b)
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    let e = verify(&b).unwrap_err();
    assert!(e.to_string().contains("inclusion proof: missing"), "{e}");
}

#[test]
fn a_wrong_log_index_or_time_breaks_the_signed_entry_timestamp() {
    for (field, value) in [("logIndex", "188622863"), ("integratedTime", "1743032851")] {
        let mut b = bundle();
        entry(&mut b)[field] = value.into();
        let e = verify(&b).unwrap_err();
        assert!(matches!(e, RekorError::Promise(_)), "{field}: {e}");
    }
    // The signed entry timestamp with one flipped bit, and removed.
    let mut b = bundle();
    flip_b64(
        &mut entry(&mut b)["inclusionPromise"]["signedEntryTimestamp"],
        20,
    );
    assert!(matches!(verify(&b).unwrap_err(), RekorError::Promise(_)));
    let mut b = bundle();
    entry(&mut b)
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    let e = verify(&b).unwrap_err();
    assert!(
        e.to_string().contains("signed entry timestamp: missing"),
        "{e}"
    );
}

#[test]
fn a_checkpoint_for_another_tree_or_by_another_key_is_refused() {
    let b = bundle();
    let note =
        b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
            .as_str()
            .unwrap()
            .to_string();
    let (text, sig_line) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    // The same note signed by another P-256 key, with the real log's key hint.
    let other = TestLog::new();
    let real_hint = &STD
        .decode(sig_line.rsplit_once(' ').unwrap().1.trim())
        .unwrap()[..4];
    let forged = format!(
        "{text}\n\u{2014} rekor.sigstore.dev {}\n",
        STD.encode([real_hint, &other.sign(text.as_bytes())[..]].concat())
    );
    let mut t = b.clone();
    entry(&mut t)["inclusionProof"]["checkpoint"]["envelope"] = forged.into();
    let e = verify(&t).unwrap_err();
    assert!(e.to_string().contains("is by the key of"), "{e}");
    // The real signature with one flipped bit.
    let mut t = b.clone();
    let flipped = note.replacen("wNI9ajBFAiBNeIdAe", "wNI9ajBFAiBNeIdAf", 1);
    assert_ne!(flipped, note);
    entry(&mut t)["inclusionProof"]["checkpoint"]["envelope"] = flipped.into();
    assert!(matches!(verify(&t).unwrap_err(), RekorError::Checkpoint(_)));
    // The note naming another tree size (its signature then cannot verify either).
    let mut t = b.clone();
    entry(&mut t)["inclusionProof"]["checkpoint"]["envelope"] =
        note.replacen("\n66718601\n", "\n66718602\n", 1).into();
    let e = verify(&t).unwrap_err();
    assert!(e.to_string().contains("names tree size 66718602"), "{e}");
    // No signature line at all.
    let mut t = b.clone();
    entry(&mut t)["inclusionProof"]["checkpoint"]["envelope"] = format!("{text}\n").into();
    assert!(matches!(verify(&t).unwrap_err(), RekorError::Checkpoint(_)));
}

#[test]
fn a_valid_entry_for_other_content_is_refused() {
    // The envelope's payload with one flipped byte: the logged payload hash is another's.
    let mut b = bundle();
    flip_b64(&mut b["dsseEnvelope"]["payload"], 100);
    let e = verify(&b).unwrap_err();
    assert!(
        e.to_string().contains("names another payload digest"),
        "{e}"
    );
    // The envelope's payload type changed (payload and signatures as logged): another
    // envelope than the one logged.
    let mut b = bundle();
    b["dsseEnvelope"]["payloadType"] = "application/vnd.in-toto+jsonx".into();
    let e = verify(&b).unwrap_err();
    assert!(e.to_string().contains("names another envelope"), "{e}");
    // A field the logged envelope did not have.
    let mut b = bundle();
    b["dsseEnvelope"]["signatures"][0]["keyid"] = "hint".into();
    let e = verify(&b).unwrap_err();
    assert!(e.to_string().contains("names another envelope"), "{e}");
    // The envelope's keys in another order: the same canonical envelope.
    let mut b = bundle();
    let env = b["dsseEnvelope"].as_object().unwrap().clone();
    let mut reordered = serde_json::Map::new();
    for k in ["signatures", "payloadType", "payload"] {
        reordered.insert(k.into(), env[k].clone());
    }
    b["dsseEnvelope"] = reordered.into();
    verify(&b).unwrap();
    // The envelope's signature with one flipped byte.
    let mut b = bundle();
    flip_b64(&mut b["dsseEnvelope"]["signatures"][0]["sig"], 10);
    let e = verify(&b).unwrap_err();
    assert!(e.to_string().contains("does not carry"), "{e}");
    // Another certificate (Fulcio's intermediate, from the trusted root) than the logged one.
    let b = bundle();
    let root: serde_json::Value =
        serde_json::from_slice(&read_testdata("slsa/trusted_root.json")).unwrap();
    let other = STD
        .decode(
            root["certificateAuthorities"][1]["certChain"]["certificates"][0]["rawBytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let e = rekor::verify_bundle(&b, &other, (0, u64::MAX), &logs()).unwrap_err();
    assert!(e.to_string().contains("names another certificate"), "{e}");
    // The kindVersion hint disagreeing with the body.
    let mut b = bundle();
    entry(&mut b)["kindVersion"]["kind"] = "hashedrekord".into();
    assert!(matches!(verify(&b).unwrap_err(), RekorError::Body(_)));
    // A one-byte change in the logged body itself: the signed entry timestamp and the leaf
    // hash are the body's, so the SET fails first.
    let mut b = bundle();
    let body = STD
        .decode(entry(&mut b)["canonicalizedBody"].as_str().unwrap())
        .unwrap();
    let text =
        String::from_utf8(body)
            .unwrap()
            .replacen("\"kind\":\"dsse\"", "\"kind\":\"dsse\" ", 1);
    entry(&mut b)["canonicalizedBody"] = STD.encode(text).into();
    assert!(matches!(verify(&b).unwrap_err(), RekorError::Promise(_)));
}

#[test]
fn a_log_the_trusted_root_does_not_name_is_refused() {
    let staging =
        TransparencyLog::from_trusted_root(&read_testdata("slsa/trusted_root_staging.json"))
            .unwrap();
    let b = bundle();
    let c = cert(&b);
    let e = rekor::verify_bundle(&b, &c, validity(&c), &staging).unwrap_err();
    assert!(matches!(e, RekorError::Log(_)), "{e}");
}

/// A transparency log of our own (an ECDSA P-256 key that signs entry timestamps and
/// checkpoints of a one-leaf tree), to log the real body at times Rekor never signed.
struct TestLog {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    spki: Vec<u8>,
}

impl TestLog {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = [
            &hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap()[..],
            key.public_key().as_ref(),
        ]
        .concat();
        Self { key, spki }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
            .unwrap()
            .as_ref()
            .to_vec()
    }
    fn log_id(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.spki).into()
    }
    /// The real trusted root with this log added, valid from `start`.
    fn trusted_root(&self, start: &str) -> Vec<u8> {
        self.add_to("slsa/trusted_root.json", start)
    }
    /// The trusted root `name` (in testdata) with this log added, valid from `start`.
    fn add_to(&self, name: &str, start: &str) -> Vec<u8> {
        let mut root: serde_json::Value = serde_json::from_slice(&read_testdata(name)).unwrap();
        root["tlogs"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "baseUrl": "https://test-log.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STD.encode(&self.spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start}
                },
                "logId": {"keyId": STD.encode(self.log_id())}
            }));
        serde_json::to_vec(&root).unwrap()
    }
    /// The bundle's entry re-logged by this log at `time`, as leaf 0 of a one-leaf tree.
    fn relog(&self, b: &mut serde_json::Value, time: u64) {
        let e = entry(b);
        let body_b64 = e["canonicalizedBody"].as_str().unwrap().to_string();
        let body = STD.decode(&body_b64).unwrap();
        let log_id = self.log_id();
        let set = format!(
            r#"{{"body":"{body_b64}","integratedTime":{time},"logID":"{}","logIndex":0}}"#,
            hex::encode(log_id)
        );
        let root = rekor::leaf_hash(&body);
        let text = format!("test-log.invalid - 1\n1\n{}\n", STD.encode(root));
        let note = format!(
            "{text}\n\u{2014} test-log.invalid {}\n",
            STD.encode([&log_id[..4], &self.sign(text.as_bytes())[..]].concat())
        );
        *e = serde_json::json!({
            "logIndex": "0",
            "logId": {"keyId": STD.encode(log_id)},
            "kindVersion": e["kindVersion"].clone(),
            "integratedTime": time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": STD.encode(self.sign(set.as_bytes()))},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": STD.encode(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": note}
            },
            "canonicalizedBody": body_b64,
        });
    }
}

#[test]
fn a_signature_logged_outside_the_certificate_or_log_key_validity_is_refused() {
    let log = TestLog::new();
    let root = log.trusted_root("2025-01-01T00:00:00Z");
    let logs = TransparencyLog::from_trusted_root(&root).unwrap();
    let b = bundle();
    let c = cert(&b);
    let (not_before, not_after) = validity(&c);
    // Logged by our log within the certificate's ten minutes: verifies (the log is sound).
    let mut ok = b.clone();
    log.relog(&mut ok, not_before + 60);
    let got = rekor::verify_bundle(&ok, &c, (not_before, not_after), &logs).unwrap();
    assert_eq!(got.log_url, "https://test-log.invalid");
    // The full key-less path accepts it too.
    provenance::fulcio_signer(&serde_json::to_vec(&ok).unwrap(), &root).unwrap();
    // Logged an hour after the certificate expired, and a minute before it was issued.
    for time in [not_after + 3600, not_before - 60] {
        let mut late = b.clone();
        log.relog(&mut late, time);
        let e = rekor::verify_bundle(&late, &c, (not_before, not_after), &logs).unwrap_err();
        assert!(
            e.to_string().contains("certificate's validity"),
            "{time}: {e}"
        );
        let e = provenance::fulcio_signer(&serde_json::to_vec(&late).unwrap(), &root).unwrap_err();
        assert!(
            matches!(e, ProvenanceError::Log(RekorError::Time(_))),
            "{e}"
        );
    }
    // A log key valid only from 2026 on cannot have logged in 2025.
    let root = log.trusted_root("2026-01-01T00:00:00Z");
    let logs = TransparencyLog::from_trusted_root(&root).unwrap();
    let e = rekor::verify_bundle(&ok, &c, (not_before, not_after), &logs).unwrap_err();
    assert!(e.to_string().contains("validity of the key"), "{e}");
    // Our log is not in the real trusted root.
    let e = rekor::verify_bundle(&ok, &c, (not_before, not_after), &self::logs()).unwrap_err();
    assert!(matches!(e, RekorError::Log(_)), "{e}");
}

#[test]
fn key_less_provenance_needs_a_valid_entry() {
    let root = read_testdata("slsa/trusted_root.json");
    let good = serde_json::to_vec(&bundle()).unwrap();
    let s = provenance::fulcio_signer(&good, &root).unwrap();
    assert_eq!(s.tlog.log_index, 188_622_862);
    let mut b = bundle();
    b["verificationMaterial"]
        .as_object_mut()
        .unwrap()
        .remove("tlogEntries");
    let e = provenance::fulcio_signer(&serde_json::to_vec(&b).unwrap(), &root).unwrap_err();
    assert!(e.to_string().contains("no transparency-log entry"), "{e}");
}

#[test]
fn a_logged_certificate_fulcio_did_not_issue_is_refused() {
    // Logged by a trusted log, but the Fulcio authorities are staging's: the chain fails.
    let log = TestLog::new();
    let root = log.add_to("slsa/trusted_root_staging.json", "2025-01-01T00:00:00Z");
    let mut b = bundle();
    let issued = validity(&cert(&b)).0;
    log.relog(&mut b, issued + 60);
    let e = provenance::fulcio_signer(&serde_json::to_vec(&b).unwrap(), &root).unwrap_err();
    assert!(
        e.to_string().contains("not issued by the trusted root"),
        "{e}"
    );
}
