//! SLSA provenance (v1) in in-toto attestations carried in DSSE envelopes.
//!
//! [`verify`] takes the untrusted bytes of a DSSE envelope (or of a sigstore bundle holding
//! one in `dsseEnvelope`), the trusted public keys, the digest of the artifact the caller has
//! in hand, and a [`Policy`]; it accepts only when, in this order:
//!
//! 1. the envelope parses within [`MAX_ENVELOPE_BYTES`] and [`MAX_SIGNATURES`], with
//!    `payloadType` `application/vnd.in-toto+json` ([`PAYLOAD_TYPE`]);
//! 2. one signature verifies under one trusted key over the DSSE v1 pre-authentication
//!    encoding ([`pae`]) of the type and the exact payload bytes (ECDSA P-256/SHA-256,
//!    Ed25519, or RSA 2048-8192 with SHA-256, PSS or PKCS#1 v1.5). `keyid` is a hint only and
//!    is not trusted;
//! 3. the payload is an in-toto Statement v1 ([`STATEMENT_V1`]) whose `predicateType` is SLSA
//!    provenance v1 ([`SLSA_PROVENANCE_V1`]);
//! 4. one subject's `sha256` digest is the artifact's;
//! 5. the predicate's builder id, build type, and source repository and ref (from
//!    `externalParameters.workflow` for GitHub Actions build types, else the first `git+`
//!    resolved dependency) equal what the policy asks for (each only when asked).

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine as _;
use x509_cert::der::{Decode as _, Encode as _};

/// The DSSE payload type of in-toto attestations.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Longest envelope (or bundle) read.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;
/// Most signatures looked at in one envelope.
pub const MAX_SIGNATURES: usize = 16;
/// Most subjects looked at in one statement.
pub const MAX_SUBJECTS: usize = 1024;

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";
const ID_ED25519: &str = "1.3.101.112";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// Why provenance is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The envelope is malformed or too large.
    #[error("envelope: {0}")]
    Envelope(String),
    /// No signature verifies under a trusted key.
    #[error("signature: {0}")]
    Signature(String),
    /// The payload is not an in-toto Statement v1 with SLSA provenance v1.
    #[error("statement: {0}")]
    Statement(String),
    /// No subject names the artifact's digest.
    #[error("subject: {0}")]
    Subject(String),
    /// The provenance does not meet the policy.
    #[error("policy: {0}")]
    Policy(String),
    /// A public key could not be read.
    #[error("public key: {0}")]
    Key(String),
    /// A key-less bundle's transparency-log entry is missing or does not verify.
    #[error(transparent)]
    Log(#[from] crate::rekor::RekorError),
}

/// A trusted public key that may sign provenance.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    kind: KeyKind,
    id: String,
}

#[derive(Debug, Clone)]
enum KeyKind {
    EcdsaP256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa(Vec<u8>),
}

impl VerifyingKey {
    /// Read the first `PUBLIC KEY` PEM block (SubjectPublicKeyInfo), or else the first
    /// `CERTIFICATE` block's public key (as a sigstore bundle's Fulcio certificate carries;
    /// the certificate's chain and validity are not checked here).
    pub fn from_pem(text: &str) -> Result<Self, ProvenanceError> {
        if let Some(der) = vouch_x509::pem_blocks(text, "PUBLIC KEY")
            .into_iter()
            .next()
        {
            return Self::from_spki_der(&der.map_err(ProvenanceError::Key)?);
        }
        let der = vouch_x509::pem_blocks(text, "CERTIFICATE")
            .into_iter()
            .next()
            .ok_or_else(|| ProvenanceError::Key("no PUBLIC KEY or CERTIFICATE PEM block".into()))?
            .map_err(ProvenanceError::Key)?;
        Self::from_certificate_der(&der)
    }

