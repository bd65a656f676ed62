//! CI/CD (issue 15 part 7): `vouch attest --ci` (one attestation of the builder, a JSON
//! report and exit codes made for pipelines), `vouch provenance sign` (SLSA v1 provenance
//! signed with the builder's X.509-SVID, its chain carried in the envelope) and the
//! SVID-signed branch of `vouch provenance verify` (`--trust-bundle`, `--spiffe-id`).
//!
//! Exit codes, the same scheme as `vouch verify` and `vouch provenance verify`:
//! 0 affirming / verified (a `warning` result only with `--accept-warning`); 1 refused (a
//! contraindicated or unaccepted warning result, the verifier refusing the evidence, a
//! signature or chain that does not verify); 2 a usage or local error; 3 no verifier could be
//! reached (only `attest --ci`, the one that needs the network).

use super::rfc3339::{format_rfc3339, parse_rfc3339};
use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vouch_agent::{Agent, AgentConfig, AgentError};
use vouch_core::ArStatus;
use vouch_image::provenance::{self, Policy, VerifyingKey};

/// Exit code: the pipeline must stop (refused, contraindicated).
const EXIT_REFUSED: u8 = 1;
/// Exit code: a usage or local error.
const EXIT_LOCAL: u8 = 2;
/// Exit code: no verifier could be reached.
const EXIT_UNREACHABLE: u8 = 3;

