//! `vouch custody verify`: a software supply chain's chain of custody checked offline against
//! an in-toto layout (issue 15 item 6).
//!
//! Reads in-toto v0.9 metablocks (`{"signed": {...}, "signatures": [{"keyid", "sig"}]}`) as
//! the PyPI `in-toto` tools write them: signatures are over the OLPC canonical JSON of
//! `signed` exactly as securesystemslib encodes it (keys sorted by code point, no whitespace,
//! only `"` and `\` escaped in strings, integers only), with `ed25519` (raw 64-byte signature,
//! hex) and `ecdsa-sha2-nistp256` (DER signature over SHA-256, hex) keys. Checks, in
//! in-toto-verify's order: the layout is signed by every `--layout-key`; it has not expired;
//! each step has at least `threshold` links (`<step>.<keyid[:8]>.link` in `--links`) signed
//! by distinct keys the step authorizes, and those links agree on materials and products;
//! each step's `expected_materials` and `expected_products` rules hold (MATCH, ALLOW,
//! DISALLOW, CREATE, DELETE, MODIFY, REQUIRE as the in-toto specification defines them), so a
//! step whose materials are not the previous step's products (missing, reordered or altered
//! step) is refused. Patterns are matched as Python's `fnmatch` does ([`glob`]). Layouts and
//! links may also be DSSE envelopes (`application/vnd.in-toto+json`, as `in-toto-run
//! --use-dsse` writes them; signatures over the DSSE pre-authentication encoding). What it
//! does not implement it refuses with the reason rather than skips: GPG keys, inspections
//! unless `--run-inspections`. Sublayouts (a step's link that is a layout signed by the
//! step's functionary, its links in `<step>.<keyid[:8]>/`) are verified recursively, at most
//! 4 deep, and stand for the step by their summary link, as in in-toto. Keys: ed25519, ecdsa-sha2-nistp256, and RSA with
//! rsassa-pss-sha256 or rsa-pkcs1v15-sha256.
//!
//! Attested builders as functionaries: a step may name SPIFFE IDs instead of keys, with
//! in-toto-golang's `cert_constraints` (in-toto ITE-7; `uris` holds one `spiffe://` ID, other
//! attributes only `*`). Its links are `<step>.<anything>.link`, signed by an X.509-SVID whose
//! chain travels in the signature's `cert` (PEM, leaf first, as in-toto-golang's metablock
//! signatures carry it), with the verifier's countersignature in `timestamp` and the signer's
//! time in the signed `environment.vouch_signed_at` (`vouch custody sign` writes all three).
//! Such a link counts only if the timestamp verifies under `--jwks`, the chain verifies to
//! `--trust-bundle` as of the timestamp, the SVID names one of the step's SPIFFE IDs, and
//! `--revocations` revokes neither the SVID nor the builder's node or workload; the threshold
//! counts distinct SPIFFE IDs. A plain-key link does not count for such a step.
//!
//! Bounded reading: a layout is at most 1 MiB and a link 16 MiB, at most 64 signatures a
//! metablock, 1,000 steps, 100,000 artifacts a link.
//!
//! Exit codes: 0 the chain verifies, 1 refused (the reason on standard error), 2 a usage or
//! local error.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::output;

mod glob;
mod intoto;

use intoto::*;

const MAX_LAYOUT: u64 = 1 << 20;
const MAX_LINK: u64 = 16 << 20;
const MAX_STEPS: usize = 1000;

/// `vouch custody`: chain of custody checks.
#[derive(Debug, Subcommand)]
pub(crate) enum CustodyCmd {
    /// Verify a supply chain's in-toto links against a signed layout, offline. Exits 0 when
    /// the chain verifies, 1 when refused (the reason on standard error).
    Verify(VerifyArgs),
    /// Sign an in-toto link (as `in-toto-run` or `in-toto-record` wrote it) with this
    /// workload's X.509-SVID, for a layout step that names SPIFFE IDs as functionaries
    /// (`cert_constraints`). Writes `<step>.<keyid[:8]>.link` into --out-dir.
    Sign(SignArgs),
}

/// Flags of `vouch custody sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The link to sign, a metablock or a DSSE envelope (its `signed` part or payload is
    /// kept; its signatures are replaced; the output is a metablock).
    #[arg(long)]
    link: PathBuf,
    /// Where to write the SVID-signed link.
    #[arg(long)]
    out_dir: PathBuf,
    /// Fetch the X.509-SVID from the SPIFFE Workload API on this Unix socket (the agent
    /// gives one only to a workload attested affirming).
    #[arg(long, conflicts_with_all = ["svid_cert", "svid_key"], required_unless_present = "svid_cert")]
    svid_socket: Option<PathBuf>,
    /// The X.509-SVID chain (PEM, leaf first), instead of --svid-socket.
    #[arg(long, requires = "svid_key")]
    svid_cert: Option<PathBuf>,
    /// The SVID's private key (PEM), with --svid-cert.
    #[arg(long, requires = "svid_cert")]
    svid_key: Option<PathBuf>,
    /// Have the verifier at this URL countersign the signature with its own clock
    /// (`POST /v1/timestamp`); the answer travels next to the signature as `timestamp`, and
    /// `custody verify --jwks` checks the SVID as of that time, not the signer's.
    #[arg(long, requires = "result")]
    timestamp_url: Option<String>,
    /// With --timestamp-url: the builder's attestation result the verifier issued, presented
    /// for the timestamp.
    #[arg(long, requires = "timestamp_url")]
    result: Option<PathBuf>,
    /// CA certificate (PEM) of the verifier's TLS certificate, for --timestamp-url.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// Flags of `vouch custody verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The signed in-toto layout (root.layout).
    #[arg(long)]
    layout: PathBuf,
    /// A public key (PEM SubjectPublicKeyInfo: ed25519, ECDSA P-256, or RSA read as
    /// RSASSA-PSS) that must have signed the layout; repeat for several (each must have signed).
    #[arg(long = "layout-key", required = true)]
    layout_keys: Vec<PathBuf>,
    /// The directory holding the steps' links (`<step>.<keyid[:8]>.link`; for a step whose
    /// functionaries are SPIFFE IDs, every `<step>.<name>.link`).
    #[arg(long)]
    links: PathBuf,
    /// The SPIFFE trust domain's CA certificates (PEM, or the SPIFFE bundle JSON the verifier
    /// serves at /v1/bundle). Required when a step names SPIFFE IDs as functionaries
    /// (`cert_constraints`): such a step counts a link only if an X.509-SVID chaining to
    /// this bundle at the verifier's timestamp (see --jwks), naming one of those IDs, signed
    /// it.
    #[arg(long)]
    trust_bundle: Option<PathBuf>,
    /// The trust domain of --trust-bundle (default: that of the layout's SPIFFE IDs).
    #[arg(long, requires = "trust_bundle")]
    trust_domain: Option<String>,
    /// With --trust-bundle: the verifier's JWKS (a file, or its https:// URL) whose key must
    /// have signed each SVID-signed link's `timestamp` (`custody sign --timestamp-url`): the
    /// SVID chain is then checked as of that countersigned time, and the link's
    /// `vouch_signed_at` may not be later.
    #[arg(long, requires = "trust_bundle")]
    jwks: Option<String>,
    /// With --trust-bundle: accept SVID-signed links without a verifier timestamp, checking
    /// the SVID as of the `vouch_signed_at` its signer chose. WEAKER: whoever holds an
    /// expired SVID's key can backdate a link into the SVID's validity.
    #[arg(long, requires = "trust_bundle")]
    allow_signer_time: bool,
    /// With --trust-bundle: the verifier's revocation feed (a `GET /v1/revocations` answer
    /// saved to a file, a set saved by `vouch rp watch`, or the https:// URL): a link signed by
    /// an SVID whose serial is revoked, or whose builder's workload or node (named by the
    /// timestamp) is, does not count; every SVID-signed link is refused while the feed is
    /// incomplete or stale.
    #[arg(long, requires = "trust_bundle")]
    revocations: Option<String>,
    /// With --revocations: how old the feed's signed head may be (seconds, or 90s, 10m, 1h).
    #[arg(long, default_value = "5m", requires = "revocations")]
    max_revocation_age: String,
    /// CA certificate (PEM) of the verifier's TLS certificate, for https:// --jwks and
    /// --revocations.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Run the layout's inspections (commands the layout's owner wrote, executed HERE, in this
    /// directory, with your privileges) after the steps verify, recording the directory's
    /// files before and after as in-toto does, then check their artifact rules. Without
    /// it, a layout with inspections is refused.
    #[arg(long, value_name = "DIR")]
    run_inspections: Option<PathBuf>,
    /// With --run-inspections: seconds an inspection may run before it is killed and the
    /// chain refused (in-toto's default, 10).
    #[arg(long, default_value_t = 10, requires = "run_inspections")]
    inspection_timeout: u64,
    /// Refuse a step whose link's command is not the layout's non-empty `expected_command`
    /// (in-toto, and Vouch by default, only warn).
    #[arg(long)]
    require_expected_command: bool,
}

