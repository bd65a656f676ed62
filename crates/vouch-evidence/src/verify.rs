//! Verifier side: check evidence and turn it into claims for the policy.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use vouch_core::{
    ComponentView, Evidence, EvidenceKind, MAX_EVIDENCE_BYTES, SoftwareMeasurements,
    evidence_signing_input,
};

use crate::parts::{HeldPart, PartSource, resolve_parts, take_parts};
use crate::{AgentKey, EvidenceError, verify_ed25519};

/// A trusted signer of critical components (reference value kind `signer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Name the policy refers to.
    pub name: String,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
}

/// What the verifier knows about a node's TPM before looking at `tpm` evidence.
#[derive(Debug, Clone)]
pub struct TpmContext {
    /// The activated AK (with its qualified name).
    pub ak: vouch_tpm::Ak,
    /// The AK's TPM name (nameAlg ‖ digest of its public area), which the TEE report of
    /// `composite` evidence binds.
    pub ak_name: Vec<u8>,
    /// The clock of the last quote accepted from this AK.
    pub last_clock: Option<vouch_tpm::ClockInfo>,
    /// Allowed hashes and clock rules.
    pub policy: vouch_tpm::QuotePolicy,
    /// The manufacturer CA that certified the EK, if any.
    pub ek_issuer: Option<String>,
    /// Where this node's IMA replay stands.
    pub ima_state: Option<vouch_tpm::ImaState>,
    /// IMA allow list: path → allowed file digests (hex). A measured path outside a non-empty
    /// allow list, or with another digest, is a failure.
    pub ima_allow: std::collections::BTreeMap<String, Vec<String>>,
    /// IMA deny list: file digest (hex) → reason.
    pub ima_deny: std::collections::BTreeMap<String, String>,
}

/// What the verifier knows before looking at the evidence.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The enrolled public key that `evidence.key_id` names.
    pub public_key: &'a [u8],
    /// Trusted signers of critical components.
    pub signers: &'a [Signer],
    /// The node's TPM, when it enrolled one.
    pub tpm: Option<&'a TpmContext>,
    /// The vendor roots TEE evidence is checked against, when the verifier has any.
    pub tee: Option<&'a vouch_tee::TeeRoots>,
    /// The verification time, Unix seconds (certificates of TEE evidence are checked at it).
    pub now: u64,
    /// The measurement parts this verifier holds, for evidence that sends parts by digest.
    pub parts: Option<&'a dyn PartSource>,
}

/// Evidence whose signature verified, with its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEvidence {
    /// The nonce the evidence is bound to (still to be checked by the caller).
    pub nonce: String,
    /// The workload the evidence is about.
    pub workload_name: String,
    /// SHA-256 of the signed payload bytes, hex.
    pub evidence_sha256: String,
    /// Claims for the policy (`input`).
    pub claims: Value,
    /// For `tpm` evidence: the accepted quote's clock, to remember for the next quote.
    pub tpm_clock: Option<vouch_tpm::ClockInfo>,
    /// For `tpm` evidence with an IMA log: the new replay state.
    pub tpm_ima: Option<vouch_tpm::ImaState>,
    /// For evidence with more than one root of trust (`composite`): each component, appraised
    /// as if it had been sent alone (submodules `tpm`, `sev-snp`, …); empty otherwise.
    pub components: Vec<ComponentView>,
    /// Every part of the measurements ([`vouch_core::MEASUREMENT_PARTS`]) with the SHA-256
    /// of its JSON, for the verifier to hold so the agent may send it by digest next time.
    pub parts: Vec<(String, HeldPart)>,
    /// The HPKE public key the measurements bound (`release_key`: evidence asking for a
    /// secret), base64url as sent; `None` in ordinary evidence.
    pub release_key: Option<String>,
}

/// One evidence kind's verifier.
pub trait EvidenceVerifier: Send + Sync {
    /// The kind this verifier handles.
    fn kind(&self) -> EvidenceKind;
    /// Verify the evidence and derive claims. Must not trust any field before its signature
    /// (or the kind's hardware root) has been checked.
    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError>;
}

/// Verifies `software` evidence: Ed25519 signature by the enrolled agent key.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoftwareVerifier;

/// Accepts `sample` evidence without any signature; its claims say so, and the default policy
/// rejects it. Useful to try policies and for demos.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleVerifier;

