//! Cosign public keys and simple-signing payloads.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use x509_cert::der::Decode as _;

use crate::{Digest, ImageError};

/// The `critical.type` of a cosign image signature.
pub const COSIGN_TYPE: &str = "cosign container image signature";

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// A trusted cosign public key (ECDSA P-256, as `cosign generate-key-pair` and
/// `skopeo generate-sigstore-key` make; cosign hashes with SHA-256).
#[derive(Debug, Clone)]
pub struct PublicKey {
    point: Vec<u8>,
    id: String,
}

impl PublicKey {
    /// Read the first `PUBLIC KEY` PEM block (SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Result<Self, ImageError> {
        let der = vouch_x509::pem_blocks(text, "PUBLIC KEY")
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::Key("no PUBLIC KEY PEM block".into()))?
            .map_err(ImageError::Key)?;
        Self::from_spki_der(&der)
    }

    /// Read a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, ImageError> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| ImageError::Key(format!("SubjectPublicKeyInfo: {e}")))?;
        if spki.algorithm.oid.to_string() != ID_EC_PUBLIC_KEY {
            return Err(ImageError::Key(format!(
                "algorithm {}: only ECDSA P-256 keys are supported",
                spki.algorithm.oid
            )));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        if curve.as_deref() != Some(PRIME256V1) {
            return Err(ImageError::Key(format!(
                "curve {curve:?}: only P-256 is supported"
            )));
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| ImageError::Key("public key bit string has unused bits".into()))?;
        if point.len() != 65 || point[0] != 4 {
            return Err(ImageError::Key(
                "not an uncompressed P-256 point (65 bytes, 0x04 first)".into(),
            ));
        }
        use sha2::Digest as _;
        Ok(Self {
            point: point.to_vec(),
            id: format!("sha256:{}", hex::encode(sha2::Sha256::digest(der))),
        })
    }

    /// The key's id: `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `signature` (ASN.1 DER ECDSA) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// A simple-signing payload whose signature verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedPayload {
    /// The id of the key that signed it.
    pub key_id: String,
    /// `critical.identity.docker-reference` (the name it was signed under; informative).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`, equal to the image's digest.
    pub digest: Digest,
    /// `optional` (signer's annotations), as sent.
    pub optional: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    optional: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(serde::Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(serde::Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Verify one cosign signature: `signature_b64` (the layer annotation) over the exact
/// `payload` bytes by one of `keys`, then the payload: type [`COSIGN_TYPE`], and
/// `critical.image.docker-manifest-digest` equal to `digest`.
pub fn verify_payload(
    payload: &[u8],
    signature_b64: &str,
    keys: &[PublicKey],
    digest: &Digest,
) -> Result<SignedPayload, ImageError> {
    let fail = |why: String| ImageError::NotVerified {
        digest: digest.to_string(),
        reasons: why,
    };
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| fail(format!("signature annotation is not base64: {e}")))?;
    let key = keys
        .iter()
        .find(|k| k.verifies(payload, &sig))
        .ok_or_else(|| fail("signature by no trusted key".into()))?;
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| fail(format!("simple-signing payload: {e}")))?;
    if p.critical.kind != COSIGN_TYPE {
        return Err(fail(format!(
            "payload type {:?}, not {COSIGN_TYPE:?}",
            p.critical.kind
        )));
    }
    if p.critical.image.docker_manifest_digest != digest.as_str() {
        return Err(fail(format!(
            "payload names {}, not this image",
            p.critical.image.docker_manifest_digest
        )));
    }
    Ok(SignedPayload {
        key_id: key.id().to_string(),
        docker_reference: p.critical.identity.docker_reference,
        digest: digest.clone(),
        optional: p.optional,
    })
}

/// Longest `dev.sigstore.cosign/certificate` annotation read.
pub const MAX_CERTIFICATE_PEM_BYTES: usize = 64 * 1024;

/// A key-less signer trusted for image signatures: a Fulcio certificate issued under a
/// sigstore `trusted_root.json` for exactly this identity and OIDC issuer, its signature
/// logged in one of the root's transparency logs while the certificate was valid.
#[derive(Debug, Clone)]
pub struct KeylessIdentity {
    trusted_root: std::sync::Arc<Vec<u8>>,
    logs: Vec<crate::rekor::TransparencyLog>,
    /// The certificate identity required (URI subject alternative name, else email).
    pub identity: String,
    /// The OIDC issuer required.
    pub issuer: String,
}

