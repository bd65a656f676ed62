//! A bounded OCI distribution client: manifests and blobs, anonymous pulls, read up to a
//! fixed length, blobs checked against their digest.

use std::collections::BTreeMap;
use std::time::Duration;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            ca_pem: None,
            plain_http: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A registry client (anonymous pulls only).
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    scheme: &'static str,
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
        })
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
        let res = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await
            .map_err(|e| ImageError::Registry(format!("{url}: {}", error_chain(&e))))?;
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
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ImageError::Registry(format!("{url}: {}", error_chain(&e))))?;
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

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The simple-signing layers of a cosign signature manifest.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, ImageError> {
    let doc: ManifestDoc = serde_json::from_slice(manifest)
        .map_err(|e| ImageError::Registry(format!("signature manifest: {e}")))?;
    doc.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
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