/// The verifier for `kind`.
pub fn verifier_for(kind: EvidenceKind) -> Option<&'static dyn EvidenceVerifier> {
    match kind {
        EvidenceKind::Software => Some(&SoftwareVerifier),
        EvidenceKind::Sample => Some(&SampleVerifier),
        EvidenceKind::Tpm => Some(&TpmVerifier),
        EvidenceKind::Tee => Some(&TeeVerifier),
        EvidenceKind::Composite => Some(&CompositeVerifier),
        _ => None,
    }
}

/// Decode and parse a payload, bounded by [`MAX_EVIDENCE_BYTES`].
pub fn decode_payload(payload_b64: &str) -> Result<(Vec<u8>, SoftwareMeasurements), EvidenceError> {
    if payload_b64.len() > MAX_EVIDENCE_BYTES.div_ceil(3) * 4 {
        return Err(EvidenceError::Malformed(format!(
            "payload larger than {MAX_EVIDENCE_BYTES} bytes"
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|e| EvidenceError::Malformed(format!("payload is not base64url: {e}")))?;
    let m = serde_json::from_slice(&bytes).map_err(|e| {
        EvidenceError::Malformed(format!("payload is not software measurements: {e}"))
    })?;
    Ok((bytes, m))
}

/// Sign measurements as `software` evidence.
pub fn sign_software_evidence(
    key: &AgentKey,
    key_id: &str,
    measurements: &SoftwareMeasurements,
) -> Result<Evidence, EvidenceError> {
    let json =
        serde_json::to_vec(measurements).map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    let payload = URL_SAFE_NO_PAD.encode(json);
    let signature = key.sign_b64(&evidence_signing_input(EvidenceKind::Software, &payload));
    Ok(Evidence {
        kind: EvidenceKind::Software,
        key_id: key_id.to_string(),
        payload,
        signature,
    })
}

impl EvidenceVerifier for SoftwareVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Software
    }

    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        check_agent_signature(evidence, EvidenceKind::Software, ctx)?;
        verified(evidence, true, ctx)
    }
}

impl EvidenceVerifier for SampleVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Sample
    }

    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        verified(evidence, false, ctx)
    }
}

/// The evidence must be of `kind` and signed by the enrolled agent key. Checked first: nothing
/// in the payload is looked at before the signature verifies.
fn check_agent_signature(
    evidence: &Evidence,
    kind: EvidenceKind,
    ctx: &VerifyContext<'_>,
) -> Result<(), EvidenceError> {
    if evidence.kind != kind {
        return Err(EvidenceError::Unsupported(evidence.kind.as_str().into()));
    }
    let msg = evidence_signing_input(evidence.kind, &evidence.payload);
    if !verify_ed25519(ctx.public_key, &msg, &evidence.signature) {
        return Err(EvidenceError::Signature {
            key_id: evidence.key_id.clone(),
        });
    }
    Ok(())
}

/// Parse the payload (after any signature check) and derive its claims.
fn verified(
    evidence: &Evidence,
    signature_verified: bool,
    ctx: &VerifyContext<'_>,
) -> Result<VerifiedEvidence, EvidenceError> {
    let (bytes, m) = decode_payload(&evidence.payload)?;
    let m = resolve_parts(m, ctx.parts)?;
    let claims = claims_of(&m, evidence, signature_verified, ctx.signers);
    Ok(VerifiedEvidence::new(m, &bytes, claims))
}

impl VerifiedEvidence {
    /// Evidence about measurements `m` (whose exact bytes are `bytes`) with `claims`; no TPM
    /// state and no components until set.
    fn new(mut m: SoftwareMeasurements, bytes: &[u8], claims: Value) -> Self {
        let parts = take_parts(&mut m);
        Self {
            parts,
            claims,
            nonce: m.nonce,
            workload_name: m.workload.name,
            release_key: m.release_key,
            evidence_sha256: hex::encode(Sha256::digest(bytes)),
            tpm_clock: None,
            tpm_ima: None,
            components: Vec::new(),
        }
    }

    /// The same with the state of the quote it was checked with.
    fn with_quote(mut self, q: CheckedQuote) -> Self {
        self.tpm_clock = Some(q.clock);
        self.tpm_ima = q.ima;
        self
    }
}

