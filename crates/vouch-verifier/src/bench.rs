//! The appraisal pipeline alone, without HTTP, TLS or a client on the same cores: what one
//! attestation costs the verifier, against the raw signature work it cannot avoid (one Ed25519
//! verification of the evidence and one Ed25519 signature of the result), in one run.
//! `vouch bench` prints it as a row; `cargo run --release -p vouch-verifier --example
//! pipeline` runs it alone (for `perf record`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_core::wire::AttestRequest;
use vouch_core::{EvidenceKind, NonceKey, SoftwareMeasurements, evidence_signing_input};
use vouch_evidence::{AgentKey, sign_software_evidence, verify_ed25519};
use vouch_policy::{DEFAULT_POLICY, DEFAULT_POLICY_ID, ReferenceValue};
use vouch_store::Store;

use crate::{Verifier, VerifierConfig, VerifyError, unix_now};

/// What [`pipeline`] measured, per attestation.
#[derive(Debug, Clone, Copy)]
pub struct PipelineBench {
    /// Attestations measured in each mode.
    pub n: usize,
    /// Bytes of the signed evidence payload.
    pub payload_bytes: usize,
    /// Appraisal of repeated claims (the cache answers the policy), nothing recorded.
    pub appraise_repeat: Duration,
    /// The same with every unchanged part sent by digest, as an agent does once the verifier
    /// holds its parts.
    pub appraise_held: Duration,
    /// Bytes of that evidence's payload.
    pub held_payload_bytes: usize,
    /// Appraisal of claims that change every time (the policy runs), nothing recorded.
    pub appraise_changed: Duration,
    /// Appraisal of repeated claims and its durable record, one at a time.
    pub appraise_and_record: Duration,
    /// The policy alone over the same claims.
    pub policy: Duration,
    /// Raw signature work: one Ed25519 verification of the evidence and one Ed25519
    /// signature over a result-sized message.
    pub raw_signature: Duration,
    /// The same for the payload with its parts by digest ([`Self::appraise_held`]'s).
    pub raw_signature_held: Duration,
}

