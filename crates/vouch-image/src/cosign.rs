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
