//! `vouch audit`: download the verifier's audit log as JSON lines (for a SIEM, and for checking)
//! and check a downloaded log, or one entry, offline (issue 16 item 3).
//!
//! `export` asks the verifier (read token) for its signed head, then the entries up to it, and
//! writes each entry as one line, exactly the bytes the verifier hashed, and the head's JWS
//! next to it. `verify` recomputes the RFC 9162 tree of the lines, checks every line's position,
//! the head's signature against the trust bundle and that its root is the lines' root, and with
//! `--earlier-head` that the log still begins with the tree an earlier head signed (nothing was
//! rewritten since); with `--proof` it checks one entry's inclusion proof instead.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use vouch_core::audit::{
    AuditEntry, AuditHead, EntryChecker, check_against_head, leaf_hash, parse_hash, root,
    verify_inclusion,
};
use vouch_server::unix_now;

/// Entries asked for per request (the verifier's page size).
const PAGE: u64 = 1000;
/// Logs at least this long get a progress bar (when stderr is a terminal).
const PROGRESS_FROM: u64 = 10_000;
/// Log files at least this large get a progress bar while they are checked.
const PROGRESS_FROM_BYTES: u64 = 4 << 20;
/// Longest line read as one entry (an entry is at most 64 KiB).
const MAX_LINE: u64 = vouch_core::audit::MAX_ENTRY_BYTES as u64 + 2;

/// `vouch audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Download the audit log as JSON lines (one entry a line, the bytes that are hashed) and its
    /// signed tree head.
    Export(ExportArgs),
    /// Check a downloaded log (or one entry's inclusion proof) offline against a signed head.
    Verify(VerifyArgs),
}

/// Where the verifier is and how to read from it.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The verifier's URL.
    #[arg(long)]
    pub server: String,
    /// CA certificate (PEM) to trust for the verifier's TLS.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// File holding the read (or admin) token.
    #[arg(long, env = "VOUCH_READ_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Write the entries here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the signed tree head (compact JWS) here.
    #[arg(long)]
    pub head_out: Option<PathBuf>,
}

/// What to check and against what.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log: JSON lines from `vouch audit export`.
    #[arg(long, required_unless_present_any = ["proof", "server"])]
    pub log: Option<PathBuf>,
    /// One entry's inclusion proof (the JSON of GET /v1/audit/proof/inclusion) instead of a log.
    #[arg(long, conflicts_with = "log")]
    pub proof: Option<PathBuf>,
    /// The signed tree head (compact JWS) the log must match; with --proof, the proof's own.
    #[arg(long, required_unless_present_any = ["proof", "server"])]
    pub head: Option<PathBuf>,
    /// Fetch the log and its signed head from this verifier instead (as `vouch audit export`
    /// does), then check them like files: the head's signature against --trust-bundle.
    #[arg(long, conflicts_with_all = ["log", "head", "proof"], requires = "token_file")]
    pub server: Option<String>,
    /// With --server: CA certificate (PEM) to trust for the verifier's TLS.
    #[arg(long, requires = "server")]
    pub ca_cert: Option<PathBuf>,
    /// With --server: file holding the read (or admin) token.
    #[arg(long, requires = "server")]
    pub token_file: Option<PathBuf>,
    /// An earlier signed head: the log must still begin with the tree it signed.
    #[arg(long)]
    pub earlier_head: Option<PathBuf>,
    /// The trust domain's CA certificates (PEM), e.g. the verifier's spiffe/ca.crt.
    #[arg(long)]
    pub trust_bundle: PathBuf,
    /// The trust domain of --trust-bundle.
    #[arg(long, default_value = "vouch.local")]
    pub trust_domain: String,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `vouch audit …`.
pub(crate) async fn run(cmd: AuditCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Export(a) => export(a).await,
        AuditCmd::Verify(a) => match a.server.clone() {
            Some(server) => verify_from_server(a, server, json).await,
            None => verify(a, json),
        },
    }
}

