//! Container image signatures.
//!
//! Cosign-format signatures: for an image whose manifest digest is `sha256:<hex>`, the
//! registry holds, in the same repository, a manifest tagged `sha256-<hex>.sig` whose layers
//! are simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`), each with
//! its ECDSA signature in the annotation `dev.cosignproject.cosign/signature`. [`verify_image`]
//! resolves a reference to its digest, fetches that signature manifest and its payloads with a
//! bounded registry client ([`registry::RegistryClient`]), and accepts the image when one
//! payload is signed by a trusted key ([`cosign::PublicKey`]), is of type `cosign container
//! image signature`, and names exactly this digest.
//!
//! Key-less signatures (a layer with a Fulcio certificate in `dev.sigstore.cosign/certificate`
//! and its Rekor entry in `dev.sigstore.cosign/bundle`) are verified offline against a sigstore
//! `trusted_root.json` and a required identity and issuer ([`cosign::KeylessIdentity`],
//! [`rekor`]) when [`Trust::keyless`] names any.
//!
//! [`provenance`] verifies SLSA v1 provenance in in-toto DSSE envelopes (signature, subject
//! digest, and a policy over builder, source and build type), offline;
//! [`attestation`] fetches the provenance cosign attaches to an image (`sha256-<hex>.att`)
//! and [`ImageChecker`] checks a digest's signature and provenance with configured keys.
//!
//! Every byte from the registry is untrusted: manifests and blobs are read up to a fixed
//! length, blobs are checked against their digest, and parsers return errors, never panic.

pub mod attestation;
pub mod auth;
pub mod cosign;
pub mod provenance;
pub mod reference;
pub mod registry;
pub mod rekor;

pub use attestation::{ImageChecker, attestation_tag};
pub use cosign::{PublicKey, SignedPayload};
pub use reference::{Digest, ImageRef};
pub use registry::{ClientOptions, RegistryClient};

/// Why an image or its signature is refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference or a digest is malformed.
    #[error("image reference: {0}")]
    Reference(String),
    /// The registry could not be reached, answered an error, or answered malformed or
    /// oversized content.
    #[error("registry: {0}")]
    Registry(String),
    /// The registry holds no signature for the digest.
    #[error("image {0} has no cosign signature (no {1} tag)")]
    Unsigned(String, String),
    /// Signatures exist, but none verifies: each one's reason.
    #[error("image {digest}: no valid signature by a trusted key: {reasons}")]
    NotVerified {
        /// The image digest.
        digest: String,
        /// Why each signature was refused, joined.
        reasons: String,
    },
    /// A public key could not be read.
    #[error("public key: {0}")]
    Key(String),
    /// The registry holds no attestation for the digest.
    #[error("image {0} has no attached provenance (no {1} tag)")]
    NoProvenance(String, String),
    /// Attestations exist, but none is SLSA provenance that verifies: each one's reason.
    #[error("image {digest}: no verified SLSA provenance: {reasons}")]
    ProvenanceNotVerified {
        /// The image digest.
        digest: String,
        /// Why each attestation was refused, joined.
        reasons: String,
    },
}

/// An image whose signature verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedImage {
    /// The manifest digest the signatures name.
    pub digest: Digest,
    /// The ids ([`PublicKey::id`]) of the trusted keys that signed it, each once.
    pub signed_by: Vec<String>,
    /// The verified payloads.
    pub signatures: Vec<SignedPayload>,
}

/// Most signature layers looked at in one signature manifest.
pub const MAX_SIGNATURES: usize = 16;
/// Longest simple-signing payload fetched.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The media type of cosign simple-signing payload layers.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding a key-less signature's Fulcio certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation holding a key-less signature's Rekor entry (cosign's bundle JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Who may sign images.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Trusted cosign public keys.
    pub keys: Vec<PublicKey>,
    /// Trusted key-less signers (Fulcio identity and issuer under a sigstore trusted root):
    /// layers carrying a [`CERTIFICATE_ANNOTATION`] are checked against these.
    pub keyless: Vec<cosign::KeylessIdentity>,
    /// Which repository a payload's `critical.identity.docker-reference` must name.
    pub identity: SignedIdentity,
}

/// Which repository a signature must have been made for: its payload's
/// `critical.identity.docker-reference`, compared with the repository the image was asked for
/// (as containers/image's `signedIdentity` policy does). A signature copied from another
/// repository, with the same digest, does not count there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SignedIdentity {
    /// The reference's repository (`host[:port]/path`, tag and digest dropped) must be the
    /// image's (the default; containers/image's `matchRepository`).
    #[default]
    MatchRepository,
    /// A mirror: an image whose repository is under `prefix` must have been signed under
    /// `signed_prefix` with the same rest (containers/image's `remapIdentity`); other images
    /// as [`SignedIdentity::MatchRepository`].
    Remap {
        /// The prefix the image is fetched under (`host[:port]` or `host[:port]/path`).
        prefix: String,
        /// The prefix the signer named.
        signed_prefix: String,
    },
    /// Not checked: the manifest digest alone binds the signature.
    Any,
}