/// `vouch attest --ci`: attest once and print one JSON object on standard output (`status`,
/// `exit_code`, `attestation_id`, `workload_id`, `result_path`, `reasons`).
pub(crate) async fn attest(cfg: AgentConfig, accept_warning: bool) -> Result<ExitCode> {
    let result_path = cfg.data_dir.join("result.jwt");
    let outcome = async {
        let mut agent = Agent::new(cfg).await?;
        agent.attest_once().await
    }
    .await;
    let (code, report) = match outcome {
        Ok(r) => {
            let code = match r.status {
                ArStatus::Affirming => 0,
                ArStatus::Warning if accept_warning => 0,
                _ => EXIT_REFUSED,
            };
            let report = json!({
                "status": r.status.as_str(),
                "exit_code": code,
                "attestation_id": r.attestation_id,
                "workload_id": r.workload_id,
                "policy": r.policy,
                "result_path": result_path,
                "expires_at": r.expires_at,
                "reasons": r.reasons,
            });
            (code, report)
        }
        Err(e) => {
            let (status, code) = match &e {
                AgentError::Unreachable { .. } => ("unreachable", EXIT_UNREACHABLE),
                AgentError::Refused { .. } => ("refused", EXIT_REFUSED),
                _ => ("error", EXIT_LOCAL),
            };
            let report = json!({
                "status": status,
                "exit_code": code,
                "reasons": [e.to_string()],
            });
            (code, report)
        }
    };
    println!("{report}");
    if code != 0 {
        eprintln!(
            "attest --ci: {} (exit {code})",
            report["status"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::from(code))
}

/// What `vouch provenance sign` signs, and with which SVID.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The built artifact (its SHA-256 becomes the statement's subject).
    #[arg(long)]
    artifact: PathBuf,
    /// Write the DSSE envelope here (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fetch the builder's X.509-SVID from the SPIFFE Workload API on this Unix socket.
    #[arg(long, conflicts_with_all = ["svid_cert", "svid_key"], required_unless_present = "svid_cert")]
    svid_socket: Option<PathBuf>,
    /// The builder's X.509-SVID chain (PEM, leaf first), instead of --svid-socket.
    #[arg(long, requires = "svid_key")]
    svid_cert: Option<PathBuf>,
    /// The SVID's private key (PEM, PKCS#8 or SEC1).
    #[arg(long, requires = "svid_cert")]
    svid_key: Option<PathBuf>,
    /// `buildDefinition.buildType`.
    #[arg(long, default_value = "https://vouch.dev/ci/pipeline@v1")]
    build_type: String,
    /// The source repository built (recorded as a resolved dependency).
    #[arg(long)]
    source_repo: Option<String>,
    /// The source ref or commit built.
    #[arg(long)]
    source_ref: Option<String>,
    /// The verifier (`https://host:port`) to countersign the signature with its own clock
    /// (`POST /v1/timestamp`); the answer travels next to the signature as `timestamp`, and
    /// `provenance verify --jwks` checks the SVID as of that time, not the signer's.
    #[arg(long, requires = "result")]
    timestamp_url: Option<String>,
    /// With --timestamp-url: the builder's attestation result the verifier issued (the
    /// `result_path` of `vouch attest --ci`), presented for the timestamp.
    #[arg(long, requires = "timestamp_url")]
    result: Option<PathBuf>,
    /// CA certificate (PEM) of the verifier's TLS certificate, for --timestamp-url.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// A signing key and its certificate chain (DER, leaf first).
pub(crate) struct SvidSigner {
    /// The X.509-SVID chain, DER, leaf first.
    pub(crate) chain: Vec<Vec<u8>>,
    /// The SVID's private key.
    pub(crate) key: std::sync::Arc<dyn rustls::sign::SigningKey>,
}

async fn load_svid(a: &SignArgs) -> Result<SvidSigner> {
    load_svid_from(
        a.svid_socket.as_deref(),
        a.svid_cert.as_deref(),
        a.svid_key.as_deref(),
    )
    .await
}

/// The builder's X.509-SVID and key: from the SPIFFE Workload API on `socket`, or from PEM
/// files `cert` (chain, leaf first) and `key`.
pub(crate) async fn load_svid_from(
    socket: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<SvidSigner> {
    use rustls::pki_types::pem::PemObject as _;
    if let Some(sock) = socket {
        let src = vouch_rp::X509Source::connect(sock)
            .await
            .with_context(|| format!("Workload API at {}", sock.display()))?;
        let svid = src.svid().context("no X.509-SVID from the Workload API")?;
        let ck = svid.certified_key();
        return Ok(SvidSigner {
            chain: svid.chain().to_vec(),
            key: ck.key.clone(),
        });
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        bail!("give --svid-socket, or --svid-cert and --svid-key");
    };
    let certs = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(&certs)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let der = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    Ok(SvidSigner { chain, key })
}

/// `vouch provenance sign`: an in-toto v1 statement with an SLSA v1 predicate over the
/// artifact, `runDetails.builder.id` the SVID's SPIFFE ID and `runDetails.metadata.finishedOn`
/// the signing time, in a DSSE envelope signed with the SVID's key; the signature carries the
/// SVID chain as `x5c` (base64 DER, leaf first).
pub(crate) async fn sign(a: SignArgs) -> Result<ExitCode> {
    use sha2::Digest as _;
    let signer = load_svid(&a).await?;
    let leaf = signer.chain.first().context("empty SVID chain")?;
    let spiffe_id = vouch_rp::svid_spiffe_id(leaf)
        .map_err(|e| anyhow::anyhow!("the SVID has no SPIFFE ID: {e}"))?
        .to_string();
    let bytes =
        std::fs::read(&a.artifact).with_context(|| format!("reading {}", a.artifact.display()))?;
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let name = a
        .artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut deps = Vec::new();
    if let Some(repo) = &a.source_repo {
        let uri = match &a.source_ref {
            Some(r) => format!("git+{repo}@{r}"),
            None => format!("git+{repo}"),
        };
        deps.push(json!({ "uri": uri }));
    }
    let now = vouch_server::unix_now();
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": name, "digest": { "sha256": digest } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": a.build_type,
                "externalParameters": {},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": { "id": spiffe_id },
                "metadata": { "finishedOn": format_rfc3339(now) },
            },
        },
    });
    let payload = serde_json::to_vec(&statement)?;
    let message = provenance::pae(provenance::PAYLOAD_TYPE, &payload);
    let schemes = [
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        rustls::SignatureScheme::ED25519,
        rustls::SignatureScheme::RSA_PSS_SHA256,
    ];
    let s = signer
        .key
        .choose_scheme(&schemes)
        .context("the SVID key is not ECDSA P-256, Ed25519 or RSA")?;
    let sig = s
        .sign(&message)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut envelope = json!({
        "payloadType": provenance::PAYLOAD_TYPE,
        "payload": b64(&payload),
        "signatures": [{
            "keyid": spiffe_id,
            "sig": b64(&sig),
            "x5c": signer.chain.iter().map(|c| b64(c)).collect::<Vec<_>>(),
        }],
    });
    if let (Some(url), Some(result)) = (&a.timestamp_url, &a.result) {
        let leaf = signer
            .chain
            .first()
            .context("the SVID has no certificate")?;
        match super::timestamp::countersign(&mut envelope, url, a.ca_cert.as_deref(), result, leaf)
            .await
        {
            Ok(t) => eprintln!("timestamp from {url}: {}", format_rfc3339(t)),
            Err(e) if e.is::<super::timestamp::Unreachable>() => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_UNREACHABLE));
            }
            Err(e) if e.to_string().starts_with(super::timestamp::REFUSED) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
            Err(e) => return Err(e),
        }
    }
    let text = serde_json::to_string_pretty(&envelope)? + "\n";
    match &a.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    eprintln!("signed provenance for {name} (sha256:{digest}) as {spiffe_id}");
    Ok(ExitCode::SUCCESS)
}

