//! A bounded OCI distribution client: manifests and blobs, read up to a fixed length, blobs
//! checked against their digest; anonymous pulls, or authenticated ([`crate::auth`]: the
//! Docker token flow and Basic) with configured credentials.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::{Challenge, Credentials, may_send_credentials, parse_challenge};

use crate::{Digest, ImageError, ImageRef, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};

/// Longest manifest read (the distribution spec's limit registries should accept).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// PEM CA certificates trusted for the registry's TLS certificate, instead of the
    /// built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Speak plain HTTP (a loopback development registry); otherwise HTTPS only.
    pub plain_http: bool,
    /// Timeout of each request.
    pub timeout: Duration,
    /// Credentials by registry (used when a registry asks for them).
    pub credentials: Credentials,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ca_pem: None,
            plain_http: false,
            timeout: Duration::from_secs(10),
            credentials: Credentials::default(),
        }
    }
}

/// Longest token endpoint answer read.
pub const MAX_TOKEN_ANSWER_BYTES: usize = 64 * 1024;
/// Longest bearer token used.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most bearer tokens kept (one per registry and scope); the oldest is dropped.
const MAX_CACHED_AUTH: usize = 256;

/// What to send a registry, remembered from its last challenge.
#[derive(Debug, Clone)]
enum CachedAuth {
    /// A token for a registry and scope.
    Bearer(String),
    /// The registry takes Basic credentials.
    Basic,
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    scheme: &'static str,
    credentials: Credentials,
    auth: Arc<Mutex<VecDeque<(String, CachedAuth)>>>,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its exact bytes.
    pub body: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
}

/// A simple-signing layer of a signature manifest.
#[derive(Debug, Clone)]
pub struct SignatureLayer {
    /// The payload blob's digest.
    pub digest: Digest,
    /// Its declared size.
    pub size: u64,
    /// The base64 signature annotation, when present.
    pub signature: Option<String>,
    /// The signing certificate (PEM) of a key-less signature, `dev.sigstore.cosign/certificate`.
    pub certificate: Option<String>,
    /// The Rekor entry of a key-less signature, `dev.sigstore.cosign/bundle` (JSON).
    pub rekor_bundle: Option<String>,
}

impl RegistryClient {
    /// A client with these options.
    pub fn new(opts: &ClientOptions) -> Result<Self, ImageError> {
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("vouch/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ImageError::Registry(format!("registry CA: {e}")))?;
            if certs.is_empty() {
                return Err(ImageError::Registry("registry CA: no certificate".into()));
            }
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| ImageError::Registry(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            scheme: if opts.plain_http { "http" } else { "https" },
            credentials: opts.credentials.clone(),
            auth: Arc::new(Mutex::new(VecDeque::new())),
        })
    }

    fn cached(&self, key: &str) -> Option<CachedAuth> {
        let cache = self.auth.lock().ok()?;
        cache.iter().find(|(k, _)| k == key).map(|(_, a)| a.clone())
    }

    fn remember(&self, key: String, auth: CachedAuth) {
        if let Ok(mut cache) = self.auth.lock() {
            cache.retain(|(k, _)| *k != key);
            if cache.len() >= MAX_CACHED_AUTH {
                cache.pop_front();
            }
            cache.push_back((key, auth));
        }
    }

