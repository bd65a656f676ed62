//! Offline verification of Rekor transparency-log entries, as sigstore bundles carry them in
//! `verificationMaterial.tlogEntries[]` (and cosign's older `dev.sigstore.cosign/bundle`
//! annotation carries the signed entry timestamp alone).
//!
//! [`verify_entry`] accepts an entry only when, in this order:
//!
//! 1. its `logId` is one of the transparency logs of a sigstore `trusted_root.json`
//!    ([`TransparencyLog::from_trusted_root`]), matched by the SHA-256 of the log key's DER
//!    SubjectPublicKeyInfo computed here (the root's own `logId` field is not trusted);
//! 2. its `canonicalizedBody` (within [`MAX_BODY_BYTES`]) is a `hashedrekord` 0.0.1 or `dsse`
//!    0.0.1 entry of the kind `kindVersion` names, and names, field by field, the same
//!    artifact or payload digest, the same signature(s) and the same certificate as the
//!    bundle ([`Expected`]): a valid entry for another artifact does not pass;
//! 3. the signed entry timestamp (`inclusionPromise.signedEntryTimestamp`) verifies under the
//!    log key over the canonical JSON `{"body","integratedTime","logID","logIndex"}`: this is
//!    what makes `integratedTime` trustworthy;
//! 4. when an inclusion proof is present (required with [`Require::Proof`]): the RFC 6962 /
//!    RFC 9162 audit path from the leaf hash `SHA-256(0x00 || body)` at the proof's index
//!    leads to its root hash for its tree size, and the proof's checkpoint (a signed note:
//!    origin, tree size, base64 root hash, then `— <name> <base64(key hint || signature)>`
//!    lines) names that size and root and is signed by the same log key;
//! 5. `integratedTime` lies within the log key's `validFor` and within the signing
//!    certificate's validity.

use crate::provenance::VerifyingKey;
use base64::Engine as _;
use sha2::Digest as _;

/// Longest `canonicalizedBody` (decoded) read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most hashes read in one inclusion proof (a tree of 2^64 leaves needs 64).
pub const MAX_PROOF_HASHES: usize = 64;
/// Longest checkpoint read.
pub const MAX_CHECKPOINT_BYTES: usize = 16 * 1024;
/// Most transparency logs read from a trusted root.
pub const MAX_LOGS: usize = 64;
/// Most transparency-log entries looked at in one bundle.
pub const MAX_ENTRIES: usize = 8;

/// Why a transparency-log entry is refused.
#[derive(Debug, thiserror::Error)]
pub enum RekorError {
    /// The entry (or the bundle holding it) is malformed.
    #[error("transparency-log entry: {0}")]
    Entry(String),
    /// The trusted root's logs could not be read, or none matches the entry's log id.
    #[error("transparency log: {0}")]
    Log(String),
    /// The entry's body does not name the bundle's artifact, signature or certificate.
    #[error("transparency-log body: {0}")]
    Body(String),
    /// The signed entry timestamp is missing or does not verify.
    #[error("signed entry timestamp: {0}")]
    Promise(String),
    /// The inclusion proof is missing or does not lead to its root hash.
    #[error("inclusion proof: {0}")]
    Proof(String),
    /// The checkpoint is malformed, names another tree, or is not signed by the log.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The entry's time is outside the log key's or the certificate's validity.
    #[error("integrated time: {0}")]
    Time(String),
}

fn b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(s.trim())
}

/// A transparency log trusted to time-stamp and include entries.
#[derive(Debug, Clone)]
pub struct TransparencyLog {
    /// The log's base URL, as the trusted root names it.
    pub base_url: String,
    /// SHA-256 of the log key's DER SubjectPublicKeyInfo.
    pub log_id: [u8; 32],
    key: VerifyingKey,
    /// Unix time the key became valid.
    pub valid_from: u64,
    /// Unix time the key stopped being valid, if it did.
    pub valid_until: Option<u64>,
}

