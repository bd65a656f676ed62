//! `vouch update`: over-the-air updates for devices, checked against a TUF repository before
//! they are applied (issue 15 item 5).
//!
//! The TUF client is the `tough` crate: it walks the root chain from the root pinned on the
//! device, checks every role's signatures against its threshold, expiry, rollback against the
//! versions kept in the cache directory (a datastore that persists across runs, with the
//! latest time seen, so a clock stepped back is refused too), snapshot and targets versions
//! and hashes (mix-and-match), metadata size bounds, and streams the target with its length as
//! the limit and its hashes checked before anything is kept. `check` prints what the target
//! must be; `apply` writes it atomically (a temporary file beside the destination, synced,
//! renamed) and, with `--attest`, re-measures and re-attests at once like `vouch attest`;
//! `publish` makes the target's sha256 the only `file` reference value for the path it is
//! installed to, through the verifier's admin API, so a node is affirming only while the file
//! it measures is the TUF-verified target.
//!
//! Exit codes: 0 verified (applied, attested affirming, published), 1 refused (the reason on
//! standard error), 2 a usage or local error.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::remote::Api;

mod cache;
mod delegation;
use crate::cli::{AdminArgs, AgentArgs};
use crate::config::FileConfig;
use crate::output;

/// Bounds on metadata read from a repository (endless-data attacks): a timestamp is a few
/// hundred bytes, a snapshot grows with delegations, targets with the number of targets.
const LIMITS: tough::Limits = tough::Limits {
    max_root_size: 512 * 1024,
    max_targets_size: 8 << 20,
    max_timestamp_size: 16 * 1024,
    max_snapshot_size: 1 << 20,
    max_root_updates: 64,
};

/// `vouch update`: check, apply and publish updates from a TUF repository.
#[derive(Debug, Subcommand)]
pub(crate) enum UpdateCmd {
    /// Verify the repository's metadata and a target in it; print the target's length and
    /// digests. Exits 0 when it verifies, 1 when refused.
    Check {
        #[command(flatten)]
        tuf: TufArgs,
    },
    /// Verify, download and write a target atomically to a path (its length and hashes checked
    /// before the file is replaced); with --attest, attest once afterwards. Exits 0 when
    /// applied (and, with --attest, affirming), 1 when refused or not affirming.
    Apply {
        #[command(flatten)]
        tuf: TufArgs,
        /// Where the target is installed (replaced atomically).
        #[arg(long)]
        to: PathBuf,
        /// Re-measure and re-attest once after applying (the agent flags below; the installed
        /// file is measured too).
        #[arg(long)]
        attest: bool,
        #[command(flatten)]
        agent: Box<AgentArgs>,
    },
    /// Verify a target and make its sha256 the only `file` reference value of the path it is
    /// installed to on the verifier (admin API): nodes measuring anything else there are
    /// contraindicated.
    Publish {
        #[command(flatten)]
        tuf: TufArgs,
        /// The path the target is installed to on devices (the key of the `file` value).
        #[arg(long)]
        path: String,
        /// Also require this workload to measure the path (a `required_file` value): without
        /// it, a node whose agent does not measure the file is not held to the digest.
        #[arg(long)]
        workload: Option<String>,
        #[command(flatten)]
        api: AdminArgs,
    },
}

/// Which repository, which pinned root, which target, and where verified metadata is kept.
#[derive(Debug, Args, Clone)]
pub(crate) struct TufArgs {
    /// The TUF repository: a directory, file:// URL or http(s):// URL holding metadata/ and
    /// targets/ (plain HTTP is allowed: the signed metadata, not the transport, protects the
    /// update).
    #[arg(long, env = "VOUCH_UPDATE_REPO")]
    repo: String,
    /// CA certificates (PEM) for an https:// repository (default: the system's).
    #[arg(long, env = "VOUCH_UPDATE_REPO_CA")]
    repo_ca: Option<PathBuf>,
    /// The trusted root metadata pinned on this device (a root.json shipped out of band).
    #[arg(long, env = "VOUCH_UPDATE_ROOT")]
    root: PathBuf,
    /// The target's name in the repository's targets metadata.
    #[arg(long)]
    target: String,
    /// Where the latest verified metadata and time are kept between runs, for rollback and
    /// freeze protection (default .vouch/update).
    #[arg(long, env = "VOUCH_UPDATE_CACHE")]
    cache: Option<PathBuf>,
    /// Discard the cache and start again from the pinned root: for a cache that no longer
    /// verifies (every run re-verifies it, and refuses to go on from one that does not). The
    /// rollback protection the cache held is given up.
    #[arg(long)]
    reset_cache: bool,
    /// Slow retrieval: each metadata request must be answered whole within this many seconds
    /// (targets are held to --min-rate and --update-timeout instead; every request must send
    /// its headers within it).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    request_timeout: u64,
    /// Slow retrieval: the whole run (every metadata file and the target) must be done within
    /// this many seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    update_timeout: u64,
    /// Slow retrieval: while an answer is being received, at least this many bytes a second
    /// over each --rate-window (a server trickling bytes is cut off).
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    min_rate: u64,
    /// The window, in seconds, over which --min-rate is measured.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    rate_window: u64,
}