/// `verify --server`: export into a private temporary directory, check, remove it.
async fn verify_from_server(mut a: VerifyArgs, server: String, json: bool) -> Result<ExitCode> {
    let dir =
        std::env::temp_dir().join(format!("vouch-audit-{}-{}", std::process::id(), unix_now()));
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let (log, head) = (dir.join("audit.jsonl"), dir.join("head.jws"));
    let exported = export(ExportArgs {
        server,
        ca_cert: a.ca_cert.clone(),
        token_file: a
            .token_file
            .clone()
            .context("--server needs --token-file")?,
        out: Some(log.clone()),
        head_out: Some(head.clone()),
    })
    .await;
    let r = exported.and_then(|_| {
        a.log = Some(log);
        a.head = Some(head);
        verify(a, json)
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

async fn export(a: ExportArgs) -> Result<ExitCode> {
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading {}", a.token_file.display()))?;
    let token = token.trim();
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &a.ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        client = client.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
    }
    let client = client.build()?;
    let base = a.server.trim_end_matches('/');
    let get = |path: String| {
        let req = client.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let r = req.send().await.with_context(|| format!("GET {path}"))?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.with_context(|| format!("GET {path}"))?;
            if !status.is_success() {
                bail!("GET {path}: {status}: {}", body["error"]["message"]);
            }
            Ok::<_, anyhow::Error>(body)
        }
    };
    let head = get("/v1/audit/head".into()).await?;
    let size = head["size"].as_u64().context("head without size")?;
    let jws = head["head"].as_str().context("head without a signature")?;
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress(size, size < PROGRESS_FROM, "exporting");
    let mut next = 0;
    while next < size {
        let end = size.min(next + PAGE);
        let page = get(format!("/v1/audit/entries?start={next}&end={end}")).await?;
        let entries = page["entries"].as_array().context("no entries")?;
        if entries.is_empty() {
            bail!("the verifier returned no entries at {next} of {size}");
        }
        for e in entries {
            let e = e.as_str().context("an entry that is not a string")?;
            out.write_all(e.as_bytes())?;
            out.write_all(b"\n")?;
            next += 1;
            bar.inc(1);
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    if let Some(p) = &a.head_out {
        std::fs::write(p, format!("{jws}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!(
        "exported {size} audit entries (root {})",
        head["root"].as_str().unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, hidden: bool, msg: &'static str) -> indicatif::ProgressBar {
    let target = if hidden || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressDrawTarget::hidden()
    } else {
        indicatif::ProgressDrawTarget::stderr()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// Trust-domain CA certificates from a PEM file, as a SPIFFE verifier.
fn load_trust_bundle(path: &Path, td: &str) -> Result<Arc<vouch_rp::SpiffeVerifier>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut certs = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let p = p.with_context(|| format!("{} is not PEM", path.display()))?;
        if p.label == "CERTIFICATE" {
            certs.push(p.contents);
        }
    }
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    let td = vouch_identity::TrustDomain::parse(td)?;
    vouch_rp::SpiffeVerifier::new(&td, &certs, vouch_rp::AllowedIds::AnyInTrustDomain)
        .map_err(|e| anyhow::anyhow!("trust bundle {}: {e}", path.display()))
}

fn signed_head(jws: &str, bundle: &vouch_rp::SpiffeVerifier, what: &str) -> Result<AuditHead> {
    vouch_rp::audit::verify_audit_head(jws, bundle, unix_now())
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn read_head(path: &Path, bundle: &vouch_rp::SpiffeVerifier) -> Result<AuditHead> {
    let jws =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signed_head(
        jws.trim(),
        bundle,
        &format!("the head in {}", path.display()),
    )
}

fn verify(a: VerifyArgs, json: bool) -> Result<ExitCode> {
    let bundle = load_trust_bundle(&a.trust_bundle, &a.trust_domain)?;
    if let Some(p) = &a.proof {
        return verify_proof(p, &bundle, json);
    }
    let (Some(log), Some(head)) = (&a.log, &a.head) else {
        bail!("--log and --head are needed (or --proof)");
    };
    let head = read_head(head, &bundle)?;
    let earlier = a
        .earlier_head
        .as_deref()
        .map(|p| read_head(p, &bundle))
        .transpose()?;
    let f = std::fs::File::open(log).with_context(|| format!("reading {}", log.display()))?;
    // Streamed: only the leaf hashes are held (32 bytes an entry), not the entries.
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(total, a.quiet || total < PROGRESS_FROM_BYTES, "hashing");
    let mut checker = EntryChecker::default();
    let mut reader = std::io::BufReader::new(f);
    let mut line = Vec::new();
    let mut read = 0u64;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", log.display()))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        bar.set_position(read);
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if n as u64 == MAX_LINE {
            bar.finish_and_clear();
            let at = checker.len();
            return rejected(
                json,
                &format!("{}: entry {at} is over {MAX_LINE} bytes", log.display()),
            );
        }
        if line.is_empty() {
            bar.finish_and_clear();
            let at = checker.len() + 1;
            return rejected(json, &format!("{}: line {at} is empty", log.display()));
        }
        if let Err(e) = checker.push(&line) {
            bar.finish_and_clear();
            return rejected(json, &format!("{}: {e}", log.display()));
        }
    }
    bar.finish_and_clear();
    let leaves = checker.finish();
    if let Err(e) = check_against_head(&leaves, &head) {
        return rejected(
            json,
            &format!(
                "{}: does not match the signed head of {} entries: {e} (an entry was modified, \
                 removed, inserted or reordered)",
                log.display(),
                head.size
            ),
        );
    }
    if let Some(e) = &earlier {
        let size = usize::try_from(e.size).unwrap_or(usize::MAX);
        if size > leaves.len() || e.size > head.size {
            return rejected(
                json,
                &format!(
                    "the earlier head covers {} entries, more than the log's {}",
                    e.size, head.size
                ),
            );
        }
        let r = hex::encode(root(&leaves[..size]));
        if r != e.root {
            return rejected(
                json,
                &format!(
                    "the log's first {} entries hash to {r}, not to the earlier head's root {}: \
                     the log was rewritten since that head was signed",
                    e.size, e.root
                ),
            );
        }
    }
    let extra = leaves.len() as u64 - head.size;
    if json {
        crate::output::json(&serde_json::json!({
            "ok": true, "size": head.size, "root": head.root, "signed_by": head.iss,
            "signed_at": head.iat, "after_head": extra,
            "earlier_head": earlier.as_ref().map(|e| e.size),
        }))?;
    } else {
        println!(
            "ok: {} entries, root {}, signed by {} at {}",
            head.size, head.root, head.iss, head.iat
        );
        if let Some(e) = &earlier {
            println!("ok: extends the earlier head of {} entries", e.size);
        }
        if extra > 0 {
            println!("note: {extra} entries after the head are not covered by it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rejected(json: bool, why: &str) -> Result<ExitCode> {
    if json {
        crate::output::json(&serde_json::json!({ "ok": false, "error": why }))?;
    } else {
        eprintln!("rejected: {why}");
    }
    Ok(ExitCode::from(1))
}

/// Check one entry's inclusion proof (GET /v1/audit/proof/inclusion) and its head.
fn verify_proof(path: &Path, bundle: &vouch_rp::SpiffeVerifier, json: bool) -> Result<ExitCode> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(text.len() <= 1 << 20, "{} is over 1 MiB", path.display());
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let head = signed_head(
        v["head"].as_str().context("the proof has no head")?,
        bundle,
        "the proof's head",
    )?;
    let entry = v["entry"].as_str().context("the proof has no entry")?;
    let seq = v["seq"].as_u64().context("the proof has no seq")?;
    let parsed = AuditEntry::parse(entry.as_bytes())?;
    if parsed.seq != seq {
        return rejected(
            json,
            &format!("the entry says it is entry {}, not {seq}", parsed.seq),
        );
    }
    let proof = v["proof"]
        .as_array()
        .context("the proof has no hashes")?
        .iter()
        .map(|h| parse_hash(h.as_str().unwrap_or("")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Err(e) = verify_inclusion(
        seq,
        head.size,
        &leaf_hash(entry.as_bytes()),
        &proof,
        &head.root_hash()?,
    ) {
        return rejected(
            json,
            &format!(
                "entry {seq} is not in the signed tree of {} entries: {e}",
                head.size
            ),
        );
    }
    if json {
        crate::output::json(&serde_json::json!({
            "ok": true, "seq": seq, "size": head.size, "root": head.root, "entry": parsed,
        }))?;
    } else {
        println!(
            "ok: entry {seq} ({} {} by {}) is in the tree of {} entries signed by {}",
            parsed.kind, parsed.subject, parsed.actor, head.size, head.iss
        );
    }
    Ok(ExitCode::SUCCESS)
}