/// How `verify` runs.
struct VerifyOpts<'a> {
    svid: Option<&'a SvidOptions>,
    /// `--run-inspections`: the directory and the time limit.
    inspections: Option<(PathBuf, std::time::Duration)>,
    require_expected_command: bool,
}

/// What SVID-signed links are checked against (`--trust-bundle`, `--jwks`,
/// `--revocations`).
struct SvidOptions {
    bundle: Vec<u8>,
    trust_domain: Option<String>,
    jwks: Option<String>,
    allow_signer_time: bool,
    /// The feed's text and the longest age allowed, seconds.
    revocations: Option<(String, u64)>,
}

/// The checks of SVID-signed links, built once the layout names the trust domain.
struct SvidCtx {
    verifier: std::sync::Arc<vouch_rp::SpiffeVerifier>,
    jwks: Option<String>,
    allow_signer_time: bool,
    revocations: Option<super::timestamp::Revocations>,
}

/// Run `vouch custody`.
pub(crate) async fn run(cmd: CustodyCmd, json: bool) -> Result<ExitCode> {
    let a = match cmd {
        CustodyCmd::Verify(a) => a,
        CustodyCmd::Sign(a) => return sign(a).await,
    };
    let mut keys = Vec::new();
    for p in &a.layout_keys {
        let pem = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        keys.push(key_from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.0))?);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let svid = match &a.trust_bundle {
        Some(p) => {
            use super::timestamp::{Source, read_source};
            let ca = a.ca_cert.as_deref();
            let jwks = match &a.jwks {
                Some(j) => Some(read_source(j, ca, Source::Jwks).await?),
                None if a.allow_signer_time => None,
                None => anyhow::bail!(
                    "--trust-bundle needs --jwks (the verifier's keys, to check its timestamps), \
                     or --allow-signer-time to trust the signers' vouch_signed_at"
                ),
            };
            let revocations = match &a.revocations {
                Some(r) => Some((
                    read_source(r, ca, Source::Revocations).await?,
                    crate::config::parse_duration(&a.max_revocation_age)
                        .context("--max-revocation-age")?,
                )),
                None => None,
            };
            Some(SvidOptions {
                bundle: std::fs::read(p).with_context(|| format!("read {}", p.display()))?,
                trust_domain: a.trust_domain.clone(),
                jwks,
                allow_signer_time: a.allow_signer_time,
                revocations,
            })
        }
        None => None,
    };
    let opts = VerifyOpts {
        svid: svid.as_ref(),
        inspections: a
            .run_inspections
            .clone()
            .map(|d| (d, std::time::Duration::from_secs(a.inspection_timeout))),
        require_expected_command: a.require_expected_command,
    };
    match verify(&a.layout, &keys, &a.links, now, &opts) {
        Ok(steps) => {
            if json {
                output::json(&json!({"verified": true, "steps": steps}))?;
            } else {
                println!("chain of custody verified: {}", steps.join(" -> "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Refused(why)) => {
            if json {
                output::json(&json!({"verified": false, "reason": why}))?;
            }
            eprintln!("refused: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `vouch custody sign`: the link's `signed` part with `environment.vouch_signed_at` set to
/// now, signed over its canonical JSON with the SVID's key; the signature carries the SVID
/// chain as `cert` (PEM, leaf first) and, as keyid, the SHA-256 of the leaf's public key.
async fn sign(a: SignArgs) -> Result<ExitCode> {
    use sha2::Digest as _;
    let bytes = read_bounded(&a.link, MAX_LINK).map_err(|e| anyhow::anyhow!(e.0))?;
    // A metablock or a DSSE envelope (`in-toto-run --use-dsse`); its signatures are replaced.
    let mut signed = parse_metablock(&a.link.display().to_string(), &bytes)
        .map_err(|e| anyhow::anyhow!(e.0))?
        .signed;
    if signed.get("_type").and_then(Value::as_str) != Some("link") {
        anyhow::bail!("{}: _type is not \"link\"", a.link.display());
    }
    let name = signed
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .context("the link has no step name (or one with '/')")?
        .to_owned();
    let signer = super::ci::load_svid_from(
        a.svid_socket.as_deref(),
        a.svid_cert.as_deref(),
        a.svid_key.as_deref(),
    )
    .await?;
    let leaf = signer.chain.first().context("empty SVID chain")?;
    let spiffe_id = vouch_rp::svid_spiffe_id(leaf)
        .map_err(|e| anyhow::anyhow!("the SVID has no SPIFFE ID: {e}"))?
        .to_string();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow::anyhow!("the SVID does not parse: {e}"))?;
    let keyid = hex::encode(sha2::Sha256::digest(cert.public_key().raw));
    let mut env = match signed.remove("environment") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    env.insert(
        SIGNED_AT.into(),
        super::rfc3339::format_rfc3339(vouch_server::unix_now()).into(),
    );
    signed.insert("environment".into(), Value::Object(env));
    let signed = Value::Object(signed);
    let mut canon = Vec::new();
    canonical(&signed, &mut canon).map_err(|e| anyhow::anyhow!(e.0))?;
    let s = signer
        .key
        .choose_scheme(&[
            rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
            rustls::SignatureScheme::ED25519,
        ])
        .context("the SVID key is neither ECDSA P-256 nor Ed25519")?;
    let sig = s
        .sign(&canon)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let mut pem = String::new();
    for c in &signer.chain {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let mut signature = json!({"keyid": keyid, "sig": hex::encode(&sig), "cert": pem});
    if let (Some(url), Some(result)) = (&a.timestamp_url, &a.result) {
        let mut view = stamp_view(&sig, None);
        let leaf = signer
            .chain
            .first()
            .context("the SVID has no certificate")?;
        let at = super::timestamp::countersign(&mut view, url, a.ca_cert.as_deref(), result, leaf)
            .await?;
        signature[super::timestamp::FIELD] = view["signatures"][0][super::timestamp::FIELD].clone();
        eprintln!(
            "timestamped by the verifier at {}",
            super::rfc3339::format_rfc3339(at)
        );
    }
    let out = json!({"signed": signed, "signatures": [signature]});
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("create {}", a.out_dir.display()))?;
    let path = a.out_dir.join(format!("{name}.{}.link", &keyid[..8]));
    let mut text = serde_json::to_vec_pretty(&out)?;
    text.push(b'\n');
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    eprintln!("signed step {name} as {spiffe_id}: {}", path.display());
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

// ---- keys and signatures ----

/// A public key a signature is checked with.
#[derive(Debug, Clone)]
enum PubKey {
    Ed25519(Vec<u8>),
    /// The uncompressed point.
    P256(Vec<u8>),
    /// RSA (PKCS#1 RSAPublicKey DER), RSASSA-PSS with SHA-256 and a salt as long as the
    /// digest (securesystemslib's `rsassa-pss-sha256`, in-toto's default RSA scheme).
    RsaPss(Vec<u8>),
    /// RSA (PKCS#1 RSAPublicKey DER), PKCS#1 v1.5 with SHA-256 (`rsa-pkcs1v15-sha256`).
    RsaPkcs1(Vec<u8>),
}

impl PubKey {
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1, ED25519, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
            UnparsedPublicKey,
        };
        match self {
            PubKey::Ed25519(k) => UnparsedPublicKey::new(&ED25519, k).verify(msg, sig).is_ok(),
            PubKey::P256(k) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, k)
                .verify(msg, sig)
                .is_ok(),
            PubKey::RsaPss(k) => UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, k)
                .verify(msg, sig)
                .is_ok(),
            PubKey::RsaPkcs1(k) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// The PKCS#1 RSAPublicKey inside an RSA SubjectPublicKeyInfo (DER), if it is one.
fn rsa_spki(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer as _;
    let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).ok()?;
    (rest.is_empty()
        && spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION)
        .then(|| spki.subject_public_key.data.to_vec())
}

/// DER prefixes of the two SubjectPublicKeyInfo shapes accepted (RFC 8410, RFC 5480).
const ED25519_SPKI: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn key_from_pem(pem: &str) -> Result<PubKey, Refused> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|s| s.strip_suffix("-----END PUBLIC KEY-----"));
    let Some(body) = body else {
        return refused("not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    };
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Refused(format!("PEM public key: {e}")))?;
    spki_key(&der)
}

/// An ed25519 or ECDSA P-256 SubjectPublicKeyInfo (DER).
fn spki_key(der: &[u8]) -> Result<PubKey, Refused> {
    if der.len() == ED25519_SPKI.len() + 32 && der.starts_with(ED25519_SPKI) {
        Ok(PubKey::Ed25519(der[ED25519_SPKI.len()..].to_vec()))
    } else if der.len() == P256_SPKI.len() + 65 && der.starts_with(P256_SPKI) {
        Ok(PubKey::P256(der[P256_SPKI.len()..].to_vec()))
    } else if let Some(k) = rsa_spki(der) {
        // in-toto-verify reads an RSA --verification-keys file as rsassa-pss-sha256.
        Ok(PubKey::RsaPss(k))
    } else {
        refused("public key is neither ed25519, ECDSA P-256 nor RSA")
    }
}

/// A key of the layout's `keys` (securesystemslib's key dictionary).
fn key_from_layout(keyid: &str, v: &Value) -> Result<PubKey, Refused> {
    let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("");
    let public = v
        .get("keyval")
        .and_then(|k| k.get("public"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match (s("keytype"), s("scheme")) {
        ("ed25519", "ed25519") => match hex::decode(public) {
            Ok(k) if k.len() == 32 => Ok(PubKey::Ed25519(k)),
            _ => refused(format!(
                "layout key {keyid}: ed25519 public key is not 32 hex bytes"
            )),
        },
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => match key_from_pem(public)? {
            k @ PubKey::P256(_) => Ok(k),
            _ => refused(format!("layout key {keyid}: not a P-256 key")),
        },
        ("rsa", sch @ ("rsassa-pss-sha256" | "rsa-pkcs1v15-sha256")) => {
            match key_from_pem(public)? {
                PubKey::RsaPss(k) if sch == "rsassa-pss-sha256" => Ok(PubKey::RsaPss(k)),
                PubKey::RsaPss(k) => Ok(PubKey::RsaPkcs1(k)),
                _ => refused(format!("layout key {keyid}: not an RSA key")),
            }
        }
        (t, sch) => refused(format!(
            "layout key {keyid}: key type {t:?} scheme {sch:?} not implemented (ed25519, ecdsa-sha2-nistp256, rsa with rsassa-pss-sha256 or rsa-pkcs1v15-sha256)"
        )),
    }
}

// ---- metablocks ----

impl Metablock {
    /// Whether a signature by `keyid` verifies with `key`.
    fn signed_by(&self, keyid: &str, key: &PubKey) -> bool {
        self.signatures
            .iter()
            .any(|s| s.keyid == keyid && key.verify(&self.canonical, &s.sig))
    }
    /// Whether any signature verifies with `key`.
    fn signed_with(&self, key: &PubKey) -> bool {
        self.signatures
            .iter()
            .any(|s| key.verify(&self.canonical, &s.sig))
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Refused> {
    let f = std::fs::File::open(path).map_err(|e| Refused(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Refused(format!("{}: {e}", path.display())))?;
    if buf.len() as u64 > max {
        return refused(format!("{}: larger than {max} bytes", path.display()));
    }
    Ok(buf)
}

// ---- layout and links ----

struct Step {
    name: String,
    /// The command the layout expects the functionary to run (`expected_command`).
    expected_command: Vec<String>,
    threshold: usize,
    pubkeys: Vec<String>,
    /// SPIFFE IDs whose X.509-SVIDs are this step's functionaries (`cert_constraints`).
    spiffe_ids: Vec<String>,
    materials: Vec<Rule>,
    products: Vec<Rule>,
}

fn layout_steps(
    signed: &Map<String, Value>,
) -> Result<(BTreeMap<String, PubKey>, Vec<Step>), Refused> {
    let mut keys = BTreeMap::new();
    for f in ["rootcas", "intermediatecas"] {
        if signed
            .get(f)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            return refused(format!(
                "layout: {f} is not implemented (the trust domain's CA is given with --trust-bundle)"
            ));
        }
    }
    let Some(km) = signed.get("keys").and_then(Value::as_object) else {
        return refused("layout: no \"keys\" object");
    };
    for (id, k) in km {
        keys.insert(id.clone(), key_from_layout(id, k)?);
    }
    let Some(sv) = signed.get("steps").and_then(Value::as_array) else {
        return refused("layout: no \"steps\" list");
    };
    if sv.len() > MAX_STEPS {
        return refused(format!("layout: more than {MAX_STEPS} steps"));
    }
    let mut steps = Vec::new();
    let mut names = BTreeSet::new();
    for s in sv {
        let Some(name) = s.get("name").and_then(Value::as_str) else {
            return refused("layout: a step without a name");
        };
        if name.is_empty() || name.contains('/') || !names.insert(name.to_owned()) {
            return refused(format!(
                "layout: step name {name:?} empty, with '/', or repeated"
            ));
        }
        let threshold = s.get("threshold").and_then(Value::as_u64).unwrap_or(1);
        let spiffe_ids = cert_constraints(name, s.get("cert_constraints"))?;
        let Some(pk) = s.get("pubkeys").and_then(Value::as_array) else {
            return refused(format!("step {name}: no pubkeys list"));
        };
        let pubkeys: Vec<String> = pk
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if pubkeys.len() != pk.len() || pubkeys.iter().any(|k| !keys.contains_key(k) || k.len() < 8)
        {
            return refused(format!(
                "step {name}: a pubkey that is not a key of the layout"
            ));
        }
        if !spiffe_ids.is_empty() && !pubkeys.is_empty() {
            return refused(format!(
                "step {name}: both pubkeys and cert_constraints (a step's functionaries are keys or SPIFFE IDs, not both)"
            ));
        }
        let functionaries = pubkeys.len() + spiffe_ids.len();
        if threshold == 0 || threshold as usize > functionaries {
            return refused(format!(
                "step {name}: threshold {threshold} with {functionaries} functionaries"
            ));
        }
        let expected_command = match s.get("expected_command") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => string_list(v).ok_or_else(|| {
                Refused(format!(
                    "step {name}: expected_command is not a list of strings"
                ))
            })?,
        };
        steps.push(Step {
            expected_command,
            name: name.to_owned(),
            threshold: threshold as usize,
            pubkeys,
            spiffe_ids,
            materials: parse_rules(name, "expected_materials", s.get("expected_materials"))?,
            products: parse_rules(name, "expected_products", s.get("expected_products"))?,
        });
    }
    Ok((keys, steps))
}

/// A step's `cert_constraints` (in-toto-golang's field, in-toto ITE-7) as the SPIFFE IDs
/// they name. Vouch matches an X.509-SVID by its SPIFFE ID alone: each constraint names
/// exactly one `spiffe://` URI, and may carry `common_name`, `dns_names`, `emails`,
/// `organizations`, `roots` only as the wildcard (`"*"`, `["*"]`) or absent; anything else
/// is refused as not implemented rather than ignored.
fn cert_constraints(step: &str, v: Option<&Value>) -> Result<Vec<String>, Refused> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Some(a) = v.as_array() else {
        return refused(format!("step {step}: cert_constraints is not a list"));
    };
    if a.len() > MAX_SIGNATURES {
        return refused(format!(
            "step {step}: more than {MAX_SIGNATURES} cert_constraints"
        ));
    }
    let mut ids = Vec::new();
    for c in a {
        let Some(c) = c.as_object() else {
            return refused(format!("step {step}: a cert constraint is not an object"));
        };
        for (k, f) in c {
            let wildcard = f.as_str() == Some("*")
                || f.as_array()
                    .is_some_and(|l| l.len() == 1 && l[0].as_str() == Some("*"));
            match k.as_str() {
                "uris" => {}
                "common_name" | "dns_names" | "emails" | "organizations" | "roots" if wildcard => {}
                _ => {
                    return refused(format!(
                        "step {step}: cert constraint {k:?} = {f} not implemented (Vouch matches SVIDs by SPIFFE ID: give uris and leave the rest \"*\")"
                    ));
                }
            }
        }
        let uris: Vec<&str> = c
            .get("uris")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let [uri] = uris.as_slice() else {
            return refused(format!(
                "step {step}: a cert constraint must name exactly one SPIFFE ID in uris"
            ));
        };
        let id = vouch_rp::SpiffeId::parse(uri)
            .map_err(|e| Refused(format!("step {step}: cert constraint uri {uri:?}: {e}")))?;
        let id = id.to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The `environment` entry of an SVID-signed link holding its signing time.
const SIGNED_AT: &str = "vouch_signed_at";
/// Most certificates read from a signature's `cert`.
const MAX_CHAIN: usize = 4;

/// A PEM chain's certificates, DER, in order.
fn pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut chain = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let p = p.map_err(|e| format!("cert is not PEM: {e}"))?;
        if p.label != "CERTIFICATE" {
            return Err(format!("cert holds a {:?}, not a CERTIFICATE", p.label));
        }
        chain.push(p.contents);
        if chain.len() > MAX_CHAIN {
            return Err(format!("cert holds more than {MAX_CHAIN} certificates"));
        }
    }
    if chain.is_empty() {
        return Err("cert holds no certificate".into());
    }
    Ok(chain)
}

/// The public key of a DER certificate (ed25519 or ECDSA P-256).
fn cert_key(der: &[u8]) -> Result<PubKey, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    let spki = cert.public_key().raw;
    spki_key(spki).map_err(|e| e.0)
}

/// An SVID-signed link's signature as the envelope-shaped value `timestamp::check` and
/// `timestamp::countersign` read: `{"signatures": [{"sig": base64, "timestamp": …}]}`.
fn stamp_view(sig: &[u8], timestamp: Option<&Value>) -> Value {
    let mut s = Map::new();
    s.insert(
        "sig".into(),
        base64::engine::general_purpose::STANDARD.encode(sig).into(),
    );
    if let Some(t) = timestamp {
        s.insert(super::timestamp::FIELD.into(), t.clone());
    }
    json!({ "signatures": [Value::Object(s)] })
}

/// Check an SVID-signed link for `step`: returns the signer's SPIFFE ID, or why it does not
/// count. With a JWKS, the signature's verifier `timestamp` must verify and the chain is
/// checked as of that time (the link's `environment.vouch_signed_at`, covered by the
/// signature, may not be later); with `--allow-signer-time` and no timestamp, as of
/// `vouch_signed_at`, which may not be in the future. The signer must be one of the step's
/// SPIFFE IDs, and neither its SVID nor (named by the timestamp) its workload or node revoked.
fn svid_link(mb: &Metablock, step: &Step, ctx: &SvidCtx, now: i64) -> Result<String, String> {
    let at = mb
        .signed
        .get("environment")
        .and_then(|e| e.get(SIGNED_AT))
        .and_then(Value::as_str)
        .and_then(super::rfc3339::parse_rfc3339)
        .ok_or(format!(
            "no environment.{SIGNED_AT} (YYYY-MM-DDTHH:MM:SSZ): not signed by `vouch custody sign`"
        ));
    let now = u64::try_from(now).unwrap_or(0);
    let mut why = Vec::new();
    for s in &mb.signatures {
        let Some(pem) = &s.cert else {
            why.push(format!(
                "signature {} is by a plain key, not an X.509-SVID (does not count for a step whose functionaries are SPIFFE IDs)",
                s.keyid
            ));
            continue;
        };
        let checked = (|| {
            let signer_at = at.clone()?;
            let skew = super::timestamp::SKEW;
            let chain = pem_chain(pem)?;
            let leaf = chain
                .first()
                .ok_or("the signature's cert holds no certificate")?;
            let stamp = match &ctx.jwks {
                Some(j) if s.timestamp.is_some() || !ctx.allow_signer_time => Some(
                    super::timestamp::check(
                        &stamp_view(&s.sig, s.timestamp.as_ref()),
                        j,
                        now,
                        leaf,
                    )
                    .map_err(|e| format!("timestamp: {e}"))?,
                ),
                _ => None,
            };
            let at = match &stamp {
                Some(t) => {
                    if signer_at > t.time + skew {
                        return Err(format!(
                            "{SIGNED_AT} is {} s after the verifier's timestamp",
                            signer_at - t.time
                        ));
                    }
                    t.time
                }
                None => signer_at,
            };
            if at > now + skew {
                return Err(format!("signed {} s in the future", at - now));
            }
            let id = ctx
                .verifier
                .verify_chain(&chain, at)
                .map_err(|e| format!("SVID at signing time: {e}"))?;
            let id = id.to_string();
            if !step.spiffe_ids.contains(&id) {
                return Err(format!(
                    "signed by {id}, not a functionary of the step ({})",
                    step.spiffe_ids.join(", ")
                ));
            }
            let key = cert_key(&chain[0])?;
            if !key.verify(&mb.canonical, &s.sig) {
                return Err(format!("the signature by {id}'s SVID does not verify"));
            }
            if let Some(r) = &ctx.revocations {
                r.check(&chain[0], stamp.as_ref(), now)
                    .map_err(|e| format!("{id}: {e}"))?;
            }
            Ok(id)
        })();
        match checked {
            Ok(id) => return Ok(id),
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        why.push("no signature".into());
    }
    Err(why.join("; "))
}

/// Most link files considered for a step whose functionaries are SPIFFE IDs.
const MAX_SVID_LINKS: usize = 64;

/// The links of an SVID step: `<step>.<id>.link` in `dir` (any id without a dot), sorted.
fn svid_link_files(dir: &Path, step: &str) -> Result<Vec<String>, Refused> {
    let rd = std::fs::read_dir(dir).map_err(|e| Refused(format!("{}: {e}", dir.display())))?;
    let prefix = format!("{step}.");
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let mid = n
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".link"));
        if mid.is_some_and(|m| !m.is_empty() && !m.contains('.')) {
            out.push(n);
            if out.len() > MAX_SVID_LINKS {
                return refused(format!(
                    "step {step}: more than {MAX_SVID_LINKS} link files"
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl SvidCtx {
    fn new(o: &SvidOptions, steps: &[Step], now: i64) -> Result<Self, Refused> {
        let td = match (
            &o.trust_domain,
            steps.iter().find_map(|s| s.spiffe_ids.first()),
        ) {
            (Some(t), _) => vouch_rp::TrustDomain::parse(t)
                .map_err(|e| Refused(format!("--trust-domain {t:?}: {e}")))?,
            (None, Some(id)) => vouch_rp::SpiffeId::parse(id)
                .map_err(|e| Refused(e.to_string()))?
                .trust_domain()
                .clone(),
            (None, None) => {
                return refused(
                    "--trust-bundle given, but no step names a SPIFFE ID and no --trust-domain",
                );
            }
        };
        let auth = super::ci::bundle_authorities(&o.bundle, &td)
            .map_err(|e| Refused(format!("trust bundle: {e}")))?;
        let verifier =
            vouch_rp::SpiffeVerifier::new(&td, &auth, vouch_rp::AllowedIds::AnyInTrustDomain)
                .map_err(|e| Refused(format!("trust bundle: {e}")))?;
        let revocations = match &o.revocations {
            Some((feed, max_age)) => Some(
                super::timestamp::Revocations::load(
                    feed,
                    &auth,
                    &td,
                    *max_age,
                    u64::try_from(now).unwrap_or(0),
                )
                .map_err(|e| Refused(format!("revocations: {e:#}")))?,
            ),
            None => None,
        };
        Ok(Self {
            verifier,
            jwks: o.jwks.clone(),
            allow_signer_time: o.allow_signer_time,
            revocations,
        })
    }
}

/// An inspection of the layout: a command run at verification time.
struct Inspection {
    name: String,
    run: Vec<String>,
    materials: Vec<Rule>,
    products: Vec<Rule>,
}

/// Most inspections a layout may hold.
const MAX_INSPECTIONS: usize = 64;

fn layout_inspections(
    signed: &Map<String, Value>,
    steps: &[Step],
) -> Result<Vec<Inspection>, Refused> {
    let Some(v) = signed.get("inspect") else {
        return Ok(Vec::new());
    };
    let Some(a) = v.as_array() else {
        return refused("layout: inspect is not a list");
    };
    if a.len() > MAX_INSPECTIONS {
        return refused(format!("layout: more than {MAX_INSPECTIONS} inspections"));
    }
    let mut names: BTreeSet<String> = steps.iter().map(|s| s.name.clone()).collect();
    let mut out = Vec::new();
    for i in a {
        let Some(name) = i.get("name").and_then(Value::as_str) else {
            return refused("layout: an inspection without a name");
        };
        if name.is_empty() || name.contains('/') || !names.insert(name.to_owned()) {
            return refused(format!(
                "layout: inspection name {name:?} empty, with '/', or also a step's or another inspection's"
            ));
        }
        let run = i
            .get("run")
            .and_then(string_list)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Refused(format!(
                    "inspection {name}: run is not a non-empty list of strings"
                ))
            })?;
        out.push(Inspection {
            name: name.to_owned(),
            run,
            materials: parse_rules(name, "expected_materials", i.get("expected_materials"))?,
            products: parse_rules(name, "expected_products", i.get("expected_products"))?,
        });
    }
    Ok(out)
}

/// in-toto's default `ARTIFACT_EXCLUDE_PATTERNS`: paths with a component matching one are
/// not recorded.
const EXCLUDE: [&str; 4] = ["*.link*", ".git", "*.pyc", "*~"];
/// Deepest directory recorded.
const MAX_DEPTH: usize = 64;

/// The files under `dir` (symlinks to files followed, symlinked directories not, as in-toto's
/// `record_artifacts_as_dict`), by path relative to `dir`, each with its SHA-256.
fn record(dir: &Path) -> Result<Artifacts, Refused> {
    use sha2::Digest as _;
    fn walk(root: &Path, rel: &str, depth: usize, out: &mut Artifacts) -> Result<(), Refused> {
        if depth > MAX_DEPTH {
            return refused(format!("inspection directory deeper than {MAX_DEPTH}"));
        }
        let here = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let rd =
            std::fs::read_dir(&here).map_err(|e| Refused(format!("{}: {e}", here.display())))?;
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if EXCLUDE.iter().any(|p| fnmatch(&name, p)) {
                continue;
            }
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(lmeta) = e.path().symlink_metadata() else {
                continue;
            };
            if lmeta.is_dir() {
                walk(root, &path, depth + 1, out)?;
                continue;
            }
            // A symlink is followed when it names a file; a broken one is skipped.
            let Ok(meta) = std::fs::metadata(e.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let mut f =
                std::fs::File::open(e.path()).map_err(|err| Refused(format!("{path}: {err}")))?;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(|err| Refused(format!("{path}: {err}")))?;
            out.insert(path, json!({"sha256": hex::encode(h.finalize())}));
            if out.len() > MAX_ARTIFACTS {
                return refused(format!(
                    "inspection directory holds more than {MAX_ARTIFACTS} files"
                ));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", 0, &mut out)?;
    Ok(out)
}

/// Run inspection `i` in `dir` as in-toto does: the directory's files recorded as materials,
/// the command run (no shell, standard input closed, output discarded) for at most `timeout`,
/// which must exit 0, the files recorded again as products.
fn run_inspection(
    i: &Inspection,
    dir: &Path,
    timeout: std::time::Duration,
) -> Result<Link, Refused> {
    let materials = record(dir)?;
    let Some((prog, args)) = i.run.split_first() else {
        return refused(format!("inspection {}: empty command", i.name));
    };
    let mut child = std::process::Command::new(prog)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Refused(format!("inspection {}: cannot run {prog:?}: {e}", i.name)))?;
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return refused(format!(
                    "inspection {}: {:?} still running after {} s, killed",
                    i.name,
                    i.run,
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return refused(format!("inspection {}: {e}", i.name)),
        }
    };
    if !status.success() {
        return refused(format!(
            "inspection {}: {:?} exited with {status}",
            i.name, i.run
        ));
    }
    Ok(Link {
        materials,
        products: record(dir)?,
        command: i.run.clone(),
    })
}

/// Verify the chain; on success the step names in the layout's order.
fn verify(
    layout_path: &Path,
    layout_keys: &[PubKey],
    links_dir: &Path,
    now: i64,
    opts: &VerifyOpts<'_>,
) -> Result<Vec<String>, Refused> {
    let layout = parse_metablock("layout", &read_bounded(layout_path, MAX_LAYOUT)?)?;
    verify_layout(&layout, layout_keys, links_dir, now, opts, 0).map(|(names, _)| names)
}

/// Deepest nesting of sublayouts followed.
const MAX_SUBLAYOUT_DEPTH: usize = 4;

/// Verify `layout` (a parsed layout metablock) with its links in `links_dir`, `depth`
/// sublayouts down. On success the step names (a sublayout's as `step{a -> b}`) and the
/// chain's summary link, as in-toto's `get_summary_link` makes it: the first step's
/// materials, the last step's products and command.
fn verify_layout(
    layout: &Metablock,
    layout_keys: &[PubKey],
    links_dir: &Path,
    now: i64,
    opts: &VerifyOpts<'_>,
    depth: usize,
) -> Result<(Vec<String>, Link), Refused> {
    for (i, k) in layout_keys.iter().enumerate() {
        if !layout.signed_with(k) {
            return refused(format!(
                "layout: no signature by layout key {} verifies",
                i + 1
            ));
        }
    }
    let signed = &layout.signed;
    if signed.get("_type").and_then(Value::as_str) != Some("layout") {
        return refused("layout: _type is not \"layout\"");
    }
    let expires = signed.get("expires").and_then(Value::as_str).unwrap_or("");
    let Some(exp) = super::rfc3339::rfc3339_seconds(expires) else {
        return refused(format!(
            "layout: expires {expires:?} is not YYYY-MM-DDTHH:MM:SSZ"
        ));
    };
    if exp <= now {
        return refused(format!("layout expired at {expires}"));
    }
    let (keys, steps) = layout_steps(signed)?;
    let inspections = layout_inspections(signed, &steps)?;
    // Built only when a step names SPIFFE IDs (the trust domain comes from them).
    let svid_ctx = match opts.svid {
        Some(o) if steps.iter().any(|s| !s.spiffe_ids.is_empty()) => {
            Some(SvidCtx::new(o, &steps, now)?)
        }
        _ => None,
    };

    let mut links = BTreeMap::new();
    let mut sub_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for step in &steps {
        let mut good: Vec<(String, Link)> = Vec::new();
        let mut why = Vec::new();
        if !step.spiffe_ids.is_empty() {
            let Some(ctx) = &svid_ctx else {
                return refused(format!(
                    "step {}: its functionaries are SPIFFE IDs (cert_constraints): give --trust-bundle",
                    step.name
                ));
            };
            for file in svid_link_files(links_dir, &step.name)? {
                let mb = match read_bounded(&links_dir.join(&file), MAX_LINK)
                    .and_then(|b| parse_metablock(&file, &b))
                {
                    Ok(m) => m,
                    Err(Refused(e)) => {
                        why.push(e);
                        continue;
                    }
                };
                if mb.signed.get("_type").and_then(Value::as_str) != Some("link") {
                    why.push(format!("{file}: _type is not \"link\""));
                    continue;
                }
                if mb.signed.get("name").and_then(Value::as_str) != Some(step.name.as_str()) {
                    why.push(format!("{file}: the link is not for step {}", step.name));
                    continue;
                }
                let id = match svid_link(&mb, step, ctx, now) {
                    Ok(id) => id,
                    Err(e) => {
                        why.push(format!("{file}: {e}"));
                        continue;
                    }
                };
                let link = Link {
                    materials: artifacts(&file, "materials", mb.signed.get("materials"))?,
                    products: artifacts(&file, "products", mb.signed.get("products"))?,
                    command: link_command(mb.signed.get("command")),
                };
                if !good.iter().any(|(k, _)| *k == id) {
                    good.push((id, link));
                }
            }
        }
        for kid in &step.pubkeys {
            let file = format!("{}.{}.link", step.name, &kid[..8.min(kid.len())]);
            let path = links_dir.join(&file);
            if !path.exists() {
                continue;
            }
            let mb = match read_bounded(&path, MAX_LINK).and_then(|b| parse_metablock(&file, &b)) {
                Ok(m) => m,
                Err(Refused(e)) => {
                    why.push(e);
                    continue;
                }
            };
            let Some(key) = keys.get(kid) else { continue };
            if !mb.signed_by(kid, key) {
                why.push(format!(
                    "{file}: no signature by the step's key {kid} verifies"
                ));
                continue;
            }
            if mb.signed.get("_type").and_then(Value::as_str) == Some("layout") {
                // A sublayout (in-toto's step delegation): the functionary's signed layout,
                // verified with its key as the layout key and its links in
                // `<step>.<keyid[:8]>/`; its summary link stands for the step. A sublayout that
                // does not verify refuses the chain, as in in-toto.
                if depth >= MAX_SUBLAYOUT_DEPTH {
                    return refused(format!(
                        "step {}: sublayouts nested deeper than {MAX_SUBLAYOUT_DEPTH}",
                        step.name
                    ));
                }
                let sub_dir = links_dir.join(format!("{}.{}", step.name, &kid[..8.min(kid.len())]));
                let (names, summary) = verify_layout(
                    &mb,
                    std::slice::from_ref(key),
                    &sub_dir,
                    now,
                    opts,
                    depth + 1,
                )
                .map_err(|Refused(e)| {
                    Refused(format!("step {} (sublayout {file}): {e}", step.name))
                })?;
                sub_names.insert(step.name.clone(), names);
                if !good.iter().any(|(k, _)| k == kid) {
                    good.push((kid.clone(), summary));
                }
                continue;
            }
            if mb.signed.get("_type").and_then(Value::as_str) != Some("link") {
                why.push(format!("{file}: _type is not \"link\""));
                continue;
            }
            if mb.signed.get("name").and_then(Value::as_str) != Some(step.name.as_str()) {
                why.push(format!("{file}: the link is not for step {}", step.name));
                continue;
            }
            let link = Link {
                materials: artifacts(&file, "materials", mb.signed.get("materials"))?,
                products: artifacts(&file, "products", mb.signed.get("products"))?,
                command: link_command(mb.signed.get("command")),
            };
            if good.iter().any(|(k, _)| k == kid) {
                continue;
            }
            good.push((kid.clone(), link));
        }
        if good.len() < step.threshold {
            return refused(format!(
                "step {}: {} valid link(s), threshold {}{}",
                step.name,
                good.len(),
                step.threshold,
                if why.is_empty() {
                    " (no link found)".to_owned()
                } else {
                    format!(" ({})", why.join("; "))
                }
            ));
        }
        let first = &good[0].1;
        if good
            .iter()
            .any(|(_, l)| l.materials != first.materials || l.products != first.products)
        {
            return refused(format!(
                "step {}: its functionaries' links disagree on materials or products",
                step.name
            ));
        }
        if let Some((_, l)) = good.into_iter().next() {
            links.insert(step.name.clone(), l);
        }
    }
    for step in &steps {
        let Some(link) = links.get(&step.name) else {
            return refused(format!("step {}: no link", step.name));
        };
        if !step.expected_command.is_empty() && link.command != step.expected_command {
            let what = format!(
                "step {}: the link's command {:?} is not the expected command {:?}",
                step.name, link.command, step.expected_command
            );
            if opts.require_expected_command {
                return refused(what);
            }
            // in-toto's verification warns only (the specification's "soft" check).
            eprintln!("warning: {what}");
        }
    }
    for step in &steps {
        let Some(link) = links.get(&step.name) else {
            return refused(format!("step {}: no link", step.name));
        };
        verify_rules(&step.name, "materials", &step.materials, link, &links)?;
        verify_rules(&step.name, "products", &step.products, link, &links)?;
    }
    let summary = match (steps.first(), steps.last()) {
        (Some(f), Some(l)) => match (links.get(&f.name), links.get(&l.name)) {
            (Some(fl), Some(ll)) => Link {
                materials: fl.materials.clone(),
                products: ll.products.clone(),
                command: ll.command.clone(),
            },
            _ => return refused("layout: a step without a link"),
        },
        _ => Link {
            materials: Artifacts::new(),
            products: Artifacts::new(),
            command: Vec::new(),
        },
    };
    let mut names: Vec<String> = steps
        .into_iter()
        .map(|s| match sub_names.get(&s.name) {
            Some(sub) => format!("{}{{{}}}", s.name, sub.join(" -> ")),
            None => s.name,
        })
        .collect();
    if !inspections.is_empty() {
        let Some((dir, timeout)) = &opts.inspections else {
            return refused(
                "layout: it has inspections, which run commands; give --run-inspections DIR to run them",
            );
        };
        for i in &inspections {
            let link = run_inspection(i, dir, *timeout)?;
            links.insert(i.name.clone(), link);
        }
        for i in &inspections {
            let Some(link) = links.get(&i.name) else {
                return refused(format!("inspection {}: no link", i.name));
            };
            verify_rules(&i.name, "materials", &i.materials, link, &links)?;
            verify_rules(&i.name, "products", &i.products, link, &links)?;
            names.push(format!("inspect:{}", i.name));
        }
    }
    Ok((names, summary))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_json_matches_securesystemslib() {
        // securesystemslib.formats.encode_canonical of the same object gives these bytes.
        let v = json!({"b": [1, -2, true, null], "a": "q\"\\\u{e9}\n", "A": {}});
        let mut out = Vec::new();
        canonical(&v, &mut out).unwrap();
        assert_eq!(
            out,
            "{\"A\":{},\"a\":\"q\\\"\\\\\u{e9}\n\",\"b\":[1,-2,true,null]}".as_bytes()
        );
        assert!(canonical(&json!({"f": 1.5}), &mut Vec::new()).is_err());
    }

    #[test]
    fn fnmatch_like_python() {
        assert!(fnmatch("dir/a.txt", "*"));
        assert!(fnmatch("dir/a.txt", "*.txt"));
        assert!(fnmatch("a.txt", "?.txt"));
        assert!(!fnmatch("ab.txt", "?.txt"));
        assert!(!fnmatch("a.tar", "*.txt"));
        assert!(fnmatch("", "*"));
    }

    /// cert_constraints: exactly one SPIFFE ID a constraint, the other attributes only as
    /// wildcards; anything else refused, not ignored.
    #[test]
    fn cert_constraints_name_spiffe_ids_only() {
        let id = "spiffe://example.org/ci/builder";
        let ok = json!([{"common_name": "*", "uris": [id], "roots": ["*"]}, {"uris": [id]}]);
        assert_eq!(
            cert_constraints("s", Some(&ok)).unwrap(),
            vec![id.to_string()]
        );
        assert!(cert_constraints("s", None).unwrap().is_empty());
        for bad in [
            json!([{"common_name": "builder", "uris": [id]}]),
            json!([{"dns_names": ["a.example"], "uris": [id]}]),
            json!([{"emails": [], "uris": [id]}]),
            json!([{"uris": [id, "spiffe://example.org/other"]}]),
            json!([{"uris": []}]),
            json!([{"uris": ["*"]}]),
            json!([{"uris": ["https://example.org/ci/builder"]}]),
            json!([{"uris": [id], "frobnicate": "*"}]),
            json!({"uris": [id]}),
        ] {
            assert!(cert_constraints("s", Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pem_chain_is_bounded_and_certificates_only() {
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_chain(cert).unwrap().len(), 1);
        assert!(pem_chain(&cert.repeat(MAX_CHAIN)).is_ok());
        assert!(pem_chain(&cert.repeat(MAX_CHAIN + 1)).is_err());
        assert!(pem_chain("").is_err());
        assert!(
            pem_chain("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n").is_err()
        );
        // Not a certificate inside: refused when its key is read.
        assert!(cert_key(&pem_chain(cert).unwrap()[0]).is_err());
    }

    #[test]
    fn timestamp_field_is_the_one_timestamp_reads() {
        assert_eq!(TIMESTAMP_FIELD, crate::commands::timestamp::FIELD);
    }

    #[test]
    fn expires_parses() {
        use crate::commands::rfc3339::rfc3339_seconds as parse;
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(parse("2000-13-01T00:00:01Z"), None);
        assert_eq!(parse("2000-03-01 00:00:01"), None);
    }

    fn arts(v: &[(&str, &str)]) -> Artifacts {
        v.iter()
            .map(|(p, h)| (p.to_string(), json!({"sha256": h})))
            .collect()
    }

    fn rules(v: Value) -> Vec<Rule> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| parse_rule(r).unwrap())
            .collect()
    }

    /// The rule semantics of in-toto's verify_item_rules: each rule consumes from the queue,
    /// DISALLOW refuses what is left, REQUIRE looks in the queue. The same seven cases given to
    /// in-toto 3.0.0's `verifylib.verify_item_rules` had the same outcomes.
    #[test]
    fn artifact_rules_consume_like_in_toto() {
        let mut links = BTreeMap::new();
        links.insert(
            "src".to_string(),
            Link {
                materials: Artifacts::new(),
                products: arts(&[("a/x", "1"), ("a/y", "2")]),
                command: Vec::new(),
            },
        );
        // MATCH with prefixes: b/x here is a/x there.
        let step = Link {
            materials: arts(&[("b/x", "1"), ("b/y", "9"), ("keep", "5"), ("gone", "6")]),
            products: arts(&[("keep", "5"), ("new", "7"), ("b/x", "8")]),
            command: Vec::new(),
        };
        let m = rules(json!([
            [
                "MATCH", "*", "IN", "b", "WITH", "PRODUCTS", "IN", "a/", "FROM", "src"
            ],
            ["DELETE", "gone"],
            ["ALLOW", "keep"],
            ["DISALLOW", "*"]
        ]));
        // b/y's hash differs from a/y's: not consumed by MATCH, refused by DISALLOW.
        let e = verify_rules("s", "materials", &m, &step, &links).unwrap_err();
        assert!(e.0.contains("\"b/y\""), "{}", e.0);
        let mut ok = step.materials.clone();
        ok.insert("b/y".into(), json!({"sha256": "2"}));
        let step2 = Link {
            materials: ok,
            products: step.products.clone(),
            command: Vec::new(),
        };
        verify_rules("s", "materials", &m, &step2, &links).unwrap();
        // DELETE only consumes what is not a product.
        let d = rules(json!([["DELETE", "keep"], ["DISALLOW", "keep"]]));
        assert!(verify_rules("s", "materials", &d, &step, &links).is_err());
        // CREATE only what was not a material, MODIFY only what changed.
        let p = rules(json!([
            ["CREATE", "*"],
            ["MODIFY", "b/*"],
            ["ALLOW", "keep"],
            ["REQUIRE", "new"],
            ["DISALLOW", "*"]
        ]));
        // CREATE consumed `new`, so REQUIRE (which looks in the queue) refuses.
        assert!(
            verify_rules("s", "products", &p, &step, &links)
                .unwrap_err()
                .0
                .contains("REQUIRE new")
        );
        let p = rules(json!([
            ["REQUIRE", "new"],
            ["CREATE", "*"],
            ["MODIFY", "b/*"],
            ["ALLOW", "keep"],
            ["DISALLOW", "*"]
        ]));
        verify_rules("s", "products", &p, &step, &links).unwrap();
        let p = rules(json!([["CREATE", "*"], ["DISALLOW", "*"]]));
        assert!(
            verify_rules("s", "products", &p, &step, &links).is_err(),
            "keep and b/x are not created"
        );
        // MATCH against a step with no link consumes nothing.
        let m = rules(json!([
            ["MATCH", "*", "WITH", "PRODUCTS", "FROM", "nope"],
            ["DISALLOW", "*"]
        ]));
        assert!(verify_rules("s", "materials", &m, &step, &links).is_err());
    }

    #[test]
    fn unknown_rule_is_refused_not_skipped() {
        assert!(parse_rule(&json!(["FROBNICATE", "*"])).is_err());
        assert!(parse_rule(&json!(["ALLOW", "[ab]"])).is_ok());
        assert!(parse_rule(&json!(["MATCH", "*", "WITH", "PRODUCTS", "FROM", "build"])).is_ok());
        assert!(parse_rule(&json!(["MATCH", "*", "WITH", "PRODUCTS"])).is_err());
    }
}