    /// The public key of a DER X.509 certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, ProvenanceError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| ProvenanceError::Key(format!("certificate: {e}")))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| ProvenanceError::Key(format!("certificate key: {e}")))?;
        Self::from_spki_der(&spki)
    }

    /// Read a DER SubjectPublicKeyInfo: ECDSA P-256, Ed25519 or RSA.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, ProvenanceError> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| ProvenanceError::Key(format!("SubjectPublicKeyInfo: {e}")))?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| ProvenanceError::Key("public key bit string has unused bits".into()))?
            .to_vec();
        let kind = match spki.algorithm.oid.to_string().as_str() {
            ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                if curve.as_deref() != Some(PRIME256V1) {
                    return Err(ProvenanceError::Key(format!(
                        "curve {curve:?}: only P-256 is supported"
                    )));
                }
                if key.len() != 65 || key[0] != 4 {
                    return Err(ProvenanceError::Key(
                        "not an uncompressed P-256 point".into(),
                    ));
                }
                KeyKind::EcdsaP256(key)
            }
            ID_ED25519 if key.len() == 32 => KeyKind::Ed25519(key),
            ID_ED25519 => return Err(ProvenanceError::Key("Ed25519 key is not 32 bytes".into())),
            RSA_ENCRYPTION => KeyKind::Rsa(key),
            other => {
                return Err(ProvenanceError::Key(format!(
                    "algorithm {other}: only ECDSA P-256, Ed25519 and RSA keys are supported"
                )));
            }
        };
        use sha2::Digest as _;
        Ok(Self {
            kind,
            id: format!("sha256:{}", hex::encode(sha2::Sha256::digest(der))),
        })
    }

    /// The key's id: `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `sig` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        let ok = |alg: &'static dyn signature::VerificationAlgorithm, key: &[u8]| {
            UnparsedPublicKey::new(alg, key)
                .verify(message, sig)
                .is_ok()
        };
        match &self.kind {
            KeyKind::EcdsaP256(k) => ok(&signature::ECDSA_P256_SHA256_ASN1, k),
            KeyKind::Ed25519(k) => ok(&signature::ED25519, k),
            KeyKind::Rsa(k) => {
                ok(&signature::RSA_PSS_2048_8192_SHA256, k)
                    || ok(&signature::RSA_PKCS1_2048_8192_SHA256, k)
            }
        }
    }
}

/// The DSSE v1 pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>` with the
/// lengths in ASCII decimal bytes. The signature is over these bytes, never the payload alone.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// A parsed (not yet verified) DSSE envelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `payloadType`.
    pub payload_type: String,
    /// The payload, base64-decoded.
    pub payload: Vec<u8>,
    /// Each signature's `keyid` (a hint, possibly empty) and bytes.
    pub signatures: Vec<(String, Vec<u8>)>,
}

#[derive(serde::Deserialize)]
struct RawEnvelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<RawSignature>,
}

#[derive(serde::Deserialize)]
struct RawSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

fn b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    // DSSE allows standard or URL-safe base64, padded or not.
    let t = s.trim().trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
}