/// A repository whose metadata verified, and the target in it.
struct Verified {
    repo: tough::Repository,
    /// The cache generation this run wrote, made current by `commit` once the command
    /// succeeded (dropped without it, the previous generation stays).
    staged: cache::Staged,
    /// The root files tough fetched, by version (kept in the cache's chain on commit).
    roots: Roots,
    /// The same transport (its deadlines too), for targets in a directory.
    transport: Transport,
    targets_base: url::Url,
    name: tough::TargetName,
    length: u64,
    sha256: String,
    hashes: Value,
}

impl Verified {
    /// Keep the metadata this run verified as the cache's new state.
    fn commit(self) -> Result<std::result::Result<(), Refused>> {
        let fetched = self
            .roots
            .lock()
            .map_err(|_| anyhow::anyhow!("root chain lock poisoned"))?
            .clone();
        let v = self.repo.root().signed.version.get();
        Ok(self.staged.commit(v, &fetched)?.map_err(refused))
    }

    fn summary(&self) -> Value {
        json!({
            "target": self.name.raw(),
            "length": self.length,
            "sha256": self.sha256,
            "hashes": self.hashes,
            "versions": {
                "root": self.repo.root().signed.version.get(),
                "timestamp": self.repo.timestamp().signed.version.get(),
                "snapshot": self.repo.snapshot().signed.version.get(),
                "targets": self.repo.targets().signed.version.get(),
            },
            "expires": self.repo.timestamp().signed.expires.to_string(),
        })
    }
}

/// Why an update was refused: printed, and exit code 1.
struct Refused(String);

fn refused(e: impl std::fmt::Display) -> Refused {
    Refused(e.to_string())
}

/// The error and its causes on one line (tough's errors nest the reason).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The repository's base URL (ending in `/`): a file:// URL or a local directory.
fn base_url(repo: &str) -> Result<url::Url> {
    if repo.starts_with("file://") {
        let mut u = url::Url::parse(repo).with_context(|| format!("--repo {repo}"))?;
        if !u.path().ends_with('/') {
            u.set_path(&format!("{}/", u.path()));
        }
        return Ok(u);
    }
    if repo.starts_with("http://") || repo.starts_with("https://") {
        let mut u = url::Url::parse(repo).with_context(|| format!("--repo {repo}"))?;
        if !u.path().ends_with('/') {
            u.set_path(&format!("{}/", u.path()));
        }
        return Ok(u);
    }
    if repo.contains("://") {
        bail!("--repo {repo}: a directory, a file:// URL or an http(s):// URL");
    }
    let dir = std::fs::canonicalize(repo).with_context(|| format!("--repo {repo}"))?;
    url::Url::from_directory_path(&dir)
        .map_err(|()| anyhow::anyhow!("--repo {}: not an absolute path", dir.display()))
}

