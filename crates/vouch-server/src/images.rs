//! Image signatures of the container images workloads report: the verifier's [`ImageHook`].
//!
//! An attestation's `workload.image_digest` names a manifest digest only, so the operator
//! lists the repositories signatures are looked for in (`[image_signatures] repositories`):
//! for each, the cosign tag `sha256-<hex>.sig` is fetched and verified against the configured
//! public keys (`vouch-image`). The answer is the policy's `input.images[]`: `digest`,
//! `signed_by` (ids of the keys whose signature verified), `repository` (where), `reason`
//! (why unsigned). With `provenance = true`, the SLSA provenance cosign attaches to the
//! digest (`sha256-<hex>.att`, DSSE envelopes) is checked too, with `provenance_keys` (default:
//! `keys`): `provenance` is `{builder_id, build_type, source_repo, source_ref, verified_by,
//! repository}` of the first envelope that verifies, else `{reason}`. Definite answers are
//! cached by digest for `ttl` seconds in a bounded map (an image's signatures do not change
//! from one attestation to the next); a registry that cannot be reached is asked again next
//! time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vouch_image::provenance::VerifyingKey;
use vouch_image::{
    ClientOptions, Digest, ImageChecker, ImageError, ImageRef, PublicKey, RegistryClient,
};
use vouch_verifier::ImageHook;

/// `[image_signatures]`: where and with which keys image signatures are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSignatureSettings {
    /// Repositories (`host[:port]/path`) the signatures of reported digests are looked up in,
    /// in order.
    pub repositories: Vec<String>,
    /// PEM files of the trusted cosign public keys (ECDSA P-256).
    pub keys: Vec<PathBuf>,
    /// PEM CA certificates for the registries' TLS certificates (default: the built-in
    /// roots).
    #[serde(default)]
    pub registry_ca: Option<PathBuf>,
    /// Plain HTTP to the registries (a loopback development registry only).
    #[serde(default)]
    pub plain_http: bool,
    /// Seconds a digest's answer is reused before it is checked again.
    #[serde(default = "default_ttl")]
    pub ttl: u64,
    /// Most digests whose answers are held.
    #[serde(default = "default_entries")]
    pub cache_entries: usize,
    /// Also check the SLSA provenance attached to each image (cosign's `sha256-<hex>.att`):
    /// `input.images[].provenance`, for `require_provenance_builder` and
    /// `require_provenance_source`.
    #[serde(default)]
    pub provenance: bool,
    /// PEM public keys (or certificates) trusted to sign provenance: ECDSA P-256, Ed25519 or
    /// RSA. Empty: the signature `keys`.
    #[serde(default)]
    pub provenance_keys: Vec<PathBuf>,
}

fn default_ttl() -> u64 {
    300
}

fn default_entries() -> usize {
    4096
}

/// Checks image digests against cosign signatures; see the module documentation.
pub struct ImageSignatures {
    client: RegistryClient,
    checker: ImageChecker,
    provenance: bool,
    repositories: Vec<ImageRef>,
    keys: Vec<PublicKey>,
    ttl: u64,
    max_entries: usize,
    cache: Mutex<HashMap<String, (u64, serde_json::Value)>>,
}