/// Measure the pipeline over `store` (empty, freshly opened) with `m`, real measurements of a
/// machine, for `n` attestations per mode.
pub async fn pipeline(
    store: Arc<dyn Store>,
    m: SoftwareMeasurements,
    n: usize,
) -> Result<PipelineBench, VerifyError> {
    let internal = |e: &dyn std::fmt::Display| {
        VerifyError::new(vouch_core::ErrorKind::Internal, format!("bench: {e}"))
    };
    let n = n.max(10);
    let now = unix_now();
    if store.active_policy_id().await?.is_none() {
        store
            .add_policy(DEFAULT_POLICY_ID, DEFAULT_POLICY, true, now)
            .await?;
    }
    store
        .create_join_token("bench-token", None, now, now + 600)
        .await?;
    let key = AgentKey::generate().map_err(|e| internal(&e))?;
    let e = store
        .enroll("bench-token", key.public_key(), "bench", now)
        .await?;
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: m.workload.name.clone(),
                value: m.workload.exe_sha256.clone(),
            },
            now,
        )
        .await?;
    let verifier = Verifier::new(
        VerifierConfig::default(),
        store.clone(),
        vec![NonceKey::new(rand32(0))],
        None,
    );
    let mut counter = 0u64;
    let mut request = |m: &SoftwareMeasurements| -> Result<AttestRequest, VerifyError> {
        counter += 1;
        let mut m = m.clone();
        m.nonce = verifier.challenge(unix_now(), rand32(counter)).nonce;
        m.collected_at = unix_now();
        Ok(AttestRequest {
            evidence: sign_software_evidence(&key, &e.key_id, &m).map_err(|e| internal(&e))?,
            result_audience: None,
        })
    };
    // Requests are made before the clock starts: signing is the agent's work.
    let repeat: Vec<_> = (0..n).map(|_| request(&m)).collect::<Result<_, _>>()?;
    let changed: Vec<_> = (0..n)
        .map(|i| {
            let mut c = m.clone();
            c.kernel = format!("{}-bench{i}", c.kernel);
            request(&c)
        })
        .collect::<Result<_, _>>()?;
    let recorded: Vec<_> = (0..n).map(|_| request(&m)).collect::<Result<_, _>>()?;
    let payload_bytes = repeat[0].evidence.payload.len();

    // Warm the caches (policy compiled, reference values read, one appraisal held).
    let warm = verifier.appraise(&request(&m)?, unix_now()).await?;
    let held = verifier.record(warm, "bench".into()).await?.held_parts;
    let mut small = m.clone();
    vouch_core::send_held_parts_by_digest(&mut small, &held);
    let by_digest: Vec<_> = (0..n).map(|_| request(&small)).collect::<Result<_, _>>()?;
    let held_payload_bytes = by_digest[0].evidence.payload.len();

    let t = Instant::now();
    for r in &repeat {
        std::hint::black_box(verifier.appraise(r, unix_now()).await?);
    }
    let appraise_repeat = t.elapsed() / n as u32;
    let t = Instant::now();
    for r in &by_digest {
        std::hint::black_box(verifier.appraise(r, unix_now()).await?);
    }
    let appraise_held = t.elapsed() / n as u32;
    let t = Instant::now();
    for r in &changed {
        std::hint::black_box(verifier.appraise(r, unix_now()).await?);
    }
    let appraise_changed = t.elapsed() / n as u32;
    let t = Instant::now();
    for r in &recorded {
        let a = verifier.appraise(r, unix_now()).await?;
        verifier.record(a, "bench".into()).await?;
    }
    let appraise_and_record = t.elapsed() / n as u32;

    let refs = verifier.reference_values().await?;
    let policy = store
        .policy(DEFAULT_POLICY_ID, None)
        .await?
        .ok_or_else(|| internal(&"no default policy"))?;
    let compiled = vouch_policy::CompiledPolicy::compile(
        &vouch_policy::PolicySource {
            id: policy.id,
            version: policy.version,
            rego: policy.rego,
        },
        &refs,
    )?;
    let claims = verifier
        .appraise(&request(&m)?, unix_now())
        .await?
        .verified
        .claims;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(compiled.appraise(&claims)?);
    }
    let policy = t.elapsed() / n as u32;

    Ok(PipelineBench {
        n,
        payload_bytes,
        appraise_repeat,
        appraise_held,
        held_payload_bytes,
        appraise_changed,
        appraise_and_record,
        policy,
        raw_signature: raw_signature_work(payload_bytes, 1_000, n * 4)?,
        raw_signature_held: raw_signature_work(held_payload_bytes, 1_000, n * 4)?,
    })
}

/// One Ed25519 verification of a `payload_bytes` evidence payload and one Ed25519 signature
/// over an `ear_bytes` result, single-threaded, mean of `iters`.
pub fn raw_signature_work(
    payload_bytes: usize,
    ear_bytes: usize,
    iters: usize,
) -> Result<Duration, VerifyError> {
    let bad = |e: &dyn std::fmt::Display| {
        VerifyError::new(vouch_core::ErrorKind::Internal, format!("bench: {e}"))
    };
    let agent = AgentKey::generate().map_err(|e| bad(&e))?;
    let signer = AgentKey::generate().map_err(|e| bad(&e))?;
    let msg = evidence_signing_input(EvidenceKind::Software, &"a".repeat(payload_bytes));
    let sig = agent.sign_b64(&msg);
    let ear = vec![b'e'; ear_bytes];
    let iters = iters.max(1);
    let t = Instant::now();
    for _ in 0..iters {
        if !verify_ed25519(agent.public_key(), &msg, &sig) {
            return Err(bad(&"signature did not verify"));
        }
        std::hint::black_box(signer.sign_b64(&ear));
    }
    Ok(t.elapsed() / iters as u32)
}

/// 32 bytes distinct for each `i` (nonces need distinct random parts; the bench needs no
/// secrecy).
fn rand32(i: u64) -> [u8; 32] {
    let mut b = [0x5a; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b[8..16].copy_from_slice(&unix_now().to_be_bytes());
    b
}