/// Load and verify the repository's metadata from the trusted root; find the target.
async fn verify(t: &TufArgs) -> Result<std::result::Result<Verified, Refused>> {
    let pinned_bytes =
        std::fs::read(&t.root).with_context(|| format!("reading {}", t.root.display()))?;
    let base = base_url(&t.repo)?;
    let dir = t
        .cache
        .clone()
        .unwrap_or_else(|| PathBuf::from(".vouch/update"));
    let pinned: tough::schema::Signed<tough::schema::Root> =
        match serde_json::from_slice(&pinned_bytes) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(refused(format!(
                    "the trusted root {} is not root metadata: {e}",
                    t.root.display()
                ))));
            }
        };
    if let Err(e) = pinned.signed.verify_role(&pinned) {
        return Ok(Err(refused(format!(
            "the trusted root {} does not verify: {e}",
            t.root.display()
        ))));
    }
    let staged = match cache::open(&dir, &pinned, &pinned_bytes, t.reset_cache)? {
        Ok(s) => s,
        Err(why) => bail!(
            "the update cache {} does not verify from the pinned root: {why}; it is left as it \
             is (--reset-cache discards it and starts again from the pinned root, giving up \
             the rollback protection it held)",
            dir.display()
        ),
    };
    let name = match tough::TargetName::new(t.target.clone()) {
        Ok(n) => n,
        Err(e) => bail!("--target {}: {e}", t.target),
    };
    let transport = Transport::new(t, &base)?;
    let roots = transport.roots.clone();
    let targets_base = base.join("targets/")?;
    let fetcher = transport.clone();
    let root = staged.root_bytes().to_vec();
    let loader =
        tough::RepositoryLoader::new(&root, base.join("metadata/")?, base.join("targets/")?)
            .transport(transport)
            .limits(LIMITS)
            .datastore(staged.datastore())
            .expiration_enforcement(tough::ExpirationEnforcement::Safe);
    let repo = match loader.load().await {
        Ok(r) => r,
        Err(e) => return Ok(Err(refused(chain(&e)))),
    };
    let Ok(target) = repo.targets().signed.find_target(&name, false) else {
        return Ok(Err(refused(format!(
            "target {} is not in the repository's targets metadata",
            t.target
        ))));
    };
    // The specification's search over the same verified metadata must find the same target
    // (tough's `*` in a delegation's paths also matches `/`).
    match delegation::find(&repo.targets().signed, &name) {
        Some(s) if s.length == target.length && s.hashes.sha256 == target.hashes.sha256 => {}
        Some(_) => {
            return Ok(Err(refused(format!(
                "target {}: the TUF delegation search finds another target than tough's",
                t.target
            ))));
        }
        None => {
            return Ok(Err(refused(format!(
                "target {} is listed by a role that is not delegated its path in TUF's path \
                 matching (a wildcard does not match '/'), or only after a terminating \
                 delegation",
                t.target
            ))));
        }
    }
    let mut hashes = serde_json::Map::new();
    hashes.insert("sha256".into(), json!(hex::encode(&*target.hashes.sha256)));
    for (k, v) in &target.hashes._extra {
        hashes.insert(k.clone(), v.clone());
    }
    Ok(Ok(Verified {
        length: target.length,
        sha256: hex::encode(&*target.hashes.sha256),
        hashes: Value::Object(hashes),
        name,
        repo,
        staged,
        roots,
        transport: fetcher,
        targets_base,
    }))
}

