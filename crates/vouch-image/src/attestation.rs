//! Cosign attestations attached to an image, and [`ImageChecker`]: one place that checks an
//! image digest's signature and its SLSA provenance against configured keys.
//!
//! Cosign stores the attestations of the manifest `sha256:<hex>` in the same repository under
//! the tag `sha256-<hex>.att`: a manifest whose layers of media type
//! `application/vnd.dsse.envelope.v1+json` ([`DSSE_MEDIA_TYPE`]) are each a DSSE envelope
//! holding an in-toto statement (the signature is inside the envelope, not in an annotation).
//! [`ImageChecker::provenance`] fetches that manifest and at most [`MAX_ATTESTATIONS`] of its
//! envelopes (each at most [`crate::provenance::MAX_ENVELOPE_BYTES`], checked against its
//! digest by the registry client) and verifies each with [`crate::provenance::verify`]: a
//! signature by a trusted key over the DSSE encoding, an in-toto Statement v1 with SLSA
//! provenance v1, a subject whose sha256 is this very manifest digest, and the checker's
//! [`Policy`]. Envelopes of another predicate type (a vulnerability scan, an SBOM) are
//! passed over with their reason.

use crate::provenance::{self, Policy, VerifiedProvenance, VerifyingKey};
use crate::{Digest, ImageError, ImageRef, PublicKey, RegistryClient, VerifiedImage};

/// The media type of cosign attestation layers (one DSSE envelope each).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Most attestation layers looked at in one attestation manifest.
pub const MAX_ATTESTATIONS: usize = 16;

/// The tag cosign stores the attestations of `digest` under: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}.att", digest.as_str().replacen(':', "-", 1))
}

/// A DSSE layer of an attestation manifest.
#[derive(Debug, Clone)]
pub struct AttestationLayer {
    /// The envelope blob's digest.
    pub digest: Digest,
    /// Its declared size.
    pub size: u64,
}

/// The DSSE layers of a cosign attestation manifest (other layers are left out).
pub fn attestation_layers(manifest: &[u8]) -> Result<Vec<AttestationLayer>, ImageError> {
    crate::registry::layers_of(manifest, "attestation manifest", DSSE_MEDIA_TYPE)?
        .into_iter()
        .map(|l| {
            Ok(AttestationLayer {
                digest: Digest::parse(&l.digest)?,
                size: l.size,
            })
        })
        .collect()
}

/// Checks image digests against cosign signatures and cosign-attached SLSA provenance, with
/// one bounded registry client (see the [module](self) documentation). Cheap to share: hold
/// it in an `Arc`.
#[derive(Debug, Clone)]
pub struct ImageChecker {
    client: RegistryClient,
    signature_keys: Vec<PublicKey>,
    provenance_keys: Vec<VerifyingKey>,
    policy: Policy,
}

impl ImageChecker {
    /// A checker trusting `signature_keys` for cosign signatures and `provenance_keys` for
    /// attestations (the same keys read twice, when one key signs both), with no provenance
    /// policy beyond signature and subject (see [`Self::with_policy`]).
    pub fn new(
        client: RegistryClient,
        signature_keys: Vec<PublicKey>,
        provenance_keys: Vec<VerifyingKey>,
    ) -> Self {
        Self {
            client,
            signature_keys,
            provenance_keys,
            policy: Policy::default(),
        }
    }

    /// The same checker, accepting only provenance that meets `policy` (builder id, source,
    /// build type; exact matches).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The cosign signatures of the manifest `digest` in `image`'s repository (as
    /// [`crate::verify_digest`]).
    pub async fn signature(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<VerifiedImage, ImageError> {
        crate::verify_digest(&self.client, image, digest, &self.signature_keys).await
    }

    /// The SLSA provenance attached to the manifest `digest` in `image`'s repository (the
    /// `sha256-<hex>.att` tag): every DSSE envelope there that verifies (trusted key, in-toto
    /// Statement v1, SLSA provenance v1, a subject with this digest, the checker's policy), in
    /// manifest order; never empty. [`ImageError::NoProvenance`] when the tag does not exist,
    /// [`ImageError::ProvenanceNotVerified`] with each envelope's reason when none verifies,
    /// [`ImageError::Registry`] when the registry cannot be asked (not a definite answer).
    pub async fn provenance(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<VerifiedProvenance>, ImageError> {
        let tag = attestation_tag(digest);
        let Some(manifest) = self.client.manifest(image, &tag).await? else {
            return Err(ImageError::NoProvenance(digest.to_string(), tag));
        };
        let layers = attestation_layers(&manifest.body)?;
        let mut reasons = Vec::new();
        let mut out = Vec::new();
        for layer in layers.iter().take(MAX_ATTESTATIONS) {
            if layer.size > provenance::MAX_ENVELOPE_BYTES as u64 {
                reasons.push(format!(
                    "layer {}: envelope of {} bytes, more than {}",
                    layer.digest,
                    layer.size,
                    provenance::MAX_ENVELOPE_BYTES
                ));
                continue;
            }
            let envelope = self
                .client
                .blob(image, &layer.digest, provenance::MAX_ENVELOPE_BYTES)
                .await?;
            match provenance::verify(
                &envelope,
                &self.provenance_keys,
                digest.as_str(),
                &self.policy,
            ) {
                Ok(p) => out.push(p),
                Err(e) => reasons.push(format!("layer {}: {e}", layer.digest)),
            }
        }
        if out.is_empty() {
            if layers.is_empty() {
                reasons.push(format!("no {DSSE_MEDIA_TYPE} layer"));
            }
            return Err(ImageError::ProvenanceNotVerified {
                digest: digest.to_string(),
                reasons: reasons.join("; "),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_dsse_layers_of_an_attestation_manifest_are_taken() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let m = serde_json::json!({
            "schemaVersion": 2,
            "layers": [
                {"mediaType": DSSE_MEDIA_TYPE, "digest": d('a'), "size": 10,
                 "annotations": {"predicateType": "https://slsa.dev/provenance/v1"}},
                {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                 "digest": d('b'), "size": 10},
                {"mediaType": DSSE_MEDIA_TYPE, "digest": d('c'), "size": 2_000_000},
            ],
        });
        let l = attestation_layers(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].digest.as_str(), d('a'));
        assert_eq!(l[1].size, 2_000_000);
        // A layer digest that is not sha256:<64 hex>, or a manifest that is not one.
        let bad = serde_json::json!({"layers": [
            {"mediaType": DSSE_MEDIA_TYPE, "digest": "sha256:../../x", "size": 1}]});
        assert!(attestation_layers(&serde_json::to_vec(&bad).unwrap()).is_err());
        assert!(attestation_layers(b"not json").is_err());
        assert!(attestation_layers(b"{}").unwrap().is_empty());
        assert_eq!(
            attestation_tag(&Digest::parse(&d('e')).unwrap()),
            format!("sha256-{}.att", "e".repeat(64))
        );
    }
}