impl std::fmt::Debug for ImageSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSignatures")
            .field("repositories", &self.repositories.len())
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl ImageSignatures {
    /// Read the keys and CA named by `s`.
    pub fn new(s: &ImageSignatureSettings) -> Result<Self, String> {
        let mut keys = Vec::new();
        for p in &s.keys {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("image_signatures key {}: {e}", p.display()))?;
            keys.push(
                PublicKey::from_pem(&text)
                    .map_err(|e| format!("image_signatures key {}: {e}", p.display()))?,
            );
        }
        if keys.is_empty() {
            return Err("image_signatures: no key".into());
        }
        let mut provenance_keys = Vec::new();
        let paths = if s.provenance_keys.is_empty() {
            &s.keys
        } else {
            &s.provenance_keys
        };
        if s.provenance {
            for p in paths {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("image_signatures provenance key {}: {e}", p.display()))?;
                provenance_keys.push(VerifyingKey::from_pem(&text).map_err(|e| {
                    format!("image_signatures provenance key {}: {e}", p.display())
                })?);
            }
        }
        let repositories = s
            .repositories
            .iter()
            .map(|r| {
                // A repository with a placeholder tag parses as a reference.
                ImageRef::parse(&format!("{r}:x"))
                    .map_err(|e| format!("image_signatures repository {r:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if repositories.is_empty() {
            return Err("image_signatures: no repository".into());
        }
        let ca_pem = match &s.registry_ca {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| format!("image_signatures registry_ca {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let client = RegistryClient::new(&ClientOptions {
            ca_pem,
            plain_http: s.plain_http,
            ..ClientOptions::default()
        })
        .map_err(|e| format!("image_signatures: {e}"))?;
        Ok(Self {
            checker: ImageChecker::new(client.clone(), keys.clone(), provenance_keys),
            provenance: s.provenance,
            client,
            repositories,
            keys,
            ttl: s.ttl,
            max_entries: s.cache_entries.max(1),
            cache: Mutex::default(),
        })
    }

    /// The checker of signatures and provenance (`vouch_image::ImageChecker`), with the
    /// configured keys and registry client.
    pub fn checker(&self) -> &ImageChecker {
        &self.checker
    }

    /// The configured repositories.
    pub fn repositories(&self) -> &[ImageRef] {
        &self.repositories
    }

    /// The ids of the trusted keys.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id().to_string()).collect()
    }

    /// The answer for one digest, from the cache while fresh.
    pub async fn check(&self, digest: &str, now: u64) -> serde_json::Value {
        if let Ok(c) = self.cache.lock()
            && let Some((at, v)) = c.get(digest)
            && now < at.saturating_add(self.ttl)
        {
            return v.clone();
        }
        let (value, definite) = self.fetch(digest).await;
        if definite && let Ok(mut c) = self.cache.lock() {
            if c.len() >= self.max_entries && !c.contains_key(digest) {
                // Drop the oldest answer.
                if let Some(oldest) = c
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    c.remove(&oldest);
                }
            }
            c.insert(digest.to_string(), (now, value.clone()));
        }
        value
    }

    /// Admission of one image reference (`crate::admission`): the reference must name one of
    /// the configured repositories (so that an unauthenticated review makes the verifier
    /// contact no other host); a tag is resolved to its manifest digest in the registry on
    /// every call (never cached: a tag can be moved), a digest is taken as is; the digest's
    /// signatures are then checked as [`Self::check`] does (cached by digest). `Ok`: the
    /// digest and the ids of the trusted keys that signed it; `Err`: the digest when known and
    /// why the image is refused.
    pub async fn admit(
        &self,
        reference: &str,
        now: u64,
    ) -> Result<(String, Vec<String>), (Option<String>, String)> {
        let image = ImageRef::parse(reference).map_err(|e| (None, e.to_string()))?;
        if !self
            .repositories
            .iter()
            .any(|r| r.registry == image.registry && r.repository == image.repository)
        {
            return Err((
                None,
                format!(
                    "repository {}/{} is not one whose signatures this verifier checks",
                    image.registry, image.repository
                ),
            ));
        }
        let digest = self
            .client
            .resolve(&image)
            .await
            .map_err(|e| (None, format!("tag not resolved to a digest: {e}")))?
            .to_string();
        let v = self.check(&digest, now).await;
        let signed_by: Vec<String> = v["signed_by"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if signed_by.is_empty() {
            let why = v["reason"].as_str().unwrap_or("no valid signature");
            return Err((
                Some(digest.clone()),
                format!("{digest} is not signed by a trusted key: {why}"),
            ));
        }
        Ok((digest, signed_by))
    }

    /// Ask the registries; `true` with a definite answer (signed, unsigned, refused).
    async fn fetch(&self, digest: &str) -> (serde_json::Value, bool) {
        let unsigned = |reason: String| serde_json::json!({ "digest": digest, "signed_by": [], "reason": reason });
        let d = match Digest::parse(digest) {
            Ok(d) => d,
            Err(e) => return (unsigned(e.to_string()), true),
        };
        let (mut value, mut definite) = self.fetch_signature(digest, &d).await;
        if self.provenance {
            let (p, def) = self.fetch_provenance(&d).await;
            definite &= def;
            value["provenance"] = p;
        }
        (value, definite)
    }

    async fn fetch_signature(&self, digest: &str, d: &Digest) -> (serde_json::Value, bool) {
        let mut reasons = Vec::new();
        let mut definite = true;
        for repo in &self.repositories {
            let name = format!("{}/{}", repo.registry, repo.repository);
            match self.checker.signature(repo, d).await {
                Ok(v) => {
                    return (
                        serde_json::json!({
                            "digest": digest,
                            "signed_by": v.signed_by,
                            "repository": name,
                        }),
                        true,
                    );
                }
                Err(ImageError::Unsigned(..)) => reasons.push(format!("{name}: no signature")),
                Err(e @ ImageError::Registry(_)) => {
                    definite = false;
                    reasons.push(format!("{name}: {e}"));
                }
                Err(e) => reasons.push(format!("{name}: {e}")),
            }
        }
        (
            serde_json::json!({ "digest": digest, "signed_by": [], "reason": reasons.join("; ") }),
            definite,
        )
    }

    /// `input.images[].provenance`: the first verified provenance in the repositories, in
    /// order, else `{reason}`; `true` with a definite answer.
    async fn fetch_provenance(&self, d: &Digest) -> (serde_json::Value, bool) {
        let mut reasons = Vec::new();
        let mut definite = true;
        for repo in &self.repositories {
            let name = format!("{}/{}", repo.registry, repo.repository);
            match self.checker.provenance(repo, d).await {
                Ok(v) => {
                    if let Some(p) = v.first() {
                        return (
                            serde_json::json!({
                                "builder_id": p.builder_id,
                                "build_type": p.build_type,
                                "source_repo": p.source_repo,
                                "source_ref": p.source_ref,
                                "verified_by": p.key_id,
                                "repository": name,
                            }),
                            true,
                        );
                    }
                }
                Err(ImageError::NoProvenance(..)) => {
                    reasons.push(format!("{name}: no provenance"));
                }
                Err(e @ ImageError::Registry(_)) => {
                    definite = false;
                    reasons.push(format!("{name}: {e}"));
                }
                Err(e) => reasons.push(format!("{name}: {e}")),
            }
        }
        (
            serde_json::json!({ "reason": reasons.join("; ") }),
            definite,
        )
    }
}