/// Run `vouch update`.
pub(crate) async fn run(cmd: UpdateCmd, file: FileConfig, json: bool) -> Result<ExitCode> {
    let tuf = match &cmd {
        UpdateCmd::Check { tuf }
        | UpdateCmd::Apply { tuf, .. }
        | UpdateCmd::Publish { tuf, .. } => tuf.clone(),
    };
    let v = match verify(&tuf).await? {
        Ok(v) => v,
        Err(Refused(why)) => return Ok(refuse(&why, json)),
    };
    match cmd {
        UpdateCmd::Check { .. } => {
            let line = format!(
                "{}: verified, {} bytes, sha256 {} (targets version {}, timestamp expires {})",
                tuf.target,
                v.length,
                v.sha256,
                v.repo.targets().signed.version,
                v.repo.timestamp().signed.expires
            );
            let summary = v.summary();
            if let Err(Refused(why)) = v.commit()? {
                return Ok(refuse(&why, json));
            }
            if json {
                output::json(&summary)?;
            } else {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCmd::Apply {
            to,
            attest,
            mut agent,
            ..
        } => {
            if let Err(Refused(why)) = apply(&v, &to).await? {
                return Ok(refuse(&why, json));
            }
            let mut s = v.summary();
            let (length, sha256) = (v.length, v.sha256.clone());
            if let Err(Refused(why)) = v.commit()? {
                return Ok(refuse(&why, json));
            }
            if !json || !attest {
                s["applied_to"] = json!(to.display().to_string());
                if json {
                    output::json(&s)?;
                } else {
                    println!(
                        "{}: verified and written to {} ({} bytes, sha256 {})",
                        tuf.target,
                        to.display(),
                        length,
                        sha256
                    );
                }
            }
            if !attest {
                return Ok(ExitCode::SUCCESS);
            }
            // Measure the installed file along with the others.
            if agent.files.is_empty() {
                agent.files = file.agent.files.clone();
            }
            if !agent.files.iter().any(|f| f == &to) {
                agent.files.push(to);
            }
            super::run::attest(file, *agent, json).await
        }
        UpdateCmd::Publish {
            path,
            workload,
            api,
            ..
        } => {
            let code = publish(&v, &path, workload.as_deref(), &api, json).await?;
            if code == ExitCode::SUCCESS
                && let Err(Refused(why)) = v.commit()?
            {
                return Ok(refuse(&why, json));
            }
            Ok(code)
        }
    }
}

fn refuse(why: &str, json: bool) -> ExitCode {
    if json {
        let _ = output::json(&json!({ "refused": why }));
    }
    eprintln!("update refused: {why}");
    ExitCode::from(1)
}

/// Stream the target (tough checks its length and hashes) into a temporary file beside `to`,
/// then sync and rename it over `to`. Nothing is renamed unless every byte verified.
async fn apply(v: &Verified, to: &Path) -> Result<std::result::Result<(), Refused>> {
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fname = to
        .file_name()
        .with_context(|| format!("--to {}: not a file path", to.display()))?;
    let tmp = dir.join(format!(
        ".{}.vouch-update-{}",
        fname.to_string_lossy(),
        std::process::id()
    ));
    let raw = v.name.resolved();
    let r = match raw.rsplit_once('/') {
        // A target in a directory with consistent snapshots: tough 0.24 asks for
        // `HASH.dir/name`; the specification (5.7.3) and python-tuf store it as
        // `dir/HASH.name`. Fetched here through the same transport, its length and sha256
        // checked by `write_verified` before anything is renamed.
        Some((d, file)) if v.repo.root().signed.consistent_snapshot => {
            if raw.contains(['?', '#', '%', '\\']) || d.is_empty() {
                return Ok(Err(refused(format!(
                    "target {raw}: not a path this client fetches"
                ))));
            }
            // tough's `read_target` checks that no role has expired since the metadata was
            // loaded; the same here.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let r = &v.repo;
            let expires = [
                r.root().signed.expires.as_second(),
                r.timestamp().signed.expires.as_second(),
                r.snapshot().signed.expires.as_second(),
                r.targets().signed.expires.as_second(),
            ];
            if expires.iter().any(|e| *e <= now) {
                return Ok(Err(refused(format!(
                    "target {raw}: the metadata expired while it was being fetched"
                ))));
            }
            let url = v.targets_base.join(&format!("{d}/{}.{file}", v.sha256))?;
            match tough::Transport::fetch(&v.transport, url).await {
                Ok(stream) => write_verified(stream, &tmp, to, v).await,
                Err(e) => return Ok(Err(refused(chain(&e)))),
            }
        }
        _ => {
            let stream = match v.repo.read_target(&v.name).await {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(Err(refused("target vanished from the metadata"))),
                Err(e) => return Ok(Err(refused(chain(&e)))),
            };
            write_verified(stream, &tmp, to, v).await
        }
    };
    if !matches!(r, Ok(Ok(()))) {
        let _ = std::fs::remove_file(&tmp);
        return r;
    }
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Ok(()))
}

async fn write_verified<E: std::error::Error + 'static>(
    stream: impl futures_util::Stream<Item = std::result::Result<tough::Bytes, E>>,
    tmp: &Path,
    to: &Path,
    v: &Verified,
) -> Result<std::result::Result<(), Refused>> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // Keep the permissions of the file being replaced.
    if let Ok(m) = std::fs::metadata(to) {
        let _ = f.set_permissions(m.permissions());
    }
    let mut h = sha2::Sha256::new();
    let mut n: u64 = 0;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Ok(Err(refused(chain(&e)))),
        };
        n = n.saturating_add(chunk.len() as u64);
        if n > v.length {
            return Ok(Err(refused(format!(
                "target {} is longer than the {} bytes the targets metadata says",
                v.name.raw(),
                v.length
            ))));
        }
        h.update(&chunk);
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    // tough has checked both already; checked again here before the rename, independently.
    let got = hex::encode(h.finalize());
    if n != v.length || got != v.sha256 {
        return Ok(Err(refused(format!(
            "target {} is {n} bytes with sha256 {got}, the metadata says {} bytes with sha256 {}",
            v.name.raw(),
            v.length,
            v.sha256
        ))));
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    Ok(Ok(()))
}