    /// GET `url` of `image`'s registry, answering an authentication challenge once.
    async fn get(
        &self,
        image: &ImageRef,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ImageError> {
        let fail = |m: String| ImageError::Registry(format!("{url}: {m}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(e.to_string()))?;
        let scope = format!("repository:{}:pull", image.repository);
        let token_key = format!("{} {scope}", image.registry);
        let basic_key = format!("{} basic", image.registry);
        let send = |auth: Option<&CachedAuth>| {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            match auth {
                Some(CachedAuth::Bearer(t)) => req = req.bearer_auth(t),
                Some(CachedAuth::Basic) => {
                    if let Some((u, p)) = self.credentials.get(&image.registry) {
                        req = req.basic_auth(u, Some(p));
                    }
                }
                None => {}
            }
            req.send()
        };
        let cached = self
            .cached(&token_key)
            .or_else(|| self.cached(&basic_key))
            .filter(|a| match a {
                CachedAuth::Basic => may_send_credentials(&parsed).is_ok(),
                CachedAuth::Bearer(_) => true,
            });
        let res = send(cached.as_ref())
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let header = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| fail("HTTP 401 without a WWW-Authenticate challenge".into()))?;
        let auth = match parse_challenge(header).map_err(fail)? {
            Challenge::Basic => {
                if self.credentials.get(&image.registry).is_none() {
                    return Err(fail(format!(
                        "HTTP 401: the registry asks for credentials and none are configured \
                         for {}",
                        image.registry
                    )));
                }
                may_send_credentials(&parsed).map_err(fail)?;
                self.remember(basic_key, CachedAuth::Basic);
                CachedAuth::Basic
            }
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                // The token is a credential too.
                may_send_credentials(&parsed).map_err(fail)?;
                let token = self
                    .token(
                        image,
                        &realm,
                        service.as_deref(),
                        asked.as_deref().unwrap_or(&scope),
                    )
                    .await?;
                let auth = CachedAuth::Bearer(token);
                self.remember(token_key, auth.clone());
                auth
            }
        };
        send(Some(&auth)).await.map_err(|e| fail(error_chain(&e)))
    }

    /// A bearer token from the `realm` of a registry's challenge, with the registry's
    /// credentials when there are some.
    async fn token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImageError> {
        let fail = |m: String| ImageError::Registry(format!("token realm {realm}: {m}"));
        let mut url = reqwest::Url::parse(realm).map_err(|e| fail(e.to_string()))?;
        match (self.scheme, url.scheme()) {
            (_, "https") => {}
            ("http", "http") if crate::auth::is_loopback(&url) => {}
            ("https", "http") => {
                return Err(fail(
                    "plain HTTP for an HTTPS registry: refusing the downgrade".into(),
                ));
            }
            (_, other) => return Err(fail(format!("scheme {other:?} refused"))),
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(url.clone());
        if let Some((u, p)) = self.credentials.get(&image.registry) {
            may_send_credentials(&url).map_err(fail)?;
            req = req.basic_auth(u, Some(p));
        }
        let res = req.send().await.map_err(|e| fail(error_chain(&e)))?;
        if !res.status().is_success() {
            return Err(fail(format!(
                "HTTP {}{}",
                res.status(),
                if self.credentials.get(&image.registry).is_some() {
                    " (credentials refused?)"
                } else {
                    " (no credentials configured for this registry)"
                }
            )));
        }
        let body = read_bounded(res, MAX_TOKEN_ANSWER_BYTES, realm).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("no token in the answer".into()))?;
        if token.len() > MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail("token too long or not printable ASCII".into()));
        }
        Ok(token.to_string())
    }

    fn url(&self, image: &ImageRef, kind: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{reference}",
            self.scheme, image.registry, image.repository
        )
    }

    /// The manifest digest `image` names: its digest, else its tag's manifest's digest.
    pub async fn resolve(&self, image: &ImageRef) -> Result<Digest, ImageError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let tag = image.tag.as_deref().unwrap_or("latest");
        match self.manifest(image, tag).await? {
            Some(m) => Ok(m.digest),
            None => Err(ImageError::Registry(format!("{image}: no such manifest"))),
        }
    }

    /// The manifest `reference` (a tag or digest) of `image`'s repository; `None` when the
    /// registry answers 404. A manifest fetched by digest must have that digest.
    pub async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
    ) -> Result<Option<Manifest>, ImageError> {
        let url = self.url(image, "manifests", reference);
        let res = self.get(image, &url, Some(MANIFEST_ACCEPT)).await?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !res.status().is_success() {
            return Err(ImageError::Registry(format!(
                "{url}: HTTP {}",
                res.status()
            )));
        }
        let body = read_bounded(res, MAX_MANIFEST_BYTES, &url).await?;
        let digest = Digest::of(&body);
        if reference.starts_with("sha256:") && digest.as_str() != reference {
            return Err(ImageError::Registry(format!(
                "{url}: manifest has digest {digest}"
            )));
        }
        Ok(Some(Manifest { body, digest }))
    }

    /// The blob `digest`, at most `max` bytes, checked against its digest.
    pub async fn blob(
        &self,
        image: &ImageRef,
        digest: &Digest,
        max: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let url = self.url(image, "blobs", digest.as_str());
        let res = self.get(image, &url, None).await?;
        if !res.status().is_success() {
            return Err(ImageError::Registry(format!(
                "{url}: HTTP {}",
                res.status()
            )));
        }
        let body = read_bounded(res, max, &url).await?;
        if Digest::of(&body) != *digest {
            return Err(ImageError::Registry(format!(
                "{url}: blob content does not match its digest"
            )));
        }
        Ok(body)
    }
}

async fn read_bounded(
    mut res: reqwest::Response,
    max: usize,
    url: &str,
) -> Result<Vec<u8>, ImageError> {
    let too_long = || ImageError::Registry(format!("{url}: answer longer than {max} bytes"));
    if res.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| ImageError::Registry(format!("{url}: {}", error_chain(&e))))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(serde::Deserialize)]
struct ManifestDoc {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// A layer of an OCI image manifest, as cosign's signature and attestation manifests list
/// them.
#[derive(serde::Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The layers of `manifest` (`what` names it in errors) whose media type is `media_type`.
pub(crate) fn layers_of(
    manifest: &[u8],
    what: &str,
    media_type: &str,
) -> Result<Vec<Descriptor>, ImageError> {
    let doc: ManifestDoc = serde_json::from_slice(manifest)
        .map_err(|e| ImageError::Registry(format!("{what}: {e}")))?;
    Ok(doc
        .layers
        .into_iter()
        .filter(|l| l.media_type == media_type)
        .collect())
}

/// The simple-signing layers of a cosign signature manifest.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, ImageError> {
    layers_of(manifest, "signature manifest", SIMPLE_SIGNING_MEDIA_TYPE)?
        .into_iter()
        .map(|mut l| {
            Ok(SignatureLayer {
                digest: Digest::parse(&l.digest)?,
                size: l.size,
                signature: l.annotations.remove(SIGNATURE_ANNOTATION),
                certificate: l.annotations.remove(crate::CERTIFICATE_ANNOTATION),
                rekor_bundle: l.annotations.remove(crate::BUNDLE_ANNOTATION),
            })
        })
        .collect()
}