/// Verifies `tpm` evidence: the agent's signature, then the quote by the node's activated AK
/// over the PCRs, bound by `extraData` to the nonce, the agent key and the exact software
/// measurements (which therefore count as hardware-backed).
#[derive(Debug, Default, Clone, Copy)]
pub struct TpmVerifier;

fn b64(s: &str, what: &str) -> Result<Vec<u8>, EvidenceError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| EvidenceError::Malformed(format!("{what} is not base64url: {e}")))
}

impl EvidenceVerifier for TpmVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tpm
    }

    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        check_agent_signature(evidence, EvidenceKind::Tpm, ctx)?;
        let p: vouch_core::TpmPayload = payload(evidence, "TPM evidence")?;
        let (bytes, m) = measurements(&p.measurements)?;
        let m = resolve_parts(m, ctx.parts)?;
        let mut q = check_quote(&p, &m, &bytes, ctx)?;
        let mut claims = claims_of(&m, evidence, true, ctx.signers);
        claims["evidence"]["hardware_backed"] = json!(true);
        claims["tpm"] = std::mem::take(&mut q.claims);
        Ok(VerifiedEvidence::new(m, &bytes, claims).with_quote(q))
    }
}

/// Verifies `tee` evidence: the agent's signature, then the TEE report against the vendor
/// roots, whose report data must bind the nonce, the agent key and the exact software
/// measurements (which therefore count as hardware-backed).
#[derive(Debug, Default, Clone, Copy)]
pub struct TeeVerifier;

impl EvidenceVerifier for TeeVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tee
    }

    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        check_agent_signature(evidence, EvidenceKind::Tee, ctx)?;
        let p: vouch_core::TeePayload = payload(evidence, "TEE evidence")?;
        let (bytes, m) = measurements(&p.measurements)?;
        let m = resolve_parts(m, ctx.parts)?;
        let report = vouch_core::TeeReport {
            tee: p.tee,
            report: p.report,
            certs: p.certs,
        };
        let expected = vouch_core::tee_report_data(&m.nonce, ctx.public_key, &bytes);
        let (_, tee) = check_tee(&report, ctx, &expected, "nonce, agent key and measurements")?;
        let mut claims = claims_of(&m, evidence, true, ctx.signers);
        claims["evidence"]["hardware_backed"] = json!(true);
        claims["tee"] = tee;
        Ok(VerifiedEvidence::new(m, &bytes, claims))
    }
}

/// Verifies `composite` evidence, one attester with two roots of trust (a confidential VM and
/// its vTPM): the agent's signature; the TPM quote exactly as for `tpm` evidence (the node's
/// activated AK, `extraData` over the nonce, agent key and measurements, clock, event log,
/// IMA); then the TEE report against the vendor roots, whose report data must bind the same
/// nonce, agent key and measurements and the name of the AK that quoted
/// ([`vouch_core::composite_report_data`]). Both must pass; the claims carry `tpm` and `tee`,
/// and [`VerifiedEvidence::components`] each part as if it had come alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompositeVerifier;

impl EvidenceVerifier for CompositeVerifier {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Composite
    }

    fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        check_agent_signature(evidence, EvidenceKind::Composite, ctx)?;
        let p: vouch_core::CompositePayload = payload(evidence, "composite evidence")?;
        let (bytes, m) = measurements(&p.tpm.measurements)?;
        let m = resolve_parts(m, ctx.parts)?;
        let mut q = check_quote(&p.tpm, &m, &bytes, ctx)?;
        let ak_name = &ctx.tpm.ok_or(EvidenceError::TpmNotEnrolled)?.ak_name;
        let expected = vouch_core::composite_report_data(&m.nonce, ctx.public_key, &bytes, ak_name);
        let (kind, tee) = check_tee(
            &p.tee,
            ctx,
            &expected,
            "nonce, agent key, measurements and the quoting AK",
        )?;
        if matches!(
            kind,
            vouch_tee::TeeKind::AzSnpVtpm | vouch_tee::TeeKind::AzTdxVtpm
        ) {
            let tpm = ctx.tpm.ok_or(EvidenceError::TpmNotEnrolled)?;
            check_azure_ak(&tee, &tpm.ak)?;
        }
        let (claims, components) = composite_claims(
            claims_of(&m, evidence, true, ctx.signers),
            std::mem::take(&mut q.claims),
            kind,
            tee,
        );
        let mut v = VerifiedEvidence::new(m, &bytes, claims).with_quote(q);
        v.components = components;
        Ok(v)
    }
}

