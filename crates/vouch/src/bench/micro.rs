//! Measurements that need no verifier running: X.509-SVID issuance, quorum signing, policy
//! evaluation, and the raw operations they are held against.

use anyhow::Result;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_core::SoftwareMeasurements;
use vouch_evidence::{AgentKey, EvidenceVerifier, SoftwareVerifier, VerifyContext};
use vouch_server::unix_now;

fn per(d: Duration, n: usize) -> Duration {
    d / u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// X.509-SVID issuance against raw ECDSA P-256 signing, one run.
pub struct Svid {
    /// Iterations.
    pub n: usize,
    /// DER size of one SVID.
    pub der_bytes: usize,
    /// Time to issue one SVID (build, sign, encode).
    pub issue: Duration,
    /// Time of one raw ECDSA P-256 signature over a message of the SVID's size.
    pub sign: Duration,
}

/// Measure [`Svid`] over `n` issuances.
pub fn svid(n: usize) -> Result<Svid> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use rcgen::PublicKeyData as _;
    let n = n.max(10);
    let now = unix_now();
    let td = vouch_identity::TrustDomain::parse("bench.local")?;
    let ca = vouch_identity::SvidCa::generate(&td, 86_400, now)?;
    let leaf = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let spki = leaf.subject_public_key_info();
    let id = vouch_identity::SpiffeId::new(&td, "/bench/workload")?;
    let sample = ca.issue(&id, &spki, 3600, now)?;
    // Warm up both paths, then measure them back to back.
    for _ in 0..n / 10 {
        std::hint::black_box(ca.issue(&id, &spki, 3600, now)?);
    }
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ca.issue(&id, &spki, 3600, now)?);
    }
    let issue = per(start.elapsed(), n);
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("ECDSA key generation failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("ECDSA key parse failed"))?;
    let tbs = vec![0x5a; sample.len()];
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            key.sign(&rng, &tbs)
                .map_err(|_| anyhow::anyhow!("ECDSA sign failed"))?,
        );
    }
    Ok(Svid {
        n,
        der_bytes: sample.len(),
        issue,
        sign: per(start.elapsed(), n),
    })
}

/// The work of `POST /v1/svid` after its reads, before and since issue 15 part 7, in one run
/// against one SQLite store in `dir` (its usual settings: WAL, `synchronous=FULL`), `n` times
/// each: before, issue one SVID and append the `svid.issue` audit event (a committed write the
/// route already made); since, record the SVID in the same transaction (`issued_svid_record`,
/// `record_issued_svids_audited`: one INSERT more, no commit more). Returns (before, since),
/// each per SVID request.
pub async fn svid_recorded(n: usize, dir: &Path) -> Result<(Duration, Duration)> {
    use rcgen::PublicKeyData as _;
    use vouch_store::{AuditLog as _, IssuedSvids as _};
    let n = n.max(10);
    let now = unix_now();
    let td = vouch_identity::TrustDomain::parse("bench.local")?;
    let ca = vouch_identity::SvidCa::generate(&td, 86_400, now)?;
    let leaf = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let spki = leaf.subject_public_key_info();
    let id = vouch_identity::SpiffeId::new(&td, "/bench/workload")?;
    std::fs::create_dir_all(dir)?;
    let store = vouch_store::SqliteStore::open(&dir.join("svid.db")).await?;
    let one = |record: bool| {
        let (ca, id, spki, store) = (&ca, &id, &spki, &store);
        async move {
            let der = ca.issue(id, spki, 3600, now)?;
            let rec = vouch_server::issued_svid_record(
                &der,
                "node",
                "node/w",
                &id.to_string(),
                now + 3600,
                now,
            )
            .map_err(anyhow::Error::msg)?;
            let event = vouch_store::AuditEvent {
                time: now,
                kind: "svid.issue".into(),
                actor: "bench-key".into(),
                subject: "w".into(),
                body: serde_json::json!({"svids": [{"spiffe_id": rec.spiffe_id, "sha256": rec.sha256}]}),
            };
            if record {
                store
                    .record_issued_svids_audited(std::slice::from_ref(&rec), &event)
                    .await?;
            } else {
                store.append_audit(&event).await?;
            }
            anyhow::Ok(())
        }
    };
    for i in 0..n / 10 {
        one(i % 2 == 0).await?;
    }
    // Interleaved, so a disk that slows down for a while (a shared machine) weighs on both.
    let (mut before, mut since) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        one(false).await?;
        before += t.elapsed();
        let t = Instant::now();
        one(true).await?;
        since += t.elapsed();
    }
    Ok((per(before, n), per(since, n)))
}