impl TransparencyLog {
    /// A log from its key (DER SubjectPublicKeyInfo) and validity.
    pub fn from_spki_der(
        base_url: &str,
        der: &[u8],
        valid_from: u64,
        valid_until: Option<u64>,
    ) -> Result<Self, RekorError> {
        let key = VerifyingKey::from_spki_der(der).map_err(|e| RekorError::Log(e.to_string()))?;
        Ok(Self {
            base_url: base_url.to_string(),
            log_id: sha2::Sha256::digest(der).into(),
            key,
            valid_from,
            valid_until,
        })
    }

    /// The transparency logs (`tlogs[]`) of a sigstore `trusted_root.json`. Logs whose key is
    /// of a kind not supported here are skipped; a root with none left is refused.
    pub fn from_trusted_root(trusted_root: &[u8]) -> Result<Vec<Self>, RekorError> {
        let bad = |m: String| RekorError::Log(m);
        if trusted_root.len() > crate::provenance::MAX_TRUSTED_ROOT_BYTES {
            return Err(bad("trusted root larger than allowed".into()));
        }
        let root: serde_json::Value = serde_json::from_slice(trusted_root)
            .map_err(|e| bad(format!("trusted root is not JSON: {e}")))?;
        let tlogs = root["tlogs"]
            .as_array()
            .ok_or_else(|| bad("trusted root has no tlogs".into()))?;
        let mut out = Vec::new();
        for t in tlogs.iter().take(MAX_LOGS) {
            let pk = &t["publicKey"];
            let Some(raw) = pk["rawBytes"].as_str() else {
                continue;
            };
            let der = b64(raw).map_err(|e| bad(format!("log key is not base64: {e}")))?;
            let start = pk["validFor"]["start"]
                .as_str()
                .and_then(parse_rfc3339)
                .ok_or_else(|| bad("log key without a validFor start".into()))?;
            let end = match pk["validFor"]["end"].as_str() {
                Some(s) => {
                    Some(parse_rfc3339(s).ok_or_else(|| bad(format!("validFor end {s:?}")))?)
                }
                None => None,
            };
            if let Ok(log) =
                Self::from_spki_der(t["baseUrl"].as_str().unwrap_or(""), &der, start, end)
            {
                out.push(log);
            }
        }
        if out.is_empty() {
            return Err(bad("trusted root has no usable transparency-log key".into()));
        }
        Ok(out)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` to Unix seconds (the fraction is dropped).
fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let s = match s.split_once('.') {
        Some((whole, frac)) if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) => {
            whole
        }
        Some(_) => return None,
        None => s,
    };
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

/// What the entry's body must name: the bundle's own content.
#[derive(Debug, Clone)]
pub enum Expected {
    /// A `hashedrekord` entry: a signature over an artifact by a certificate's key.
    HashedRekord {
        /// SHA-256 of the signed artifact (for a cosign image signature, of the
        /// simple-signing payload).
        sha256: [u8; 32],
        /// The signature bytes.
        signature: Vec<u8>,
        /// The signing certificate, DER.
        certificate: Vec<u8>,
    },
    /// A `dsse` entry: an envelope's payload and signatures by a certificate's key.
    Dsse {
        /// SHA-256 of the envelope's payload bytes.
        payload_sha256: [u8; 32],
        /// SHA-256 of the envelope as canonical JSON (RFC 8785: keys sorted, no white
        /// space), as Rekor computes `envelopeHash`; checked when given.
        envelope_sha256: Option<[u8; 32]>,
        /// Every signature of the envelope.
        signatures: Vec<Vec<u8>>,
        /// The signing certificate, DER.
        certificate: Vec<u8>,
    },
}

/// What must be present in an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// The signed entry timestamp and an inclusion proof with its signed checkpoint (sigstore
    /// bundles v0.2 and later).
    Proof,
    /// The signed entry timestamp; an inclusion proof is checked only when present (cosign's
    /// `dev.sigstore.cosign/bundle` annotation carries none).
    Promise,
}

/// An entry whose checks passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedEntry {
    /// The log's base URL.
    pub log_url: String,
    /// The entry's index in the log.
    pub log_index: u64,
    /// The time the log integrated the entry (Unix seconds), signed by the log.
    pub integrated_time: u64,
    /// The tree size the inclusion proof was checked against, when there was one.
    pub tree_size: Option<u64>,
}

fn int_field(v: &serde_json::Value, what: &str) -> Result<u64, RekorError> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| RekorError::Entry(format!("{what} is not an unsigned integer")))
}

/// Verify a bundle's transparency-log entry (`tlogEntries[i]` of a sigstore bundle, JSON)
/// against the trusted `logs`, that it names `expected`, and that its time lies in
/// `cert_validity` (not before, not after, Unix seconds): see the [module](self)
/// documentation for each check.
pub fn verify_entry(
    entry: &serde_json::Value,
    logs: &[TransparencyLog],
    expected: &Expected,
    cert_validity: (u64, u64),
    require: Require,
) -> Result<VerifiedEntry, RekorError> {
    let bad = |m: String| RekorError::Entry(m);
    let log_id = entry["logId"]["keyId"]
        .as_str()
        .ok_or_else(|| bad("no logId.keyId".into()))
        .and_then(|s| b64(s).map_err(|e| bad(format!("logId is not base64: {e}"))))?;
    let log = logs
        .iter()
        .find(|l| l.log_id.as_slice() == log_id.as_slice())
        .ok_or_else(|| {
            RekorError::Log(format!(
                "log {} is not one of the {} trusted log(s)",
                hex::encode(&log_id),
                logs.len()
            ))
        })?;
    let log_index = int_field(&entry["logIndex"], "logIndex")?;
    let integrated_time = int_field(&entry["integratedTime"], "integratedTime")?;
    let body_b64 = entry["canonicalizedBody"]
        .as_str()
        .ok_or_else(|| bad("no canonicalizedBody".into()))?;
    if body_b64.len() > MAX_BODY_BYTES / 3 * 4 + 4 {
        return Err(bad(format!("body longer than {MAX_BODY_BYTES} bytes")));
    }
    let body = b64(body_b64).map_err(|e| bad(format!("body is not base64: {e}")))?;
    check_body(&body, &entry["kindVersion"], expected)?;

    // The signed entry timestamp: the log's promise to include this body at this time.
    let set = entry["inclusionPromise"]["signedEntryTimestamp"]
        .as_str()
        .ok_or_else(|| RekorError::Promise("missing".into()))
        .and_then(|s| b64(s).map_err(|e| RekorError::Promise(format!("not base64: {e}"))))?;
    let promised = serde_json::to_vec(&PromiseBody {
        body: body_b64,
        integrated_time,
        log_id: hex::encode(log.log_id),
        log_index,
    })
    .map_err(|e| RekorError::Promise(e.to_string()))?;
    if !log.key.verifies(&promised, &set) {
        return Err(RekorError::Promise(format!(
            "does not verify under the key of {}",
            log.base_url
        )));
    }

    let proof = &entry["inclusionProof"];
    let tree_size = if proof.is_null() {
        if require == Require::Proof {
            return Err(RekorError::Proof("missing".into()));
        }
        None
    } else {
        Some(check_inclusion(proof, &body, log)?)
    };

    if integrated_time < log.valid_from || log.valid_until.is_some_and(|u| integrated_time > u) {
        return Err(RekorError::Time(format!(
            "{integrated_time} is outside the validity of the key of {} ({}..{})",
            log.base_url,
            log.valid_from,
            log.valid_until.map(|u| u.to_string()).unwrap_or_default()
        )));
    }
    let (not_before, not_after) = cert_validity;
    if integrated_time < not_before || integrated_time > not_after {
        return Err(RekorError::Time(format!(
            "{integrated_time} is outside the signing certificate's validity \
             ({not_before}..{not_after}): the signature was not logged while it was valid"
        )));
    }
    Ok(VerifiedEntry {
        log_url: log.base_url.clone(),
        log_index,
        integrated_time,
        tree_size,
    })
}

/// Rekor's signed entry timestamp payload; field order is RFC 8785 canonical (sorted keys),
/// and none of the values needs escaping.
#[derive(serde::Serialize)]
struct PromiseBody<'a> {
    body: &'a str,
    #[serde(rename = "integratedTime")]
    integrated_time: u64,
    #[serde(rename = "logID")]
    log_id: String,
    #[serde(rename = "logIndex")]
    log_index: u64,
}

/// The certificate a body names: base64 of PEM, compared as DER.
fn body_certificate(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, RekorError> {
    let s = v
        .as_str()
        .ok_or_else(|| RekorError::Body(format!("no {what}")))?;
    let pem = b64(s).map_err(|e| RekorError::Body(format!("{what} is not base64: {e}")))?;
    let pem =
        String::from_utf8(pem).map_err(|_| RekorError::Body(format!("{what} is not PEM text")))?;
    match vouch_x509::pem_blocks(&pem, "CERTIFICATE")
        .into_iter()
        .next()
    {
        Some(Ok(der)) => Ok(der),
        _ => Err(RekorError::Body(format!("{what} holds no PEM certificate"))),
    }
}

fn sha256_field(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, RekorError> {
    if v["algorithm"].as_str() != Some("sha256") {
        return Err(RekorError::Body(format!("{what} is not a sha256 hash")));
    }
    v["value"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .filter(|h| h.len() == 32)
        .ok_or_else(|| RekorError::Body(format!("{what} is not 32 bytes of hex")))
}

fn check_body(
    body: &[u8],
    kind_version: &serde_json::Value,
    expected: &Expected,
) -> Result<(), RekorError> {
    let bad = |m: String| RekorError::Body(m);
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    let (kind, version) = (v["kind"].as_str(), v["apiVersion"].as_str());
    // The bundle's kindVersion is a hint; when given it must agree with the signed body.
    if !kind_version.is_null()
        && (kind_version["kind"].as_str() != kind || kind_version["version"].as_str() != version)
    {
        return Err(bad(format!(
            "kindVersion {kind_version} does not match the body's {kind:?} {version:?}"
        )));
    }
    let spec = &v["spec"];
    match (expected, kind, version) {
        (
            Expected::HashedRekord {
                sha256,
                signature,
                certificate,
            },
            Some("hashedrekord"),
            Some("0.0.1"),
        ) => {
            if sha256_field(&spec["data"]["hash"], "data.hash")? != sha256.as_slice() {
                return Err(bad("names another artifact digest".into()));
            }
            let sig = spec["signature"]["content"]
                .as_str()
                .and_then(|s| b64(s).ok())
                .ok_or_else(|| bad("signature.content is not base64".into()))?;
            if &sig != signature {
                return Err(bad("names another signature".into()));
            }
            if &body_certificate(&spec["signature"]["publicKey"]["content"], "public key")?
                != certificate
            {
                return Err(bad("names another certificate".into()));
            }
            Ok(())
        }
        (
            Expected::Dsse {
                payload_sha256,
                envelope_sha256,
                signatures,
                certificate,
            },
            Some("dsse"),
            Some("0.0.1"),
        ) => {
            if sha256_field(&spec["payloadHash"], "payloadHash")? != payload_sha256.as_slice() {
                return Err(bad("names another payload digest".into()));
            }
            let listed = spec["signatures"]
                .as_array()
                .filter(|a| !a.is_empty() && a.len() <= crate::provenance::MAX_SIGNATURES)
                .ok_or_else(|| bad("no signatures (or too many)".into()))?;
            if listed.len() != signatures.len() {
                return Err(bad(format!(
                    "{} signature(s), the envelope has {}",
                    listed.len(),
                    signatures.len()
                )));
            }
            for s in listed {
                let sig = s["signature"]
                    .as_str()
                    .and_then(|s| b64(s).ok())
                    .ok_or_else(|| bad("a signature is not base64".into()))?;
                if !signatures.contains(&sig) {
                    return Err(bad("names a signature the envelope does not carry".into()));
                }
                if &body_certificate(&s["verifier"], "verifier")? != certificate {
                    return Err(bad("names another certificate".into()));
                }
            }
            if let Some(want) = envelope_sha256
                && sha256_field(&spec["envelopeHash"], "envelopeHash")? != want.as_slice()
            {
                return Err(bad(
                    "names another envelope (its type, payload or signatures differ)".into(),
                ));
            }
            Ok(())
        }
        (_, k, ver) => Err(bad(format!(
            "kind {k:?} version {ver:?} is not the {} this bundle needs",
            match expected {
                Expected::HashedRekord { .. } => "hashedrekord 0.0.1",
                Expected::Dsse { .. } => "dsse 0.0.1",
            }
        ))),
    }
}

fn node(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The RFC 6962 leaf hash of an entry body.
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

/// The root an RFC 9162 (section 2.1.3.2) inclusion proof leads to for `leaf` at `index` in a
/// tree of `size` leaves, or why the proof is malformed.
pub fn root_from_inclusion_proof(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    path: &[[u8; 32]],
) -> Result<[u8; 32], String> {
    if index >= size {
        return Err(format!("index {index} is not below the tree size {size}"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if snode == 0 {
            return Err("longer than the tree is deep".into());
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err("shorter than the tree is deep".into());
    }
    Ok(r)
}

fn hash32(s: Option<&str>, what: &str) -> Result<[u8; 32], RekorError> {
    s.and_then(|s| b64(s).ok())
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .ok_or_else(|| RekorError::Proof(format!("{what} is not 32 bytes of base64")))
}

/// Check an inclusion proof and its checkpoint; the tree size.
fn check_inclusion(
    proof: &serde_json::Value,
    body: &[u8],
    log: &TransparencyLog,
) -> Result<u64, RekorError> {
    let index = int_field(&proof["logIndex"], "inclusionProof.logIndex")?;
    let size = int_field(&proof["treeSize"], "inclusionProof.treeSize")?;
    let root = hash32(proof["rootHash"].as_str(), "rootHash")?;
    let hashes = proof["hashes"]
        .as_array()
        .filter(|h| h.len() <= MAX_PROOF_HASHES)
        .ok_or_else(|| RekorError::Proof(format!("no hashes (or more than {MAX_PROOF_HASHES})")))?;
    let path = hashes
        .iter()
        .map(|h| hash32(h.as_str(), "a proof hash"))
        .collect::<Result<Vec<_>, _>>()?;
    let got = root_from_inclusion_proof(leaf_hash(body), index, size, &path)
        .map_err(RekorError::Proof)?;
    if got != root {
        return Err(RekorError::Proof(format!(
            "the path from leaf {index} leads to {}, not the root hash {}",
            hex::encode(got),
            hex::encode(root)
        )));
    }
    let note = proof["checkpoint"]["envelope"]
        .as_str()
        .ok_or_else(|| RekorError::Checkpoint("missing".into()))?;
    let cp = Checkpoint::parse(note)?;
    if cp.size != size || cp.root != root {
        return Err(RekorError::Checkpoint(format!(
            "names tree size {} root {}, the proof's is {size} {}",
            cp.size,
            hex::encode(cp.root),
            hex::encode(root)
        )));
    }
    cp.verify(log)?;
    Ok(size)
}

/// A parsed (not yet verified) checkpoint: a signed note in the transparency-log format.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The origin line (the log's name).
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: [u8; 32],
    /// The signed text: every line up to and including the one before the blank line.
    pub text: String,
    /// Each signature line's name, 4-byte key hint and signature.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

impl Checkpoint {
    /// Parse a checkpoint from untrusted text.
    pub fn parse(note: &str) -> Result<Self, RekorError> {
        let bad = |m: &str| RekorError::Checkpoint(m.to_string());
        if note.len() > MAX_CHECKPOINT_BYTES {
            return Err(bad("longer than allowed"));
        }
        let (text, sigs) = note
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = format!("{text}\n");
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin"))?;
        let size = lines
            .next()
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| bad("no tree size"))?;
        let root = lines
            .next()
            .and_then(|l| b64(l).ok())
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .ok_or_else(|| bad("no 32-byte base64 root hash"))?;
        let mut signatures = Vec::new();
        for line in sigs.lines().take(16) {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
            let (name, sig) = rest
                .rsplit_once(' ')
                .ok_or_else(|| bad("a signature line without a signature"))?;
            let raw = b64(sig).map_err(|_| bad("a signature is not base64"))?;
            if raw.len() < 5 {
                return Err(bad("a signature shorter than its key hint"));
            }
            let hint = [raw[0], raw[1], raw[2], raw[3]];
            signatures.push((name.to_string(), hint, raw[4..].to_vec()));
        }
        if signatures.is_empty() {
            return Err(bad("no signature"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            text,
            signatures,
        })
    }

    /// Whether one signature, hinted for `log`'s key, verifies under it over the note text.
    pub fn verify(&self, log: &TransparencyLog) -> Result<(), RekorError> {
        let ok = self.signatures.iter().any(|(_, hint, sig)| {
            hint.as_slice() == &log.log_id[..4] && log.key.verifies(self.text.as_bytes(), sig)
        });
        if ok {
            Ok(())
        } else {
            Err(RekorError::Checkpoint(format!(
                "none of {} signature(s) is by the key of {}",
                self.signatures.len(),
                log.base_url
            )))
        }
    }
}

/// The signature material of a sigstore bundle, and the entry its transparency log must
/// hold for it.
pub fn expected_from_bundle(
    bundle: &serde_json::Value,
    certificate: &[u8],
) -> Result<Expected, RekorError> {
    let bad = |m: String| RekorError::Entry(m);
    if let Some(ms) = bundle.get("messageSignature") {
        let d = &ms["messageDigest"];
        if d["algorithm"].as_str() != Some("SHA2_256") {
            return Err(bad("messageDigest is not SHA2_256".into()));
        }
        let sha256 = d["digest"]
            .as_str()
            .and_then(|s| b64(s).ok())
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .ok_or_else(|| bad("messageDigest is not 32 bytes of base64".into()))?;
        let signature = ms["signature"]
            .as_str()
            .and_then(|s| b64(s).ok())
            .ok_or_else(|| bad("messageSignature.signature is not base64".into()))?;
        return Ok(Expected::HashedRekord {
            sha256,
            signature,
            certificate: certificate.to_vec(),
        });
    }
    let env = bundle
        .get("dsseEnvelope")
        .ok_or_else(|| bad("bundle has neither messageSignature nor dsseEnvelope".into()))?;
    let payload = env["payload"]
        .as_str()
        .and_then(|s| b64(s).ok())
        .ok_or_else(|| bad("envelope payload is not base64".into()))?;
    let signatures = env["signatures"]
        .as_array()
        .filter(|a| a.len() <= crate::provenance::MAX_SIGNATURES)
        .ok_or_else(|| bad("envelope has no signatures (or too many)".into()))?
        .iter()
        .map(|s| {
            s["sig"]
                .as_str()
                .and_then(|s| b64(s).ok())
                .ok_or_else(|| bad("an envelope signature is not base64".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Expected::Dsse {
        payload_sha256: sha2::Sha256::digest(&payload).into(),
        envelope_sha256: Some(sha2::Sha256::digest(canonical_json(env).as_bytes()).into()),
        signatures,
        certificate: certificate.to_vec(),
    })
}

/// `v` as RFC 8785 canonical JSON: object keys sorted, no white space (strings and numbers as
/// serde_json writes them, which agrees with RFC 8785 for the ASCII strings of DSSE envelopes).
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Verify the transparency-log entries of a sigstore `bundle` (parsed JSON) whose signing
/// certificate is `certificate` (DER, valid `cert_validity`): the first entry that verifies
/// against `logs`, else every entry's reason. Bundles v0.1 (media type ending `v0.1`) may
/// carry a signed entry timestamp alone; later versions need the inclusion proof too.
pub fn verify_bundle(
    bundle: &serde_json::Value,
    certificate: &[u8],
    cert_validity: (u64, u64),
    logs: &[TransparencyLog],
) -> Result<VerifiedEntry, RekorError> {
    let expected = expected_from_bundle(bundle, certificate)?;
    let require = match bundle["mediaType"].as_str() {
        Some("application/vnd.dev.sigstore.bundle+json;version=0.1") => Require::Promise,
        _ => Require::Proof,
    };
    let entries = bundle["verificationMaterial"]["tlogEntries"]
        .as_array()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| RekorError::Entry("the bundle has no transparency-log entry".into()))?;
    let mut errors = Vec::new();
    for e in entries.iter().take(MAX_ENTRIES) {
        match verify_entry(e, logs, &expected, cert_validity, require) {
            Ok(v) => return Ok(v),
            Err(err) => errors.push(err),
        }
    }
    if errors.len() == 1
        && let Some(e) = errors.pop()
    {
        return Err(e);
    }
    Err(RekorError::Entry(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// Longest `dev.sigstore.cosign/bundle` annotation read.
pub const MAX_COSIGN_BUNDLE_BYTES: usize = MAX_BODY_BYTES * 2;

/// cosign's `dev.sigstore.cosign/bundle` layer annotation (`{"SignedEntryTimestamp",
/// "Payload": {"body", "integratedTime", "logIndex", "logID"}}`, the log id in hex), from
/// untrusted text, as the transparency-log entry of a sigstore bundle (no inclusion proof:
/// check it with [`Require::Promise`]).
pub fn entry_from_cosign_bundle(text: &str) -> Result<serde_json::Value, RekorError> {
    let bad = |m: String| RekorError::Entry(format!("cosign bundle annotation: {m}"));
    if text.len() > MAX_COSIGN_BUNDLE_BYTES {
        return Err(bad(format!("longer than {MAX_COSIGN_BUNDLE_BYTES} bytes")));
    }
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let p = &v["Payload"];
    let log_id = p["logID"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .filter(|h| h.len() == 32)
        .ok_or_else(|| bad("Payload.logID is not 32 bytes of hex".into()))?;
    let set = v["SignedEntryTimestamp"]
        .as_str()
        .ok_or_else(|| bad("no SignedEntryTimestamp".into()))?;
    let body = p["body"]
        .as_str()
        .ok_or_else(|| bad("no Payload.body".into()))?;
    Ok(serde_json::json!({
        "logIndex": int_field(&p["logIndex"], "Payload.logIndex")?,
        "logId": {"keyId": base64::engine::general_purpose::STANDARD.encode(log_id)},
        "integratedTime": int_field(&p["integratedTime"], "Payload.integratedTime")?,
        "inclusionPromise": {"signedEntryTimestamp": set},
        "canonicalizedBody": body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2021-01-12T11:53:27Z"), Some(1_610_452_407));
        assert_eq!(
            parse_rfc3339("2021-01-12T11:53:27.123Z"),
            Some(1_610_452_407)
        );
        assert_eq!(parse_rfc3339("2021-01-12T11:53:27+00:00"), None);
        assert_eq!(parse_rfc3339("2021-13-12T11:53:27Z"), None);
    }

    /// RFC 6962 test vectors are for SHA-256 trees of the leaves in its reference tests; here
    /// a tree of 7 leaves is built by the definition and every leaf's proof checked.
    #[test]
    fn inclusion_proofs_of_every_leaf_of_small_trees() {
        fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
            if leaves.len() == 1 {
                return leaves[0];
            }
            let k = leaves.len().next_power_of_two() / 2;
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
        fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
            if leaves.len() == 1 {
                return vec![];
            }
            let k = leaves.len().next_power_of_two() / 2;
            if m < k {
                let mut p = path(m, &leaves[..k]);
                p.push(mth(&leaves[k..]));
                p
            } else {
                let mut p = path(m - k, &leaves[k..]);
                p.push(mth(&leaves[..k]));
                p
            }
        }
        for n in 1..=9usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let root = mth(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                let got = root_from_inclusion_proof(leaves[m], m as u64, n as u64, &p).unwrap();
                assert_eq!(got, root, "n={n} m={m}");
                if n > 1 {
                    let other = (m + 1) % n;
                    let r = root_from_inclusion_proof(leaves[m], other as u64, n as u64, &p);
                    assert!(r.map(|g| g != root).unwrap_or(true), "n={n} m={m}");
                }
            }
        }
    }
}