/// Add the target's sha256 as a `file` reference value for `path`, then remove the path's
/// other `file` values (added first, so the path is never without a value: with none, the
/// default policy would not check the file at all).
async fn publish(
    v: &Verified,
    path: &str,
    workload: Option<&str>,
    api: &AdminArgs,
    json: bool,
) -> Result<ExitCode> {
    if path.is_empty() || workload.is_some_and(str::is_empty) {
        bail!("--path and --workload must not be empty");
    }
    let c = Api::new(api)?;
    let added = c
        .post(
            "/v1/refvalues",
            &json!({ "kind": "file", "key": path, "value": v.sha256 }),
        )
        .await?;
    let rows = c.get("/v1/refvalues").await?;
    if let Some(w) = workload {
        let present = rows.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["kind"] == "required_file" && r["key"] == w && r["value"] == path)
        });
        if !present {
            c.post(
                "/v1/refvalues",
                &json!({ "kind": "required_file", "key": w, "value": path }),
            )
            .await?;
        }
    }
    let mut removed = Vec::new();
    for r in rows.as_array().map(Vec::as_slice).unwrap_or_default() {
        if r["kind"] == "file" && r["key"] == path && r["value"] != v.sha256.as_str() {
            let id = match &r["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            c.delete(&format!("/v1/refvalues/{id}")).await?;
            removed.push(r["value"].clone());
        }
    }
    if json {
        let mut s = v.summary();
        s["published"] =
            json!({ "kind": "file", "key": path, "id": added["id"], "removed": removed });
        output::json(&s)?;
    } else {
        println!(
            "reference value file {path} = {} (target {}, targets version {}); {} older value(s) removed",
            v.sha256,
            v.name.raw(),
            v.repo.targets().signed.version,
            removed.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// tough's transport: `file://` through tough's own `FilesystemTransport`, `http(s)://` through
/// reqwest (rustls), streamed chunk by chunk so that tough's length limits stop an endless
/// answer. Slow retrieval is cut three ways: a metadata request must be complete within
/// `--request-timeout` (any request must have its headers by then), every answer must bring
/// `--min-rate` bytes a second over each `--rate-window` while it is being received, and the
/// whole run ends at `--update-timeout`.
#[derive(Debug, Clone)]
struct Transport {
    http: reqwest::Client,
    metadata: url::Url,
    request: std::time::Duration,
    deadline: tokio::time::Instant,
    total: u64,
    min_rate: u64,
    window: std::time::Duration,
    /// Every `N.root.json` fetched whole, by N.
    roots: Roots,
}

/// Root metadata files as fetched, by version.
type Roots = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>>;

impl Transport {
    fn new(t: &TufArgs, base: &url::Url) -> Result<Self> {
        if t.request_timeout == 0 || t.update_timeout == 0 || t.rate_window == 0 {
            bail!("--request-timeout, --update-timeout and --rate-window must be at least 1");
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &t.repo_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
            b = b.tls_certs_only(certs);
        }
        Ok(Self {
            http: b.build()?,
            metadata: base.join("metadata/")?,
            request: std::time::Duration::from_secs(t.request_timeout),
            deadline: tokio::time::Instant::now()
                + std::time::Duration::from_secs(t.update_timeout),
            total: t.update_timeout,
            min_rate: t.min_rate,
            window: std::time::Duration::from_secs(t.rate_window),
            roots: Roots::default(),
        })
    }

    /// A slow-retrieval error for `url`.
    fn slow(url: &url::Url, why: String) -> tough::TransportError {
        tough::TransportError::new_with_cause(
            tough::TransportErrorKind::Other,
            url.clone(),
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("slow retrieval: {why}"),
            ),
        )
    }
}
/// The body's chunks, read by a task and handed over a small channel (bounded: the task waits
/// for tough to take them, and stops when tough drops the stream after a limit).
struct Chunks(tokio::sync::mpsc::Receiver<Result<tough::Bytes, tough::TransportError>>);

impl futures_util::Stream for Chunks {
    type Item = Result<tough::Bytes, tough::TransportError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tough::async_trait]
impl tough::Transport for Transport {
    async fn fetch(&self, url: url::Url) -> Result<tough::TransportStream, tough::TransportError> {
        let root = url
            .as_str()
            .strip_prefix(self.metadata.as_str())
            .and_then(|f| f.strip_suffix(".root.json"))
            .and_then(|v| v.parse::<u64>().ok());
        let stream = self.fetch_stream(url).await?;
        Ok(match root {
            Some(version) => Box::pin(KeepRoot {
                inner: stream,
                version,
                buf: Vec::new(),
                roots: self.roots.clone(),
            }),
            None => stream,
        })
    }
}

/// A root file's stream, its bytes kept (up to the root size limit) once it ended whole.
struct KeepRoot {
    inner: tough::TransportStream,
    version: u64,
    buf: Vec<u8>,
    roots: Roots,
}

impl futures_util::Stream for KeepRoot {
    type Item = Result<tough::Bytes, tough::TransportError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            std::task::Poll::Ready(Some(Ok(b)))
                if (this.buf.len() as u64).saturating_add(b.len() as u64)
                    <= LIMITS.max_root_size =>
            {
                this.buf.extend_from_slice(b);
            }
            std::task::Poll::Ready(None) => {
                if let Ok(mut m) = this.roots.lock() {
                    m.insert(this.version, std::mem::take(&mut this.buf));
                }
            }
            _ => {}
        }
        next
    }
}