/// The signing work of a 2-of-3 FROST quorum result against one Ed25519 signature over the same
/// 900-byte message; the aggregate is checked as a plain Ed25519 signature first.
pub fn quorum(n: usize, dir: &Path) -> Result<(Duration, Duration)> {
    use vouch_server::quorum;
    let n = n.max(10);
    let dir = dir.join("quorum");
    std::fs::create_dir_all(&dir)?;
    quorum::dealer(2, 3, &dir)?;
    let shares = [
        quorum::read_key_package(&dir.join("signer-1.json"))?,
        quorum::read_key_package(&dir.join("signer-2.json"))?,
    ];
    let group = quorum::read_group(&dir.join("group.json"))?;
    let pk = UnparsedPublicKey::new(&ED25519, quorum::group_public_key(&group)?);
    let _ = std::fs::remove_dir_all(&dir);
    let msg = vec![b'e'; 900];
    let sig = quorum::sign_locally(&shares, &group, &msg)?;
    pk.verify(&msg, &sig)
        .map_err(|_| anyhow::anyhow!("the aggregate is not a valid Ed25519 signature"))?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(quorum::sign_locally(&shares, &group, &msg)?);
    }
    let frost = per(t.elapsed(), n);
    let single = Ed25519KeyPair::generate()?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(single.sign(&msg));
    }
    Ok((frost, per(t.elapsed(), n)))
}

/// The post-quantum signature of one result against the classical one: ML-DSA-65 (FIPS 204,
/// aws-lc) and Ed25519, each one signature and one verification of the same message.
pub struct PqCost {
    /// Iterations.
    pub n: usize,
    /// Bytes signed (a result's signing input: header and claims, base64url).
    pub message_bytes: usize,
    /// One ML-DSA-65 signature.
    pub mldsa_sign: Duration,
    /// One ML-DSA-65 verification.
    pub mldsa_verify: Duration,
    /// One Ed25519 signature.
    pub ed_sign: Duration,
    /// One Ed25519 verification.
    pub ed_verify: Duration,
    /// Bytes of an ML-DSA-65 signature (an Ed25519 one is 64).
    pub mldsa_sig_bytes: usize,
}

/// Measure [`PqCost`] over `n` results of `message_bytes` each; every signature is verified
/// once before timing.
pub fn pq_signature(n: usize, message_bytes: usize) -> Result<PqCost> {
    use aws_lc_rs::signature::{ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair};
    let n = n.max(10);
    let msg = vec![b'e'; message_bytes];
    let pq = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING)
        .map_err(|_| anyhow::anyhow!("ML-DSA-65 key generation failed"))?;
    let pq_pub = UnparsedPublicKey::new(&ML_DSA_65, pq.public_key().as_ref().to_vec());
    let mut sig = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
    let len = pq
        .sign(&msg, &mut sig)
        .map_err(|_| anyhow::anyhow!("ML-DSA-65 signing failed"))?;
    sig.truncate(len);
    pq_pub
        .verify(&msg, &sig)
        .map_err(|_| anyhow::anyhow!("the ML-DSA-65 signature does not verify"))?;
    let mut buf = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            pq.sign(&msg, &mut buf)
                .map_err(|_| anyhow::anyhow!("ML-DSA-65 signing failed"))?,
        );
    }
    let mldsa_sign = per(t.elapsed(), n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(pq_pub.verify(&msg, &sig).is_ok());
    }
    let mldsa_verify = per(t.elapsed(), n);
    let ed = Ed25519KeyPair::generate()?;
    let ed_pub = UnparsedPublicKey::new(&ED25519, ed.public_key().as_ref().to_vec());
    let ed_sig = ed.sign(&msg);
    ed_pub
        .verify(&msg, ed_sig.as_ref())
        .map_err(|_| anyhow::anyhow!("the Ed25519 signature does not verify"))?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ed.sign(&msg));
    }
    let ed_sign = per(t.elapsed(), n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ed_pub.verify(&msg, ed_sig.as_ref()).is_ok());
    }
    Ok(PqCost {
        n,
        message_bytes,
        mldsa_sign,
        mldsa_verify,
        ed_sign,
        ed_verify: per(t.elapsed(), n),
        mldsa_sig_bytes: sig.len(),
    })
}