/// The claims of `composite` evidence from its software claims (`base`), the quote's claims
/// (`input.tpm`) and the TEE's (`input.tee`), and its components: the TPM part (`tpm`
/// evidence without `tee`) and the TEE part (`tee` evidence without `tpm`, named by its kind).
pub fn composite_claims(
    mut base: Value,
    tpm: Value,
    tee_kind: vouch_tee::TeeKind,
    tee: Value,
) -> (Value, Vec<ComponentView>) {
    base["evidence"]["hardware_backed"] = json!(true);
    base["evidence"]["kind"] = json!(EvidenceKind::Composite.as_str());
    base["tpm"] = tpm;
    base["tee"] = tee;
    let view = |name: &str, kind, without: &str| ComponentView {
        name: name.into(),
        kind,
        without: vec![without.into()],
    };
    (
        base,
        vec![
            view("tpm", EvidenceKind::Tpm, "tee"),
            view(tee_kind.as_str(), EvidenceKind::Tee, "tpm"),
        ],
    )
}

/// Decode a kind's JSON payload (after its signature was checked), bounded.
fn payload<T: serde::de::DeserializeOwned>(
    evidence: &Evidence,
    what: &str,
) -> Result<T, EvidenceError> {
    if evidence.payload.len() > MAX_EVIDENCE_BYTES.div_ceil(3) * 4 {
        return Err(EvidenceError::Malformed("payload too large".into()));
    }
    serde_json::from_slice(&b64(&evidence.payload, "payload")?)
        .map_err(|e| EvidenceError::Malformed(format!("payload is not {what}: {e}")))
}

/// The measurements inside a hardware payload: their exact bytes and their parse.
fn measurements(b: &str) -> Result<(Vec<u8>, SoftwareMeasurements), EvidenceError> {
    let bytes = b64(b, "measurements")?;
    let m = serde_json::from_slice(&bytes).map_err(|e| {
        EvidenceError::Malformed(format!("measurements are not software measurements: {e}"))
    })?;
    Ok((bytes, m))
}

/// A quote that verified: its claims (`input.tpm`), clock and IMA replay state.
struct CheckedQuote {
    claims: Value,
    clock: vouch_tpm::ClockInfo,
    ima: Option<vouch_tpm::ImaState>,
}

/// Verify the quote of `p` by the node's activated AK: bound to the nonce, the agent key and
/// the measurements `bytes`, the clock moving forward, then IMA and the event log.
fn check_quote(
    p: &vouch_core::TpmPayload,
    m: &SoftwareMeasurements,
    bytes: &[u8],
    ctx: &VerifyContext<'_>,
) -> Result<CheckedQuote, EvidenceError> {
    let tpm = ctx.tpm.ok_or(EvidenceError::TpmNotEnrolled)?;
    let mut pcrs = vouch_tpm::PcrValues::default();
    for (bank, values) in &p.pcrs {
        let h = vouch_tpm::HashAlg::parse(bank)
            .ok_or_else(|| EvidenceError::Malformed(format!("unknown PCR bank {bank}")))?;
        let b = pcrs.0.entry(h).or_default();
        for (i, v) in values {
            let d = hex::decode(v)
                .map_err(|_| EvidenceError::Malformed(format!("PCR {bank}:{i} is not hex")))?;
            b.insert(*i, d);
        }
    }
    let expected = vouch_core::tpm_extra_data(&m.nonce, ctx.public_key, bytes);
    let q = vouch_tpm::verify_quote(
        &tpm.ak,
        &b64(&p.attest, "attest")?,
        &b64(&p.quote_signature, "quote_signature")?,
        &pcrs,
        &expected,
        &tpm.policy,
    )?;
    vouch_tpm::check_clock_progress(tpm.last_clock.as_ref(), &q.clock)?;
    let (ima_claims, ima_state) = ima(tpm, p, &pcrs, &q.clock)?;
    let boot = match &p.eventlog {
        Some(log) => eventlog(log, &pcrs)?,
        None => Value::Null,
    };
    Ok(CheckedQuote {
        claims: json!({
            "pcrs": pcrs.to_hex(),
            "firmware_version": format!("{:016x}", q.firmware_version),
            // Not the millisecond counter, which moves with every quote (the verifier checks
            // that it moves forward): claims that repeat let the appraisal be reused.
            "clock": clock_claims(&q.clock),
            "signature": q.signature,
            "qualified_signer": q.qualified_signer,
            "ek_issuer": tpm.ek_issuer,
            "ima": ima_claims,
            "eventlog": boot,
        }),
        clock: q.clock,
        ima: ima_state,
    })
}