/// The repository a `docker-reference` names: the reference without `@digest` and without a
/// `:tag` after its last `/`.
pub fn reference_repository(reference: &str) -> &str {
    let r = reference.split('@').next().unwrap_or(reference);
    match (r.rfind(':'), r.rfind('/')) {
        (Some(c), Some(s)) if c > s => &r[..c],
        (Some(c), None) => &r[..c],
        _ => r,
    }
}

impl SignedIdentity {
    /// Whether a signature naming `docker_reference` counts for `image`; why not.
    pub fn check(&self, image: &ImageRef, docker_reference: &str) -> Result<(), String> {
        let asked = format!("{}/{}", image.registry, image.repository);
        let expected = match self {
            Self::Any => return Ok(()),
            Self::MatchRepository => asked,
            Self::Remap {
                prefix,
                signed_prefix,
            } => {
                let p = prefix.trim_end_matches('/');
                match asked.strip_prefix(p) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                        format!("{}{rest}", signed_prefix.trim_end_matches('/'))
                    }
                    _ => asked,
                }
            }
        };
        let signed = reference_repository(docker_reference.trim());
        if signed.eq_ignore_ascii_case(&expected) {
            Ok(())
        } else {
            Err(format!(
                "signed for {signed:?}, not {expected:?} (a signature copied from another repository)"
            ))
        }
    }
}

/// The tag cosign stores the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", digest.as_str().replacen(':', "-", 1))
}

/// Resolve `image` (by tag or digest) and verify its cosign signatures against `keys`.
pub async fn verify_image(
    client: &RegistryClient,
    image: &ImageRef,
    keys: &[PublicKey],
) -> Result<VerifiedImage, ImageError> {
    let digest = client.resolve(image).await?;
    verify_digest(client, image, &digest, keys).await
}

/// Resolve `image` (by tag or digest) and verify its cosign signatures (by key or
/// key-less) against `trust`.
pub async fn verify_image_with(
    client: &RegistryClient,
    image: &ImageRef,
    trust: &Trust,
) -> Result<VerifiedImage, ImageError> {
    let digest = client.resolve(image).await?;
    verify_digest_with(client, image, &digest, trust).await
}

/// Verify the cosign signatures of the manifest `digest` in `image`'s repository.
pub async fn verify_digest(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<VerifiedImage, ImageError> {
    let trust = Trust {
        keys: keys.to_vec(),
        ..Trust::default()
    };
    verify_digest_with(client, image, digest, &trust).await
}

/// Verify the cosign signatures (by key or key-less) of the manifest `digest` in `image`'s
/// repository against `trust`.
pub async fn verify_digest_with(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    trust: &Trust,
) -> Result<VerifiedImage, ImageError> {
    let tag = signature_tag(digest);
    let Some(manifest) = client.manifest(image, &tag).await? else {
        return Err(ImageError::Unsigned(digest.to_string(), tag));
    };
    let layers = registry::signature_layers(&manifest.body)?;
    let mut reasons = Vec::new();
    let mut out = VerifiedImage {
        digest: digest.clone(),
        signed_by: Vec::new(),
        signatures: Vec::new(),
    };
    for layer in layers.iter().take(MAX_SIGNATURES) {
        let Some(sig) = &layer.signature else {
            reasons.push(format!("layer {}: no {SIGNATURE_ANNOTATION}", layer.digest));
            continue;
        };
        if layer.size > MAX_PAYLOAD_BYTES as u64 {
            reasons.push(format!(
                "layer {}: payload of {} bytes, more than {MAX_PAYLOAD_BYTES}",
                layer.digest, layer.size
            ));
            continue;
        }
        let payload = client.blob(image, &layer.digest, MAX_PAYLOAD_BYTES).await?;
        let verified = match (&layer.certificate, &layer.rekor_bundle) {
            (Some(cert), Some(bundle)) if !trust.keyless.is_empty() => {
                cosign::verify_keyless_payload(&payload, sig, cert, bundle, &trust.keyless, digest)
            }
            (Some(_), None) if !trust.keyless.is_empty() => Err(ImageError::NotVerified {
                digest: digest.to_string(),
                reasons: format!("key-less signature without its {BUNDLE_ANNOTATION}"),
            }),
            _ => cosign::verify_payload(&payload, sig, &trust.keys, digest),
        };
        let verified = verified.and_then(|p| {
            trust
                .identity
                .check(image, &p.docker_reference)
                .map(|()| p)
                .map_err(|why| ImageError::NotVerified {
                    digest: digest.to_string(),
                    reasons: why,
                })
        });
        match verified {
            Ok(p) => {
                if !out.signed_by.contains(&p.key_id) {
                    out.signed_by.push(p.key_id.clone());
                }
                out.signatures.push(p);
            }
            Err(e) => reasons.push(format!("layer {}: {e}", layer.digest)),
        }
    }
    if out.signatures.is_empty() {
        if layers.is_empty() {
            reasons.push("no simple-signing layer".into());
        }
        return Err(ImageError::NotVerified {
            digest: digest.to_string(),
            reasons: reasons.join("; "),
        });
    }
    Ok(out)
}