/// Most certificates read from one signature's `x5c`.
const MAX_X5C: usize = 4;

/// The trust domain's CA and the builder's SPIFFE ID `vouch provenance verify` checks an
/// SVID-signed envelope against.
pub(crate) struct SvidTrust {
    /// The builder's SPIFFE ID.
    pub(crate) id: vouch_rp::SpiffeId,
    verifier: std::sync::Arc<vouch_rp::SpiffeVerifier>,
    /// The trust domain's CA certificates (DER), which also certify the verifier replicas
    /// that sign revocation records.
    pub(crate) authorities: Vec<Vec<u8>>,
}

impl SvidTrust {
    /// Read `bundle` (PEM certificates, or a SPIFFE bundle JSON such as the verifier's
    /// `/v1/bundle`) for the trust domain of `spiffe_id`. Errors are local (exit 2).
    pub(crate) fn load(bundle: &Path, spiffe_id: &str) -> Result<Self> {
        let id = vouch_rp::SpiffeId::parse(spiffe_id)
            .map_err(|e| anyhow::anyhow!("--spiffe-id {spiffe_id:?}: {e}"))?;
        let pem = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
        let authorities = bundle_authorities(&pem, id.trust_domain())
            .map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
        let verifier = vouch_rp::SpiffeVerifier::new(
            id.trust_domain(),
            &authorities,
            vouch_rp::AllowedIds::Only(vec![id.clone()]),
        )
        .map_err(|e| anyhow::anyhow!("trust bundle {}: {e}", bundle.display()))?;
        Ok(Self {
            id,
            verifier,
            authorities,
        })
    }
}

/// The X.509 authorities of a trust bundle: PEM certificates, or a SPIFFE bundle JSON (the
/// verifier's `/v1/bundle`) for trust domain `td`.
pub(crate) fn bundle_authorities(
    bytes: &[u8],
    td: &vouch_rp::TrustDomain,
) -> Result<Vec<Vec<u8>>, String> {
    let mut authorities = Vec::new();
    if bytes.trim_ascii_start().starts_with(b"{") {
        // A SPIFFE bundle (the verifier's /v1/bundle): its x509-svid authorities.
        let b = vouch_rp::TrustBundle::from_jwks(td.clone(), bytes).map_err(|e| e.to_string())?;
        authorities = b.x509_authorities().to_vec();
    }
    for p in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let Ok(p) = p else { break };
        if p.label == "CERTIFICATE" {
            authorities.push(p.contents);
        }
    }
    Ok(authorities)
}

