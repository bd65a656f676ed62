//! `vouch provenance verify`: SLSA v1 provenance in an in-toto DSSE envelope (or a sigstore
//! bundle holding one) checked offline against trusted keys, an artifact and a policy over
//! builder id, source repository and ref, and build type (issue 15 item 2). The checks are
//! `vouch_image::provenance::verify`'s.
//!
//! Exit codes, for pipelines: 0 verified, 1 refused (the reason on standard error), 2 a usage
//! or local error (a file that cannot be read, a key that is not a supported public key).

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use sha2::Digest as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vouch_image::provenance::{self, MAX_ENVELOPE_BYTES, Policy, VerifyingKey};

use crate::output;

/// `vouch provenance`: SLSA provenance.
#[derive(Debug, Subcommand)]
pub(crate) enum ProvenanceCmd {
    /// Verify SLSA v1 provenance for an artifact. Exits 0 when it verifies, 1 when refused.
    Verify(VerifyArgs),
    /// Sign SLSA v1 provenance for an artifact with the builder's X.509-SVID (the chain
    /// travels in the envelope; `verify --trust-bundle --spiffe-id` checks it).
    Sign(super::ci::SignArgs),
    /// Have the verifier countersign an envelope's signature with its own clock (what `sign
    /// --timestamp-url` does), for an envelope signed elsewhere. Exits 0, 1 when the verifier
    /// refuses, 3 when it cannot be reached.
    Timestamp(super::timestamp::TimestampArgs),
}

/// What `vouch provenance verify` checks.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The DSSE envelope (JSON), or a sigstore bundle with a `dsseEnvelope`.
    #[arg(long)]
    envelope: PathBuf,
    /// A trusted public key (PEM SubjectPublicKeyInfo: ECDSA P-256, Ed25519 or RSA) or a PEM
    /// certificate whose key is trusted; repeat for several.
    #[arg(long = "key", required_unless_present_any = ["trusted_root", "trust_bundle"])]
    keys: Vec<PathBuf>,
    /// A sigstore trusted_root.json: the envelope is a sigstore bundle whose Fulcio
    /// certificate must chain to it (valid at the bundle's log time); its key is then trusted.
    #[arg(long)]
    trusted_root: Option<PathBuf>,
    /// With --trusted-root: the certificate's URI identity required (for GitHub Actions, the
    /// signing workflow, `https://github.com/<owner>/<repo>/<path>@<ref>`).
    #[arg(long, requires = "trusted_root")]
    cert_identity: Option<String>,
    /// With --trusted-root: the certificate's OIDC issuer required.
    #[arg(long, requires = "trusted_root")]
    cert_issuer: Option<String>,
    /// The SPIFFE trust domain's CA certificates (PEM, or the SPIFFE bundle JSON the
    /// verifier serves at /v1/bundle): the envelope must be signed by an
    /// X.509-SVID (`vouch provenance sign`) chaining to them at its signing time.
    #[arg(long, requires = "spiffe_id")]
    trust_bundle: Option<PathBuf>,
    /// With --trust-bundle: the builder's SPIFFE ID the SVID must name (also required as
    /// the provenance's builder id).
    #[arg(long, requires = "trust_bundle")]
    spiffe_id: Option<String>,
    /// With --trust-bundle: the verifier's JWKS (a file, or its https:// URL) whose key must
    /// have signed the envelope's `timestamp` (`provenance sign --timestamp-url`): the SVID
    /// chain is then checked as of that countersigned time, and `finishedOn` may not be later.
    #[arg(long, requires = "trust_bundle")]
    jwks: Option<String>,
    /// With --trust-bundle: accept an envelope without a verifier timestamp, checking the SVID
    /// as of the `finishedOn` its signer chose. WEAKER: whoever holds an expired SVID's key
    /// can backdate a statement into the SVID's validity.
    #[arg(long, requires = "trust_bundle")]
    allow_signer_time: bool,
    /// With --trust-bundle: the verifier's revocation feed (a `GET /v1/revocations` answer
    /// saved to a file, a set saved by `vouch rp watch`, or the https:// URL): refuse an SVID
    /// whose serial is revoked, or whose builder's workload or node (named by the timestamp)
    /// is; refuse everything while the feed is incomplete or stale.
    #[arg(long, requires = "trust_bundle")]
    revocations: Option<String>,
    /// With --revocations: how old the feed's signed head may be (seconds, or 90s, 10m, 1h).
    #[arg(long, default_value = "5m", requires = "revocations")]
    max_revocation_age: String,
    /// CA certificate (PEM) of the verifier's TLS certificate, for https:// --jwks and
    /// --revocations.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The artifact the provenance must be about (its SHA-256 is computed).
    #[arg(long, conflicts_with = "digest", required_unless_present = "digest")]
    artifact: Option<PathBuf>,
    /// The artifact's digest, `sha256:<hex>`, instead of --artifact.
    #[arg(long)]
    digest: Option<String>,
    /// Required `runDetails.builder.id`.
    #[arg(long)]
    builder_id: Option<String>,
    /// Required source repository (e.g. https://github.com/owner/repo).
    #[arg(long)]
    source_repo: Option<String>,
    /// Required source ref (e.g. refs/tags/v1.2.0).
    #[arg(long)]
    source_ref: Option<String>,
    /// Required `buildDefinition.buildType`.
    #[arg(long)]
    build_type: Option<String>,
}

/// Read at most `limit + 1` bytes, so an oversized file is refused by the verifier's bound
/// without being read whole.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