impl ImageHook for ImageSignatures {
    fn images<'a>(
        &'a self,
        digests: &'a [String],
        now: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<serde_json::Value>> + Send + 'a>>
    {
        Box::pin(async move {
            let mut out = Vec::with_capacity(digests.len());
            for d in digests {
                out.push(self.check(d, now).await);
            }
            out
        })
    }
}

/// What the image hook costs one attestation when every answer is cached (a repeat
/// attestation, the hot path): [`ImageSignatures::bench_cached`].
#[derive(Debug, Clone, Copy)]
pub struct ImageHookCost {
    /// Per attestation reporting one image digest.
    pub one: std::time::Duration,
    /// Per attestation reporting eight (a workload of eight containers, each its own image).
    pub eight: std::time::Duration,
}

impl ImageSignatures {
    /// Time [`ImageHook::images`] over cached answers (each with signature and provenance,
    /// as `provenance = true` caches them), `n` attestations of one and of eight digests; no
    /// registry is contacted (the cache is filled first, with answers of the shape
    /// [`Self::check`] caches).
    pub async fn bench_cached(n: usize) -> Result<ImageHookCost, String> {
        let client =
            RegistryClient::new(&ClientOptions::default()).map_err(|e| format!("bench: {e}"))?;
        let this = Self {
            checker: ImageChecker::new(client.clone(), Vec::new(), Vec::new()),
            provenance: true,
            client,
            repositories: Vec::new(),
            keys: Vec::new(),
            ttl: u64::MAX,
            max_entries: 4096,
            cache: Mutex::default(),
        };
        let digests: Vec<String> = (0..8u8)
            .map(|i| format!("sha256:{}", hex::encode([i; 32])))
            .collect();
        if let Ok(mut c) = this.cache.lock() {
            for d in &digests {
                c.insert(
                    d.clone(),
                    (
                        0,
                        serde_json::json!({
                            "digest": d,
                            "signed_by": [format!("sha256:{}", "ab".repeat(32))],
                            "repository": "registry.example:5000/shop/web",
                            "provenance": {
                                "builder_id": "https://github.com/org/builder/.github/workflows/build.yml@refs/tags/v1.0.0",
                                "build_type": "https://actions.github.io/buildtypes/workflow/v1",
                                "source_repo": "https://github.com/org/app",
                                "source_ref": "refs/tags/v1.2.0",
                                "verified_by": format!("sha256:{}", "ab".repeat(32)),
                                "repository": "registry.example:5000/shop/web",
                            },
                        }),
                    ),
                );
            }
        }
        let n = n.max(1);
        let time = |k: usize| {
            let digests = &digests[..k];
            let this = &this;
            async move {
                let t = std::time::Instant::now();
                for i in 0..n {
                    let v = this.images(digests, 1 + i as u64).await;
                    if v.len() != k || v.iter().any(|x| x["signed_by"][0].is_null()) {
                        return Err("bench: an answer was not the cached one".to_string());
                    }
                }
                Ok(t.elapsed() / n as u32)
            }
        };
        let one = time(1).await?;
        let eight = time(8).await?;
        Ok(ImageHookCost { one, eight })
    }
}