impl Envelope {
    /// Parse a DSSE envelope, or a sigstore bundle's `dsseEnvelope`, from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProvenanceError> {
        let bad = |m: String| ProvenanceError::Envelope(m);
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_ENVELOPE_BYTES} allowed",
                bytes.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let value = match value.get("dsseEnvelope") {
            Some(inner) => inner.clone(),
            None => value,
        };
        let raw: RawEnvelope =
            serde_json::from_value(value).map_err(|e| bad(format!("not a DSSE envelope: {e}")))?;
        if raw.signatures.is_empty() {
            return Err(bad("no signatures".into()));
        }
        if raw.signatures.len() > MAX_SIGNATURES {
            return Err(bad(format!(
                "{} signatures, more than {MAX_SIGNATURES}",
                raw.signatures.len()
            )));
        }
        let payload = b64(&raw.payload).map_err(|e| bad(format!("payload is not base64: {e}")))?;
        let signatures = raw
            .signatures
            .into_iter()
            .map(|s| {
                b64(&s.sig)
                    .map(|sig| (s.keyid, sig))
                    .map_err(|e| bad(format!("signature is not base64: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }

    /// The id of the first trusted key with a signature over this envelope's PAE.
    pub fn verify_signature(&self, keys: &[VerifyingKey]) -> Result<String, ProvenanceError> {
        let message = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .find_map(|(_, sig)| keys.iter().find(|k| k.verifies(&message, sig)))
            .map(|k| k.id().to_string())
            .ok_or_else(|| {
                ProvenanceError::Signature(format!(
                    "none of {} signature(s) verifies under the {} trusted key(s)",
                    self.signatures.len(),
                    keys.len()
                ))
            })
    }
}

/// What the provenance must say; `None` fields are not checked.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `runDetails.builder.id`, exactly.
    pub builder_id: Option<String>,
    /// The source repository (e.g. `https://github.com/owner/repo`), exactly.
    pub source_repo: Option<String>,
    /// The source ref (e.g. `refs/tags/v1.2.0`), exactly.
    pub source_ref: Option<String>,
    /// `buildDefinition.buildType`, exactly.
    pub build_type: Option<String>,
}

/// Provenance whose signature, statement, subject and policy checks passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedProvenance {
    /// The id ([`VerifyingKey::id`]) of the key whose signature verified.
    pub key_id: String,
    /// The subject name that carries the artifact's digest.
    pub subject: String,
    /// `sha256:<hex>` of the artifact.
    pub digest: String,
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// `buildDefinition.buildType`.
    pub build_type: String,
    /// The source repository, when the provenance names one.
    pub source_repo: Option<String>,
    /// The source ref, when the provenance names one.
    pub source_ref: Option<String>,
}

#[derive(serde::Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Option<Predicate>,
}

#[derive(serde::Deserialize)]
struct Subject {
    #[serde(default)]
    name: String,
    digest: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Predicate {
    #[serde(rename = "buildDefinition")]
    build_definition: BuildDefinition,
    #[serde(rename = "runDetails")]
    run_details: RunDetails,
}

#[derive(serde::Deserialize)]
struct BuildDefinition {
    #[serde(rename = "buildType")]
    build_type: String,
    #[serde(rename = "externalParameters", default)]
    external_parameters: serde_json::Value,
    #[serde(rename = "resolvedDependencies", default)]
    resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(serde::Deserialize)]
struct ResourceDescriptor {
    #[serde(default)]
    uri: String,
}

#[derive(serde::Deserialize)]
struct RunDetails {
    builder: Builder,
}

#[derive(serde::Deserialize)]
struct Builder {
    id: String,
}

/// The source repository and ref the provenance names: `externalParameters.workflow`'s
/// `repository` and `ref` (GitHub Actions build types), else the first resolved dependency
/// whose uri is `git+<repo>@<ref>`.
fn source_of(def: &BuildDefinition) -> (Option<String>, Option<String>) {
    let wf = &def.external_parameters["workflow"];
    let repo = wf["repository"].as_str().map(str::to_string);
    let git_ref = wf["ref"].as_str().map(str::to_string);
    if repo.is_some() {
        return (repo, git_ref);
    }
    for dep in &def.resolved_dependencies {
        if let Some(rest) = dep.uri.strip_prefix("git+") {
            return match rest.rsplit_once('@') {
                Some((r, f)) => (Some(r.to_string()), Some(f.to_string())),
                None => (Some(rest.to_string()), None),
            };
        }
    }
    (None, None)
}

/// Verify SLSA v1 provenance in `envelope` for the artifact whose SHA-256 is `sha256_hex`:
/// see the [module](self) documentation for each check.
pub fn verify(
    envelope: &[u8],
    keys: &[VerifyingKey],
    sha256_hex: &str,
    policy: &Policy,
) -> Result<VerifiedProvenance, ProvenanceError> {
    let want = sha256_hex
        .strip_prefix("sha256:")
        .unwrap_or(sha256_hex)
        .to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProvenanceError::Subject(format!(
            "artifact digest {sha256_hex:?} is not a sha256 hex digest"
        )));
    }
    let env = Envelope::parse(envelope)?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(ProvenanceError::Envelope(format!(
            "payloadType {:?}, not {PAYLOAD_TYPE:?}",
            env.payload_type
        )));
    }
    let key_id = env.verify_signature(keys)?;
    let st: Statement = serde_json::from_slice(&env.payload)
        .map_err(|e| ProvenanceError::Statement(format!("not an in-toto statement: {e}")))?;
    if st.kind != STATEMENT_V1 {
        return Err(ProvenanceError::Statement(format!(
            "_type {:?}, not {STATEMENT_V1:?}",
            st.kind
        )));
    }
    if st.predicate_type != SLSA_PROVENANCE_V1 {
        return Err(ProvenanceError::Statement(format!(
            "predicateType {:?}, not {SLSA_PROVENANCE_V1:?}",
            st.predicate_type
        )));
    }
    if st.subject.len() > MAX_SUBJECTS {
        return Err(ProvenanceError::Statement(format!(
            "{} subjects, more than {MAX_SUBJECTS}",
            st.subject.len()
        )));
    }
    let subject = st
        .subject
        .iter()
        .find(|s| s.digest.get("sha256").map(|d| d.to_ascii_lowercase()) == Some(want.clone()))
        .ok_or_else(|| {
            ProvenanceError::Subject(format!(
                "no subject of the {} has sha256 {want}",
                st.subject.len()
            ))
        })?;
    let pred = st
        .predicate
        .ok_or_else(|| ProvenanceError::Statement("no SLSA v1 predicate".into()))?;
    let (source_repo, source_ref) = source_of(&pred.build_definition);
    let got = VerifiedProvenance {
        key_id,
        subject: subject.name.clone(),
        digest: format!("sha256:{want}"),
        builder_id: pred.run_details.builder.id,
        build_type: pred.build_definition.build_type,
        source_repo,
        source_ref,
    };
    let check = |what: &str, want: &Option<String>, got: Option<&str>| match want {
        Some(w) if got != Some(w.as_str()) => Err(ProvenanceError::Policy(format!(
            "{what} is {got:?}, the policy requires {w:?}"
        ))),
        _ => Ok(()),
    };
    check("builder id", &policy.builder_id, Some(&got.builder_id))?;
    check("build type", &policy.build_type, Some(&got.build_type))?;
    check(
        "source repository",
        &policy.source_repo,
        got.source_repo.as_deref(),
    )?;
    check("source ref", &policy.source_ref, got.source_ref.as_deref())?;
    Ok(got)
}

