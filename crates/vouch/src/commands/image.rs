//! `vouch image verify`: a container image's cosign signatures checked in its registry with
//! public keys, or key-less against a sigstore trusted root with a required certificate
//! identity and issuer (vouch-image): the tag resolved to its manifest digest, the `sha256-<hex>.sig`
//! manifest and its simple-signing payloads fetched with bounded reads, a payload accepted when
//! its ECDSA P-256 signature verifies under one of the keys, its type is a cosign container
//! image signature and it names this digest.
//!
//! Exit codes: 0 verified, 1 refused (unsigned, no valid signature; the reason on standard
//! error), 2 a usage or local error (a key that cannot be read, a registry that cannot be
//! reached).

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vouch_image::{ClientOptions, ImageError, ImageRef, PublicKey, RegistryClient};

use crate::output;

/// `vouch image`: container image signatures.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCmd {
    /// Verify an image's cosign signatures in its registry with public keys. Exits 0 when a
    /// signature by one of the keys verifies, 1 when refused.
    Verify(ImageVerifyArgs),
}

/// Arguments of `vouch image verify`.
#[derive(Debug, Args)]
pub(crate) struct ImageVerifyArgs {
    /// The image: `host[:port]/repository:tag` or `host[:port]/repository@sha256:<hex>`.
    image: String,
    /// A trusted cosign public key (PEM, ECDSA P-256); repeat for several.
    #[arg(long = "key", required_unless_present = "trusted_root")]
    keys: Vec<PathBuf>,
    /// A sigstore trusted_root.json: key-less signatures (a Fulcio certificate and its Rekor
    /// entry in the layer's annotations) are verified offline against it.
    #[arg(long, requires_all = ["cert_identity", "cert_issuer"])]
    trusted_root: Option<PathBuf>,
    /// With --trusted-root: the certificate identity required (URI or email SAN), exactly.
    #[arg(long, requires = "trusted_root")]
    cert_identity: Option<String>,
    /// With --trusted-root: the OIDC issuer required, exactly.
    #[arg(long, requires = "trusted_root")]
    cert_issuer: Option<String>,
    /// PEM CA certificates for the registry's TLS certificate (default: the built-in roots).
    #[arg(long)]
    registry_ca: Option<PathBuf>,
    /// Speak plain HTTP to the registry (a loopback development registry only).
    #[arg(long)]
    plain_http: bool,
    /// The image's repository is a mirror: `PREFIX=SIGNED_PREFIX` (e.g.
    /// `mirror.local/team=registry.example/team`) accepts signatures whose
    /// `docker-reference` names the same repository under SIGNED_PREFIX. Without it the
    /// signature must name the image's own repository.
    #[arg(long, value_name = "PREFIX=SIGNED_PREFIX")]
    remap_identity: Option<String>,
    /// Registry credentials: a Docker config.json or containers auth.json (`auths`, each
    /// `auth` = base64 `user:password`). Used when the registry asks (Basic, or the Docker
    /// token flow); never sent over plain HTTP except to loopback.
    #[arg(long)]
    auth_file: Option<PathBuf>,
}

pub(crate) async fn run(cmd: ImageCmd, json: bool) -> Result<ExitCode> {
    let ImageCmd::Verify(a) = cmd;
    let image = ImageRef::parse(&a.image)?;
    let mut keys = Vec::new();
    for p in &a.keys {
        let text = std::fs::read_to_string(p).with_context(|| format!("key {}", p.display()))?;
        keys.push(PublicKey::from_pem(&text).with_context(|| format!("key {}", p.display()))?);
    }
    let mut trust = vouch_image::Trust {
        keys,
        ..Default::default()
    };
    if let (Some(p), Some(id), Some(iss)) = (&a.trusted_root, &a.cert_identity, &a.cert_issuer) {
        let root = std::fs::read(p).with_context(|| format!("trusted root {}", p.display()))?;
        trust.keyless.push(
            vouch_image::cosign::KeylessIdentity::new(&root, id, iss)
                .with_context(|| format!("trusted root {}", p.display()))?,
        );
    }
    if let Some(r) = &a.remap_identity {
        let (prefix, signed_prefix) = r
            .split_once('=')
            .filter(|(p, s)| !p.is_empty() && !s.is_empty())
            .context("--remap-identity takes PREFIX=SIGNED_PREFIX")?;
        trust.identity = vouch_image::SignedIdentity::Remap {
            prefix: prefix.to_string(),
            signed_prefix: signed_prefix.to_string(),
        };
    }
    let ca_pem = match &a.registry_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("registry CA {}", p.display()))?),
        None => None,
    };
    let credentials = match &a.auth_file {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("auth file {}", p.display()))?;
            vouch_image::auth::Credentials::from_docker_config(&bytes)
                .with_context(|| format!("auth file {}", p.display()))?
        }
        None => vouch_image::auth::Credentials::default(),
    };
    let client = RegistryClient::new(&ClientOptions {
        ca_pem,
        plain_http: a.plain_http,
        credentials,
        ..ClientOptions::default()
    })?;
    match vouch_image::verify_image_with(&client, &image, &trust).await {
        Ok(v) => {
            if json {
                output::json(&v)?;
            } else {
                println!("{image}: {} verified", v.digest);
                for s in &v.signatures {
                    println!("  signed by {} as {}", s.key_id, s.docker_reference);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ImageError::Unsigned(..) | ImageError::NotVerified { .. })) => {
            eprintln!("image refused: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