/// Software evidence carrying `m`, verified as the verifier does.
pub fn verified(m: &SoftwareMeasurements) -> Result<vouch_evidence::VerifiedEvidence> {
    let key = AgentKey::generate()?;
    let ev = vouch_evidence::sign_software_evidence(&key, "k", m)?;
    Ok(SoftwareVerifier.verify(
        &ev,
        &VerifyContext {
            public_key: key.public_key(),
            signers: &[],
            tpm: None,
            tee: None,
            now: 0,
            parts: None,
        },
    )?)
}

/// The policy work of one attestation over the claims of `m`, under the default policy with
/// the reference value that makes its workload (`name`) affirming.
pub struct PolicyWork {
    /// A repeat attestation: the verifier finds the appraisal it made for the same claims,
    /// policy version and reference values (`vouch_verifier::cache`: the key's SHA-256 over
    /// the claims JSON, then the lookup).
    pub repeat: Duration,
    /// Changed claims: one evaluation of the compiled policy.
    pub evaluate: Duration,
}

/// Measure [`PolicyWork`], `n` times each.
pub fn policy(m: &SoftwareMeasurements, name: &str, n: usize) -> Result<PolicyWork> {
    let verified = verified(m)?;
    let claims = &verified.claims;
    let refs = vouch_policy::ReferenceValues {
        values: vec![vouch_policy::ReferenceValue {
            kind: "executable".into(),
            key: name.into(),
            value: m.workload.exe_sha256.clone(),
        }],
        revision: 1,
    };
    let source = vouch_policy::PolicySource {
        id: vouch_policy::DEFAULT_POLICY_ID.into(),
        version: 1,
        rego: vouch_policy::DEFAULT_POLICY.into(),
    };
    let policy = vouch_policy::CompiledPolicy::compile(&source, &refs)?;
    let first = policy.appraise(claims)?;
    anyhow::ensure!(
        first.status == vouch_core::ArStatus::Affirming,
        "the bench claims are not affirming under the default policy: {:?}",
        first.reasons()
    );
    let n = n.max(5);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(policy.appraise(claims)?);
    }
    let evaluate = per(t.elapsed(), n);
    let cache = vouch_verifier::AppraisalCache::new(16);
    let key = vouch_verifier::cache::key(&source, refs.revision, &verified);
    cache.put(
        key,
        Arc::new(vouch_verifier::cache::CachedAppraisal {
            whole: first,
            components: Vec::new(),
        }),
    );
    let t = Instant::now();
    for _ in 0..n {
        let k = vouch_verifier::cache::key(&source, refs.revision, &verified);
        anyhow::ensure!(cache.get(&k).is_some(), "the appraisal is not reused");
    }
    Ok(PolicyWork {
        repeat: per(t.elapsed(), n),
        evaluate,
    })
}

/// `fdatasync`s per second of a file in `dir` (one 4 KiB write before each): the rate one
/// durable commit at a time could reach on this disk.
pub fn fsync_rate(dir: &Path, n: usize) -> Result<f64> {
    use std::io::{Seek, Write};
    let path = dir.join("fsync.bench");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let n = n.max(10);
    let start = Instant::now();
    for _ in 0..n {
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}