fn artifact_digest(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Run `vouch provenance`.
pub(crate) async fn run(cmd: ProvenanceCmd, json: bool) -> Result<ExitCode> {
    let a = match cmd {
        ProvenanceCmd::Verify(a) => a,
        ProvenanceCmd::Timestamp(a) => return super::timestamp::run(a).await,
        // Dispatched to the async `ci::sign` before this.
        ProvenanceCmd::Sign(_) => bail!("vouch provenance sign runs elsewhere"),
    };
    let envelope = read_bounded(&a.envelope, MAX_ENVELOPE_BYTES)?;
    let mut keys = Vec::new();
    for k in &a.keys {
        let pem = std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?;
        keys.push(VerifyingKey::from_pem(&pem).with_context(|| k.display().to_string())?);
    }
    if let Some(tr) = &a.trusted_root {
        let root = read_bounded(tr, provenance::MAX_TRUSTED_ROOT_BYTES)?;
        let signer = match provenance::fulcio_signer(&envelope, &root) {
            Ok(s) => s,
            Err(e) => return Ok(refuse(&e.to_string(), json)),
        };
        for (what, want, got) in [
            ("identity", &a.cert_identity, &signer.identity),
            ("issuer", &a.cert_issuer, &signer.issuer),
        ] {
            if let Some(w) = want.as_ref().filter(|w| *w != got) {
                return Ok(refuse(
                    &format!("certificate {what} is {got:?}, {w:?} is required"),
                    json,
                ));
            }
        }
        keys.push(signer.key);
    }
    if let (Some(tb), Some(id)) = (&a.trust_bundle, &a.spiffe_id) {
        use super::timestamp::{self as ts, Source};
        let trust = super::ci::SvidTrust::load(tb, id)?;
        let ca = a.ca_cert.as_deref();
        let now = vouch_server::unix_now();
        let jwks = match &a.jwks {
            Some(j) => match ts::read_source_or_unreachable(j, ca, Source::Jwks).await? {
                Some(t) => Some(t),
                None => return Ok(ExitCode::from(3)),
            },
            None if a.allow_signer_time => None,
            None => bail!(
                "--trust-bundle needs --jwks (the verifier's keys, to check its timestamp), \
                 or --allow-signer-time to trust the signer's finishedOn"
            ),
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&envelope) else {
            return Ok(refuse("the envelope is not JSON", json));
        };
        let has_timestamp = value["signatures"][0].get(ts::FIELD).is_some();
        let stamp = match &jwks {
            Some(j) if has_timestamp || !a.allow_signer_time => {
                let checked =
                    ts::first_leaf(&value).and_then(|leaf| ts::check(&value, j, now, &leaf));
                match checked {
                    Ok(t) => Some(t),
                    Err(e) => return Ok(refuse(&e, json)),
                }
            }
            _ => None,
        };
        let leaf = match super::ci::svid_signer(&envelope, &trust, stamp.as_ref().map(|t| t.time)) {
            Ok((k, leaf)) => {
                keys.push(k);
                leaf
            }
            Err(e) => return Ok(refuse(&e, json)),
        };
        if let Some(feed) = &a.revocations {
            let Some(text) = ts::read_source_or_unreachable(feed, ca, Source::Revocations).await?
            else {
                return Ok(ExitCode::from(3));
            };
            let max_age = crate::config::parse_duration(&a.max_revocation_age)
                .context("--max-revocation-age")?;
            let revs = ts::Revocations::load(
                &text,
                &trust.authorities,
                trust.id.trust_domain(),
                max_age,
                now,
            )?;
            match revs.check(&leaf, stamp.as_ref(), now) {
                Ok(note) => eprintln!("{note}"),
                Err(e) => return Ok(refuse(&e, json)),
            }
        }
        match &stamp {
            Some(t) => eprintln!(
                "timestamp: {} by verifier key {} for {}",
                super::rfc3339::format_rfc3339(t.time),
                t.kid,
                t.workload
            ),
            None => eprintln!(
                "warning: no verifier timestamp checked: the SVID was checked as of the signer's finishedOn"
            ),
        }
    }
    let digest = match (&a.artifact, &a.digest) {
        (Some(p), _) => artifact_digest(p)?,
        (None, Some(d)) => d.clone(),
        (None, None) => bail!("--artifact or --digest is required"),
    };
    let mut policy = Policy {
        builder_id: a.builder_id,
        source_repo: a.source_repo,
        source_ref: a.source_ref,
        build_type: a.build_type,
    };
    if let Some(id) = &a.spiffe_id
        && let Err(e) = super::ci::svid_policy(&mut policy, id)
    {
        return Ok(refuse(&e, json));
    }
    match provenance::verify(&envelope, &keys, &digest, &policy) {
        Ok(v) => {
            if json {
                output::json(&v)?;
            } else {
                println!(
                    "verified: {} ({}) built by {} ({}) from {}@{}, signed by {}",
                    v.subject,
                    v.digest,
                    v.builder_id,
                    v.build_type,
                    v.source_repo.as_deref().unwrap_or("-"),
                    v.source_ref.as_deref().unwrap_or("-"),
                    v.key_id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refuse(&e.to_string(), json)),
    }
}

fn refuse(why: &str, json: bool) -> ExitCode {
    if json {
        let _ = output::json(&json!({ "refused": why }));
    }
    eprintln!("provenance refused: {why}");
    ExitCode::from(1)
}