/// The TPM clock as claims: resets, restarts and whether it is safe.
pub fn clock_claims(c: &vouch_tpm::ClockInfo) -> Value {
    json!({"reset_count": c.reset_count, "restart_count": c.restart_count, "safe": c.safe})
}

/// Azure confidential VMs in `composite` evidence: the node's enrolled AK must be the vTPM AK
/// the hardware report vouches for (the runtime data's `HCLAkPub`, whose SHA-256 of the RSA
/// modulus the verified claims carry as `details.runtime_data.ak_sha256`), so the TPM part
/// comes from the vTPM of that confidential VM and not from another TPM whose AK name the
/// guest put in the report data.
pub fn check_azure_ak(tee_claims: &Value, ak: &vouch_tpm::Ak) -> Result<(), EvidenceError> {
    let want = tee_claims["details"]["runtime_data"]["ak_sha256"]
        .as_str()
        .ok_or_else(|| {
            EvidenceError::Tee("Azure TEE claims without the runtime data's AK".into())
        })?;
    let vouch_tpm::PublicKey::Rsa { n, .. } = &ak.key else {
        return Err(EvidenceError::Tee(
            "the node's AK is not an RSA key with a TPM public area, so it cannot be the \
             Azure vTPM's HCLAkPub"
                .into(),
        ));
    };
    let got = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, n));
    if got != want {
        return Err(EvidenceError::Tee(
            "the node's AK is not the Azure vTPM AK (HCLAkPub) the hardware report vouches for"
                .into(),
        ));
    }
    Ok(())
}

/// Verify a TEE report against the verifier's vendor roots at `ctx.now` and require its report
/// data to be `expected` (`binds` says what that value binds, for the error). Returns the TEE
/// kind and its claims (`input.tee`).
fn check_tee(
    r: &vouch_core::TeeReport,
    ctx: &VerifyContext<'_>,
    expected: &[u8],
    binds: &str,
) -> Result<(vouch_tee::TeeKind, Value), EvidenceError> {
    let kind = vouch_tee::TeeKind::parse(&r.tee)
        .ok_or_else(|| EvidenceError::Malformed(format!("unknown TEE kind {:?}", r.tee)))?;
    let roots = ctx.tee.ok_or_else(|| {
        EvidenceError::Tee("this verifier has no TEE roots configured (tee_roots_dir)".into())
    })?;
    if r.certs.len() > 8 {
        return Err(EvidenceError::Malformed("more than 8 certificates".into()));
    }
    let certs = r
        .certs
        .iter()
        .map(|c| b64(c, "certificate"))
        .collect::<Result<Vec<_>, _>>()?;
    let v = roots
        .verify(kind, &b64(&r.report, "report")?, &certs, ctx.now)
        .map_err(|e| EvidenceError::Tee(e.to_string()))?;
    if v.report_data != expected {
        return Err(EvidenceError::Tee(format!(
            "the {} report data does not bind this {binds}",
            kind.as_str()
        )));
    }
    Ok((kind, v.claims))
}

/// Parse the firmware event log, require that it replays to the quoted PCRs, and derive the
/// boot claims from the PCRs it was checked against (SHA-256 preferred).
fn eventlog(log: &str, pcrs: &vouch_tpm::PcrValues) -> Result<Value, EvidenceError> {
    if log.len() > vouch_tpm::MAX_EVENT_LOG.div_ceil(3) * 4 {
        return Err(EvidenceError::Malformed("event log too large".into()));
    }
    let log = vouch_tpm::EventLog::parse(&b64(log, "eventlog")?)?;
    let checked = log.check(pcrs)?;
    let (bank, verified) = checked
        .get_key_value(&vouch_tpm::HashAlg::Sha256)
        .or_else(|| checked.iter().next())
        .ok_or_else(|| EvidenceError::Malformed("event log checked against no bank".into()))?;
    let mut claims = serde_json::to_value(log.claims(*bank, verified))
        .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    claims["verified_pcrs"] = json!(verified);
    Ok(claims)
}