impl Transport {
    async fn fetch_stream(
        &self,
        url: url::Url,
    ) -> Result<tough::TransportStream, tough::TransportError> {
        use tough::{TransportError, TransportErrorKind};
        if url.scheme() == "file" {
            return tough::Transport::fetch(&tough::FilesystemTransport, url).await;
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let start = tokio::time::Instant::now();
        // Metadata must be complete within the request timeout; a target only needs its
        // headers by then (its body is held to the minimum rate and the run's deadline).
        let head = (start + self.request).min(self.deadline);
        let end = if url.as_str().starts_with(self.metadata.as_str()) {
            head
        } else {
            self.deadline
        };
        let why_end = move |t: &Self| {
            if end == t.deadline {
                format!(
                    "the update was not done within --update-timeout {} s",
                    t.total
                )
            } else {
                format!(
                    "not received within --request-timeout {} s",
                    t.request.as_secs()
                )
            }
        };
        let res = match tokio::time::timeout_at(head, self.http.get(url.clone()).send()).await {
            Ok(r) => r.map_err(|e| {
                TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e)
            })?,
            Err(_) => {
                let why = if head == self.deadline {
                    why_end(self)
                } else {
                    format!(
                        "no answer within --request-timeout {} s",
                        self.request.as_secs()
                    )
                };
                return Err(Self::slow(&url, why));
            }
        };
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                std::io::Error::other(format!("HTTP {status}")),
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (min_rate, window) = (self.min_rate, self.window);
        let why = why_end(self);
        tokio::spawn(async move {
            let mut res = res;
            // Bytes received in the current window, and when it ends.
            let (mut got, mut check) = (0u64, tokio::time::Instant::now() + window);
            loop {
                let next = tokio::time::timeout_at(end.min(check), res.chunk()).await;
                let now = tokio::time::Instant::now();
                if let Ok(Ok(Some(b))) = &next {
                    got = got.saturating_add(b.len() as u64);
                }
                let item = if now >= end && !matches!(next, Ok(Ok(None))) {
                    Err(Self::slow(&url, why.clone()))
                } else if now >= check && got < min_rate.saturating_mul(window.as_secs()) {
                    Err(Self::slow(
                        &url,
                        format!(
                            "{got} bytes in {} s, below --min-rate {min_rate} bytes/s",
                            window.as_secs()
                        ),
                    ))
                } else {
                    if now >= check {
                        (got, check) = (0, now + window);
                    }
                    match next {
                        Ok(Ok(Some(b))) => Ok(b),
                        Ok(Ok(None)) => return,
                        Ok(Err(e)) => Err(TransportError::new_with_cause(
                            TransportErrorKind::Other,
                            url.clone(),
                            e,
                        )),
                        // The window's check; `chunk` is cancel-safe (a frame not yet
                        // complete stays in the body), so the next turn reads on.
                        Err(_) => continue,
                    }
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::pin(Chunks(rx)))
    }
}