/// The key of an SVID-signed envelope, trusted only when the first signature's `x5c` chain
/// verifies against `trust`'s bundle as of `at` (the verifier's countersigned time; `None`:
/// the statement's `finishedOn`, the signer's word), the statement's `finishedOn` is not later
/// than `at` (give or take [`super::timestamp::SKEW`]) nor in the future, and the leaf names
/// exactly `trust`'s SPIFFE ID. Returns the leaf's key and the leaf (DER). `Err` is a refusal
/// reason.
pub(crate) fn svid_signer(
    envelope: &[u8],
    trust: &SvidTrust,
    at: Option<u64>,
) -> Result<(VerifyingKey, Vec<u8>), String> {
    let (id, verifier) = (&trust.id, &trust.verifier);
    let value: serde_json::Value =
        serde_json::from_slice(envelope).map_err(|e| format!("envelope is not JSON: {e}"))?;
    let x5c = value["signatures"][0]["x5c"]
        .as_array()
        .ok_or("the envelope's signature carries no x5c certificate chain")?;
    if x5c.is_empty() || x5c.len() > MAX_X5C {
        return Err(format!(
            "x5c holds {} certificates (1 to {MAX_X5C} allowed)",
            x5c.len()
        ));
    }
    let chain = x5c
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| "an x5c entry is not base64".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The signing time the statement claims; the signature over it is checked after, with
    // the key this chain certifies, so a changed time breaks the signature.
    let mut env = provenance::Envelope::parse(envelope).map_err(|e| e.to_string())?;
    let st: serde_json::Value = serde_json::from_slice(&env.payload)
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    let finished = st["predicate"]["runDetails"]["metadata"]["finishedOn"]
        .as_str()
        .and_then(parse_rfc3339)
        .ok_or("the statement has no runDetails.metadata.finishedOn (YYYY-MM-DDTHH:MM:SSZ)")?;
    let now = vouch_server::unix_now();
    if finished > now + 60 {
        return Err(format!(
            "finishedOn is {} s in the future",
            finished.saturating_sub(now)
        ));
    }
    let (at, when) = match at {
        Some(t) if finished > t + super::timestamp::SKEW => {
            return Err(format!(
                "finishedOn ({}) is later than the verifier's timestamp ({})",
                format_rfc3339(finished),
                format_rfc3339(t)
            ));
        }
        Some(t) => (t, "timestamp time"),
        None => (finished, "signing time"),
    };
    let got = verifier
        .verify_chain(&chain, at)
        .map_err(|e| format!("SVID at {when}: {e}"))?;
    if got != *id {
        return Err(format!("signed by {got}, {id} is required"));
    }
    let leaf = chain.first().ok_or("empty x5c")?;
    let key = VerifyingKey::from_certificate_der(leaf).map_err(|e| e.to_string())?;
    // The chain and the verifier's timestamp belong to the first signature (the timestamp
    // countersigns its bytes): that very signature must be the one over this payload. Else
    // a genuine, timestamped signature could lend its time to another signature by the same
    // key (one made after the SVID expired, with a backdated finishedOn) listed after it.
    env.signatures.truncate(1);
    env.verify_signature(std::slice::from_ref(&key))
        .map_err(|_| {
            "the first signature, the one its x5c chain and timestamp are for, does not verify \
             over this payload (another signature cannot borrow its chain or time)"
                .to_string()
        })?;
    Ok((key, leaf.clone()))
}

/// `vouch provenance verify --trust-bundle … --spiffe-id …`: [`svid_signer`], then the
/// usual checks with the SPIFFE ID as the required builder id.
pub(crate) fn svid_policy(policy: &mut Policy, spiffe_id: &str) -> Result<(), String> {
    match &policy.builder_id {
        Some(b) if b != spiffe_id => Err(format!(
            "--builder-id {b:?} and --spiffe-id {spiffe_id:?} differ"
        )),
        _ => {
            policy.builder_id = Some(spiffe_id.to_string());
            Ok(())
        }
    }
}