/// Replay the IMA slice (if any) to the quoted PCR 10 and appraise the new entries against the
/// allow and deny lists. Failures are sticky for the boot. Once this boot's list has been
/// replayed, IMA cannot be skipped: a quote without the slice must show PCR 10 where the
/// replay left it.
fn ima(
    tpm: &TpmContext,
    p: &vouch_core::TpmPayload,
    pcrs: &vouch_tpm::PcrValues,
    clock: &vouch_tpm::ClockInfo,
) -> Result<(Value, Option<vouch_tpm::ImaState>), EvidenceError> {
    let same_boot = tpm
        .ima_state
        .as_ref()
        .filter(|s| s.reset_count == Some(clock.reset_count));
    let quoted: Vec<(vouch_tpm::HashAlg, Vec<u8>)> = pcrs
        .0
        .iter()
        .filter_map(|(h, b)| b.get(&10).map(|v| (*h, v.clone())))
        .collect();
    let Some(slice) = &p.ima else {
        let Some(s) = same_boot else {
            return Ok((Value::Null, None));
        };
        s.check_unmoved(&quoted)?;
        return Ok((
            json!({"position": s.position, "new_entries": 0, "failures": s.failures}),
            None,
        ));
    };
    let entries = vouch_tpm::parse_ima_log(&slice.log)?;
    let base = match same_boot {
        // The list again from its first entry: a fresh replay that keeps this boot's failures.
        _ if slice.start == 0 => vouch_tpm::ImaState {
            reset_count: Some(clock.reset_count),
            failures: same_boot.map(|s| s.failures.clone()).unwrap_or_default(),
            ..Default::default()
        },
        Some(s) if s.position == slice.start => s.clone(),
        other => {
            return Err(EvidenceError::Tpm(vouch_tpm::TpmError::Invalid(format!(
                "IMA slice starts at entry {} but the verifier has replayed {}; send the log from entry 0",
                slice.start,
                other.map_or(0, |s| s.position)
            ))));
        }
    };
    let (mut state, n) = base.replay_to(&entries, &quoted)?;
    let mut failures = Vec::new();
    for e in &entries[..n] {
        if e.is_violation() {
            continue;
        }
        let digest = hex::encode(&e.file_hash);
        if let Some(reason) = tpm.ima_deny.get(&digest) {
            failures.push(format!("{} ({digest}) is denied: {reason}", e.path));
        } else if !tpm.ima_allow.is_empty() {
            match tpm.ima_allow.get(&e.path) {
                None => failures.push(format!("{} is not in the IMA allow list", e.path)),
                Some(allowed) if !allowed.contains(&digest) => failures.push(format!(
                    "{} has digest {digest}, not an allowed one",
                    e.path
                )),
                Some(_) => {}
            }
        }
    }
    state.add_failures(failures);
    let claims = json!({"position": state.position, "new_entries": n, "failures": state.failures});
    Ok((claims, Some(state)))
}

fn signers_of(digest_hex: Option<&str>, sig: Option<&str>, signers: &[Signer]) -> Vec<String> {
    let (Some(d), Some(sig)) = (digest_hex, sig) else {
        return Vec::new();
    };
    let Ok(digest) = hex::decode(d) else {
        return Vec::new();
    };
    signers
        .iter()
        .filter(|s| verify_ed25519(&s.public_key, &digest, sig))
        .map(|s| s.name.clone())
        .collect()
}