/// Longest sigstore `trusted_root.json` read.
pub const MAX_TRUSTED_ROOT_BYTES: usize = 1 << 20;

/// The key of a key-less (Fulcio) signer, from a sigstore bundle's certificate checked
/// against a sigstore `trusted_root.json`, with the identity the certificate names.
#[derive(Debug, Clone)]
pub struct FulcioSigner {
    /// The certificate's public key, to verify the envelope with.
    pub key: VerifyingKey,
    /// The certificate's URI subject alternative name (for GitHub Actions, the workflow that
    /// signed: `https://github.com/<owner>/<repo>/<path>@<ref>`), else its email one.
    pub identity: String,
    /// The OIDC issuer (extension 1.3.6.1.4.1.57264.1.8, else the older .1.1).
    pub issuer: String,
    /// The transparency-log entry that verified (its signed time is the one the
    /// certificate chain was checked at).
    pub tlog: crate::rekor::VerifiedEntry,
}

const SIGSTORE_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const SIGSTORE_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// Check the leaf certificate of a sigstore `bundle` (v0.3 `certificate`, or the first of an
/// older `x509CertificateChain`) against the certificate authorities of `trusted_root`: the
/// leaf signed by a chain's first certificate, each signed by the next, the last self-signed,
/// all valid at the `integratedTime` of the bundle's transparency-log entry, which must verify
/// offline against the trusted root's logs ([`crate::rekor::verify_bundle`]: the body names
/// this bundle's signature, payload and certificate, the signed entry timestamp, the inclusion
/// proof and its signed checkpoint, the time within the certificate's and the log key's
/// validity). A bundle without a valid entry is refused.
pub fn fulcio_signer(bundle: &[u8], trusted_root: &[u8]) -> Result<FulcioSigner, ProvenanceError> {
    let bad = |m: String| ProvenanceError::Key(m);
    if bundle.len() > MAX_ENVELOPE_BYTES || trusted_root.len() > MAX_TRUSTED_ROOT_BYTES {
        return Err(bad("bundle or trusted root larger than allowed".into()));
    }
    let b: serde_json::Value =
        serde_json::from_slice(bundle).map_err(|e| bad(format!("bundle is not JSON: {e}")))?;
    let vm = &b["verificationMaterial"];
    let leaf_b64 = vm["certificate"]["rawBytes"]
        .as_str()
        .or_else(|| vm["x509CertificateChain"]["certificates"][0]["rawBytes"].as_str())
        .ok_or_else(|| bad("bundle has no certificate".into()))?;
    let leaf_der = b64(leaf_b64).map_err(|e| bad(format!("certificate is not base64: {e}")))?;
    let leaf = vouch_x509::parse(&leaf_der, "signing").map_err(bad)?;
    let logs = crate::rekor::TransparencyLog::from_trusted_root(trusted_root)?;
    let tlog = crate::rekor::verify_bundle(&b, &leaf_der, vouch_x509::validity(&leaf), &logs)?;
    let time = tlog.integrated_time;
    let (identity, issuer) = fulcio_identity(&leaf_der, &leaf, trusted_root, time)?;
    Ok(FulcioSigner {
        key: VerifyingKey::from_certificate_der(&leaf_der)?,
        identity,
        issuer,
        tlog,
    })
}

