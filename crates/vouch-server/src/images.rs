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
//!
//! Key-less signatures (cosign's Fulcio certificate and Rekor entry in the layer annotations)
//! are accepted when a `trusted_root` (sigstore `trusted_root.json`) is configured and the
//! certificate names exactly one of the `identities` (identity and OIDC issuer), verified
//! offline (`vouch_image::cosign::verify_keyless_payload`); such a signature's `signed_by` is
//! `fulcio:<issuer>#<identity>`. Each signature must have been made for the repository it is
//! found in (its `docker-reference`), or, for a mirror listed in `remap_identity`
//! (`PREFIX=SIGNED_PREFIX`), for the same repository under the signed prefix. Registries asking
//! for credentials get those of `auth_file` (a Docker `config.json` or containers `auth.json`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use vouch_image::cosign::KeylessIdentity;
use vouch_image::provenance::VerifyingKey;
use vouch_image::{
    ClientOptions, Digest, ImageChecker, ImageError, ImageRef, PublicKey, RegistryClient,
    SignedIdentity, Trust,
};
use vouch_verifier::ImageHook;

/// `[image_signatures]`: where and with which keys image signatures are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSignatureSettings {
    /// Repositories (`host[:port]/path`) the signatures of reported digests are looked up in,
    /// in order.
    pub repositories: Vec<String>,
    /// PEM files of the trusted cosign public keys (ECDSA P-256). May be empty when
    /// `trusted_root` and `identities` are given (key-less signatures only).
    #[serde(default)]
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
    /// Registry credentials: a Docker `config.json` or containers `auth.json` (`auths`, each
    /// `auth` = base64 `user:password`), used when a registry asks (Basic or the Docker token
    /// flow); never sent over plain HTTP except to loopback, nor to another registry.
    #[serde(default)]
    pub auth_file: Option<PathBuf>,
    /// A sigstore `trusted_root.json` (Fulcio CAs, Rekor logs): key-less signatures are
    /// verified offline against it, for the signers in `identities`.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// The key-less signers accepted (with `trusted_root`): a certificate must name one of
    /// them exactly, identity and issuer.
    #[serde(default)]
    pub identities: Vec<KeylessSigner>,
    /// Mirrors: `PREFIX=SIGNED_PREFIX` (e.g. `mirror.local/team=registry.example/team`)
    /// accepts, in a repository under PREFIX, signatures made for the same repository under
    /// SIGNED_PREFIX. Other repositories' signatures must name the repository itself.
    #[serde(default)]
    pub remap_identity: Vec<String>,
}

impl Default for ImageSignatureSettings {
    fn default() -> Self {
        Self {
            repositories: Vec::new(),
            keys: Vec::new(),
            registry_ca: None,
            plain_http: false,
            ttl: default_ttl(),
            cache_entries: default_entries(),
            provenance: false,
            provenance_keys: Vec::new(),
            auth_file: None,
            trusted_root: None,
            identities: Vec::new(),
            remap_identity: Vec::new(),
        }
    }
}

/// A key-less signer in `[image_signatures] identities`: the Fulcio certificate's identity
/// (URI subject alternative name, else email) and OIDC issuer, both compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessSigner {
    /// The certificate identity, e.g.
    /// `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`.
    pub identity: String,
    /// The OIDC issuer, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
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
    /// Who may sign, one per repository (the same signers; the repository's signed identity).
    trust: Vec<Trust>,
    keys: Vec<PublicKey>,
    keyless: Vec<KeylessIdentity>,
    ttl: u64,
    max_entries: usize,
    cache: Mutex<HashMap<String, (u64, serde_json::Value)>>,
}

impl std::fmt::Debug for ImageSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSignatures")
            .field("repositories", &self.repositories.len())
            .field("keys", &self.keys.len())
            .field("keyless", &self.keyless.len())
            .finish_non_exhaustive()
    }
}