/// Build the policy input from verified measurements.
fn claims_of(
    m: &SoftwareMeasurements,
    evidence: &Evidence,
    signature_verified: bool,
    signers: &[Signer],
) -> Value {
    let mut files = Map::new();
    for f in &m.files {
        files.insert(
            f.path.clone(),
            json!({
                "sha256": f.sha256,
                "signers": signers_of(f.sha256.as_deref(), f.signature.as_deref(), signers),
                "error": f.error,
            }),
        );
    }
    let w = &m.workload;
    json!({
        "evidence": {
            "kind": evidence.kind.as_str(),
            "key_id": evidence.key_id,
            "signature_verified": signature_verified,
            "hardware_backed": false,
        },
        "hostname": m.hostname,
        "workload": {
            "name": w.name,
            "exe_path": w.exe_path,
            "exe_sha256": w.exe_sha256,
            "image_digest": w.image_digest,
            "containers": w.containers,
            "containers_unlisted": w.containers_unlisted,
            "signers": signers_of(Some(&w.exe_sha256), w.exe_signature.as_deref(), signers),
        },
        "files": files,
        "os": m.os,
        "kernel": m.kernel,
        "processes": m.processes,
        "listening": m.listening,
        "packages": m.packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_core::WorkloadMeasurement;

    fn measurements() -> SoftwareMeasurements {
        SoftwareMeasurements {
            nonce: "N".into(),
            collected_at: 5,
            workload: WorkloadMeasurement {
                name: "app".into(),
                exe_path: "/bin/app".into(),
                exe_sha256: "00".repeat(32),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn verifies_and_every_flipped_payload_byte_fails() {
        let k = AgentKey::generate().unwrap();
        let ev = sign_software_evidence(&k, "k1", &measurements()).unwrap();
        let ctx = VerifyContext {
            public_key: k.public_key(),
            signers: &[],
            tpm: None,
            tee: None,
            now: 0,
            parts: None,
        };
        let v = SoftwareVerifier.verify(&ev, &ctx).unwrap();
        assert_eq!(v.nonce, "N");
        assert_eq!(v.claims["evidence"]["signature_verified"], true);

        let raw = URL_SAFE_NO_PAD.decode(&ev.payload).unwrap();
        for i in (0..raw.len()).step_by(7) {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            let mut bad = ev.clone();
            bad.payload = URL_SAFE_NO_PAD.encode(&t);
            assert!(matches!(
                SoftwareVerifier.verify(&bad, &ctx),
                Err(EvidenceError::Signature { .. })
            ));
        }
    }

    #[test]
    fn wrong_key_and_kind_confusion_fail() {
        let k = AgentKey::generate().unwrap();
        let other = AgentKey::generate().unwrap();
        let ev = sign_software_evidence(&k, "k1", &measurements()).unwrap();
        let ctx = VerifyContext {
            public_key: other.public_key(),
            signers: &[],
            tpm: None,
            tee: None,
            now: 0,
            parts: None,
        };
        assert!(SoftwareVerifier.verify(&ev, &ctx).is_err());
        // A software signature does not verify when relabelled as another kind.
        let mut relabelled = ev.clone();
        relabelled.kind = EvidenceKind::Sample;
        let ctx = VerifyContext {
            public_key: k.public_key(),
            signers: &[],
            tpm: None,
            tee: None,
            now: 0,
            parts: None,
        };
        assert!(SoftwareVerifier.verify(&relabelled, &ctx).is_err());
        let v = SampleVerifier.verify(&relabelled, &ctx).unwrap();
        assert_eq!(v.claims["evidence"]["signature_verified"], false);
    }

    #[test]
    fn signed_component_names_its_signer() {
        let vendor = AgentKey::generate().unwrap();
        let mut m = measurements();
        let digest = hex::decode(&m.workload.exe_sha256).unwrap();
        m.workload.exe_signature = Some(vendor.sign_b64(&digest));
        let k = AgentKey::generate().unwrap();
        let ev = sign_software_evidence(&k, "k1", &m).unwrap();
        let signers = [Signer {
            name: "vendor".into(),
            public_key: vendor.public_key().to_vec(),
        }];
        let ctx = VerifyContext {
            public_key: k.public_key(),
            signers: &signers,
            tpm: None,
            tee: None,
            now: 0,
            parts: None,
        };
        let v = SoftwareVerifier.verify(&ev, &ctx).unwrap();
        assert_eq!(v.claims["workload"]["signers"], json!(["vendor"]));
        // A signature over another digest names no one.
        m.workload.exe_sha256 = "11".repeat(32);
        let ev = sign_software_evidence(&k, "k1", &m).unwrap();
        let v = SoftwareVerifier.verify(&ev, &ctx).unwrap();
        assert_eq!(v.claims["workload"]["signers"], json!([]));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for p in ["***", "", &"A".repeat(MAX_EVIDENCE_BYTES * 2)] {
            assert!(decode_payload(p).is_err());
        }
    }
}