/// Check that `leaf` (DER `leaf_der`) was issued by a Fulcio authority of `trusted_root`:
/// signed by a chain's first certificate, each signed by the next, the last self-signed, all
/// valid at `time`; its identity (the URI subject alternative name, else the email one) and
/// OIDC issuer.
pub fn fulcio_identity(
    leaf_der: &[u8],
    leaf: &x509_cert::Certificate,
    trusted_root: &[u8],
    time: u64,
) -> Result<(String, String), ProvenanceError> {
    let bad = |m: String| ProvenanceError::Key(m);
    if trusted_root.len() > MAX_TRUSTED_ROOT_BYTES {
        return Err(bad("trusted root larger than allowed".into()));
    }
    vouch_x509::check_validity(leaf, time, "signing certificate").map_err(bad)?;
    let root: serde_json::Value = serde_json::from_slice(trusted_root)
        .map_err(|e| bad(format!("trusted root is not JSON: {e}")))?;
    let cas = root["certificateAuthorities"]
        .as_array()
        .ok_or_else(|| bad("trusted root has no certificateAuthorities".into()))?;
    let mut reasons = Vec::new();
    for (i, ca) in cas.iter().enumerate().take(64) {
        match check_chain(leaf_der, leaf, ca, time) {
            Ok(()) => {
                let identity = san_identity(leaf).ok_or_else(|| {
                    bad("signing certificate has no URI or email subject alternative name".into())
                })?;
                let issuer = oidc_issuer(leaf)
                    .ok_or_else(|| bad("signing certificate names no OIDC issuer".into()))?;
                return Ok((identity, issuer));
            }
            Err(e) => reasons.push(format!("authority {i}: {e}")),
        }
    }
    Err(bad(format!(
        "signing certificate not issued by the trusted root: {}",
        reasons.join("; ")
    )))
}

fn check_chain(
    leaf_der: &[u8],
    leaf: &x509_cert::Certificate,
    ca: &serde_json::Value,
    time: u64,
) -> Result<(), String> {
    let certs = ca["certChain"]["certificates"]
        .as_array()
        .filter(|c| !c.is_empty() && c.len() <= 8)
        .ok_or("no certificate chain (or more than 8)")?;
    let mut ders = Vec::new();
    for c in certs {
        let s = c["rawBytes"]
            .as_str()
            .ok_or("certificate without rawBytes")?;
        ders.push(b64(s).map_err(|e| format!("certificate is not base64: {e}"))?);
    }
    let parsed = ders
        .iter()
        .map(|d| vouch_x509::parse(d, "authority"))
        .collect::<Result<Vec<_>, _>>()?;
    vouch_x509::verify_signed_by(leaf_der, leaf, &parsed[0])?;
    for (i, c) in parsed.iter().enumerate() {
        vouch_x509::check_validity(c, time, "authority certificate")?;
        let issuer = parsed.get(i + 1).unwrap_or(c);
        vouch_x509::verify_signed_by(&ders[i], c, issuer)?;
    }
    Ok(())
}

fn san_identity(c: &x509_cert::Certificate) -> Option<String> {
    use x509_cert::ext::pkix::{SubjectAltName, name::GeneralName};
    let raw = vouch_x509::extension(c, SUBJECT_ALT_NAME)?;
    let san = SubjectAltName::from_der(raw).ok()?;
    let uri = san.0.iter().find_map(|n| match n {
        GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
        _ => None,
    });
    uri.or_else(|| {
        san.0.iter().find_map(|n| match n {
            GeneralName::Rfc822Name(m) => Some(m.to_string()),
            _ => None,
        })
    })
}

fn oidc_issuer(c: &x509_cert::Certificate) -> Option<String> {
    if let Some(raw) = vouch_x509::extension(c, SIGSTORE_ISSUER_V2) {
        return x509_cert::der::asn1::Utf8StringRef::from_der(raw)
            .ok()
            .map(|s| s.as_str().to_string());
    }
    vouch_x509::extension(c, SIGSTORE_ISSUER_V1)
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // From the DSSE protocol specification: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