impl KeylessIdentity {
    /// Trust `identity` from `issuer` under the sigstore `trusted_root` (JSON).
    pub fn new(trusted_root: &[u8], identity: &str, issuer: &str) -> Result<Self, ImageError> {
        let logs = crate::rekor::TransparencyLog::from_trusted_root(trusted_root)
            .map_err(|e| ImageError::Key(e.to_string()))?;
        Ok(Self {
            trusted_root: std::sync::Arc::new(trusted_root.to_vec()),
            logs,
            identity: identity.to_string(),
            issuer: issuer.to_string(),
        })
    }

    /// The id a signature by this signer is reported under: `fulcio:<issuer>#<identity>`.
    pub fn id(&self) -> String {
        format!("fulcio:{}#{}", self.issuer, self.identity)
    }
}

/// Verify one key-less cosign signature layer: the certificate annotation (PEM) issued by a
/// Fulcio authority of a trusted root, the cosign bundle annotation a Rekor entry (signed
/// entry timestamp under a log of that root) naming this payload's SHA-256, this signature
/// and this certificate, logged while the certificate was valid; the certificate's identity
/// and issuer those of one of `trusted`; the signature by the certificate's key over the exact
/// payload; then the payload as [`verify_payload`] checks it.
pub fn verify_keyless_payload(
    payload: &[u8],
    signature_b64: &str,
    certificate_pem: &str,
    rekor_bundle: &str,
    trusted: &[KeylessIdentity],
    digest: &Digest,
) -> Result<SignedPayload, ImageError> {
    use sha2::Digest as _;
    let fail = |why: String| ImageError::NotVerified {
        digest: digest.to_string(),
        reasons: why,
    };
    if certificate_pem.len() > MAX_CERTIFICATE_PEM_BYTES {
        return Err(fail("certificate annotation too long".into()));
    }
    let cert_der = match vouch_x509::pem_blocks(certificate_pem, "CERTIFICATE")
        .into_iter()
        .next()
    {
        Some(Ok(der)) => der,
        Some(Err(e)) => return Err(fail(format!("certificate annotation: {e}"))),
        None => return Err(fail("certificate annotation holds no certificate".into())),
    };
    let cert = vouch_x509::parse(&cert_der, "signing").map_err(fail)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| fail(format!("signature annotation is not base64: {e}")))?;
    let entry =
        crate::rekor::entry_from_cosign_bundle(rekor_bundle).map_err(|e| fail(e.to_string()))?;
    let expected = crate::rekor::Expected::HashedRekord {
        sha256: sha2::Sha256::digest(payload).into(),
        signature: sig,
        certificate: cert_der.clone(),
    };
    let mut reasons = Vec::new();
    for t in trusted {
        let checked = crate::rekor::verify_entry(
            &entry,
            &t.logs,
            &expected,
            vouch_x509::validity(&cert),
            crate::rekor::Require::Promise,
        )
        .map_err(|e| e.to_string())
        .and_then(|logged| {
            crate::provenance::fulcio_identity(
                &cert_der,
                &cert,
                &t.trusted_root,
                logged.integrated_time,
            )
            .map_err(|e| e.to_string())
        });
        match checked {
            Ok((identity, issuer)) if identity == t.identity && issuer == t.issuer => {
                let spki =
                    x509_cert::der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                        .map_err(|e| fail(format!("certificate key: {e}")))?;
                let key = PublicKey::from_spki_der(&spki)?;
                let mut ok = verify_payload(payload, signature_b64, &[key], digest)?;
                ok.key_id = t.id();
                return Ok(ok);
            }
            Ok((identity, issuer)) => reasons.push(format!(
                "certificate for {identity:?} from {issuer:?}, not {:?} from {:?}",
                t.identity, t.issuer
            )),
            Err(e) => reasons.push(e),
        }
    }
    if trusted.is_empty() {
        reasons.push("no key-less signer is trusted".into());
    }
    Err(fail(reasons.join("; ")))
}