impl ImageSignatures {
    /// Read the keys, trusted root, credentials and CA named by `s`; refuse settings that
    /// can verify nothing (no key and no key-less signer).
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
        let keyless = keyless_signers(s)?;
        if keys.is_empty() && keyless.is_empty() {
            return Err(
                "image_signatures: no key and no key-less signer (trusted_root and identities)"
                    .into(),
            );
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
        let identities = signed_identities(&s.remap_identity, &repositories)?;
        let trust = identities
            .into_iter()
            .map(|identity| Trust {
                keys: keys.clone(),
                keyless: keyless.clone(),
                identity,
            })
            .collect();
        let credentials = match &s.auth_file {
            Some(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| format!("image_signatures auth_file {}: {e}", p.display()))?;
                vouch_image::auth::Credentials::from_docker_config(&bytes)
                    .map_err(|e| format!("image_signatures auth_file {}: {e}", p.display()))?
            }
            None => vouch_image::auth::Credentials::default(),
        };
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
            credentials,
            ..ClientOptions::default()
        })
        .map_err(|e| format!("image_signatures: {e}"))?;
        Ok(Self {
            checker: ImageChecker::new(client.clone(), keys.clone(), provenance_keys),
            provenance: s.provenance,
            client,
            repositories,
            trust,
            keys,
            keyless,
            ttl: s.ttl,
            max_entries: s.cache_entries.max(1),
            cache: Mutex::default(),
        })
    }

    /// The checker of provenance (`vouch_image::ImageChecker`), with the configured keys and
    /// registry client. Signatures are checked by [`Self::check`] (keys, key-less signers and
    /// mirrors), not by its `signature`.
    pub fn checker(&self) -> &ImageChecker {
        &self.checker
    }

    /// The configured repositories.
    pub fn repositories(&self) -> &[ImageRef] {
        &self.repositories
    }

    /// The ids of the trusted signers as `signed_by` names them: the keys' (`sha256:<hex>`),
    /// then the key-less signers' (`fulcio:<issuer>#<identity>`).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.id().to_string())
            .chain(self.keyless.iter().map(KeylessIdentity::id))
            .collect()
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
        for (repo, trust) in self.repositories.iter().zip(&self.trust) {
            let name = format!("{}/{}", repo.registry, repo.repository);
            match vouch_image::verify_digest_with(&self.client, repo, d, trust).await {
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

/// The key-less signers of `s`: each of `identities` under `trusted_root`; both or neither.
fn keyless_signers(s: &ImageSignatureSettings) -> Result<Vec<KeylessIdentity>, String> {
    let Some(p) = &s.trusted_root else {
        if s.identities.is_empty() {
            return Ok(Vec::new());
        }
        return Err("image_signatures: identities without a trusted_root".into());
    };
    if s.identities.is_empty() {
        return Err(format!(
            "image_signatures trusted_root {}: no identities (which key-less signers to accept)",
            p.display()
        ));
    }
    let root = std::fs::read(p)
        .map_err(|e| format!("image_signatures trusted_root {}: {e}", p.display()))?;
    s.identities
        .iter()
        .map(|i| {
            if i.identity.is_empty() || i.issuer.is_empty() {
                return Err("image_signatures identities: an empty identity or issuer".into());
            }
            KeylessIdentity::new(&root, &i.identity, &i.issuer)
                .map_err(|e| format!("image_signatures trusted_root {}: {e}", p.display()))
        })
        .collect()
}

/// The signed identity each repository's signatures must name: the repository itself, or, for
/// one under a `remap_identity` prefix, the same repository under the signed prefix. Each
/// remap must be `PREFIX=SIGNED_PREFIX` and apply to a configured repository.
fn signed_identities(
    remaps: &[String],
    repositories: &[ImageRef],
) -> Result<Vec<SignedIdentity>, String> {
    let remaps = remaps
        .iter()
        .map(|r| {
            r.split_once('=')
                .map(|(p, s)| {
                    (
                        p.trim().trim_end_matches('/'),
                        s.trim().trim_end_matches('/'),
                    )
                })
                .filter(|(p, s)| !p.is_empty() && !s.is_empty())
                .map(|(p, s)| (p.to_string(), s.to_string()))
                .ok_or_else(|| {
                    format!("image_signatures remap_identity {r:?}: not PREFIX=SIGNED_PREFIX")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let under = |repo: &ImageRef, prefix: &str| {
        let name = format!("{}/{}", repo.registry, repo.repository);
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    for (p, _) in &remaps {
        if !repositories.iter().any(|r| under(r, p)) {
            return Err(format!(
                "image_signatures remap_identity {p:?}: no configured repository is under it"
            ));
        }
    }
    Ok(repositories
        .iter()
        .map(|repo| {
            // The longest matching prefix: the most specific mirror declaration.
            remaps
                .iter()
                .filter(|(p, _)| under(repo, p))
                .max_by_key(|(p, _)| p.len())
                .map_or(SignedIdentity::MatchRepository, |(p, s)| {
                    SignedIdentity::Remap {
                        prefix: p.clone(),
                        signed_prefix: s.clone(),
                    }
                })
        })
        .collect())
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
            trust: Vec::new(),
            keys: Vec::new(),
            keyless: Vec::new(),
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
