//! Contexts (issue 16 item 1), like kubectl's: which verifier the admin commands talk to and
//! with which credential, kept in `$VOUCH_CONTEXT_FILE`, else
//! `$XDG_CONFIG_HOME/vouch/contexts.toml`, else `~/.config/vouch/contexts.toml` (written mode
//! 0600). A verifier also publishes its own local context in its data directory
//! (`context.toml`, [`publish`]) for `--data-dir` on the same machine.
//!
//! ```toml
//! current = "prod"
//! [contexts.prod]
//! server = "https://verifier.example:8443"
//! ca_cert = "/etc/vouch/ca.pem"
//! token_file = "/home/me/.config/vouch/prod.token"
//! ```

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::output;

/// The file a verifier writes its local context to, in its data directory.
pub(crate) const PUBLISHED: &str = "context.toml";

/// One verifier and the credential to use with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ctx {
    /// The verifier's URL.
    pub server: String,
    /// The CA certificate its TLS chains to (none: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The verifier's own TLS certificate (PEM): only that certificate is accepted, whatever
    /// names it carries (the local context of a verifier with a configured certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_cert: Option<PathBuf>,
    /// The file holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The token itself (discouraged: prefer token_file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The context file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextFile {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Ctx>,
}

/// `vouch context`.
#[derive(Debug, Subcommand)]
pub enum ContextCmd {
    /// Add (or replace) a context.
    Add {
        /// Its name.
        name: String,
        /// The verifier's URL.
        #[arg(long)]
        server: String,
        /// CA certificate (PEM) of the verifier's TLS.
        #[arg(long = "ca-cert", visible_alias = "ca")]
        ca_cert: Option<PathBuf>,
        /// File holding the bearer token (kept as a path, never copied).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Make a context the current one.
    Use {
        /// Its name.
        name: String,
    },
    /// List contexts (the current one marked).
    List,
    /// Show a context (default: the current one); tokens are never printed.
    Show {
        /// Its name.
        name: Option<String>,
    },
    /// Remove a context.
    Remove {
        /// Its name.
        name: String,
    },
}

/// Where the context file is.
pub(crate) fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VOUCH_CONTEXT_FILE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vouch/contexts.toml"))
}

/// Largest context file read.
const MAX_FILE: u64 = 1 << 20;

fn read_toml<T: serde::de::DeserializeOwned + Default>(p: &Path) -> Result<T> {
    match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        Ok(m) if m.len() > MAX_FILE => bail!("{} is larger than 1 MiB", p.display()),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a context file", p.display()))
}

/// Write `text` to `p` with `mode`, replacing it atomically.
fn write_file(p: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

pub(crate) fn load() -> Result<ContextFile> {
    match path() {
        Some(p) => read_toml(&p),
        None => Ok(ContextFile::default()),
    }
}

fn save(f: &ContextFile) -> Result<PathBuf> {
    let p = path().context("no home directory: set VOUCH_CONTEXT_FILE")?;
    // It may hold a token inline: its owner's only.
    write_file(&p, &toml::to_string_pretty(f)?, 0o600)?;
    Ok(p)
}

/// The context a verifier published in `data_dir` (`None` when there is none).
pub(crate) fn published(data_dir: &Path) -> Result<Option<Ctx>> {
    let p = data_dir.join(PUBLISHED);
    if !p.exists() {
        return Ok(None);
    }
    let c: Ctx = read_toml(&p)?;
    Ok((!c.server.is_empty()).then_some(c))
}

/// Write the local context of a verifier serving at `base_url` into its data directory: its
/// URL (a wildcard listen address becomes loopback), the CA it generated or else its own
/// certificate `tls_cert` to pin, and its admin token file, for admin commands run on this
/// machine with `--data-dir` (or the configuration file's data directory).
pub(crate) fn publish(
    data_dir: &Path,
    base_url: &str,
    ca_cert: Option<&Path>,
    tls_cert: Option<&Path>,
) -> Result<()> {
    let server = base_url
        .replace("://0.0.0.0:", "://127.0.0.1:")
        .replace("://[::]:", "://[::1]:");
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let c = Ctx {
        server,
        ca_cert: ca_cert.map(abs),
        pinned_cert: if ca_cert.is_none() {
            tls_cert.map(abs)
        } else {
            None
        },
        token_file: Some(abs(&data_dir.join("keys/admin.token"))),
        token: None,
    };
    // Paths only, no secret: readable like the CA certificate beside it.
    write_file(
        &data_dir.join(PUBLISHED),
        &toml::to_string_pretty(&c)?,
        0o644,
    )
}

/// `vouch context …`.
pub(crate) fn run(cmd: ContextCmd, json: bool) -> Result<ExitCode> {
    let mut f = load()?;
    match cmd {
        ContextCmd::Add {
            name,
            server,
            ca_cert,
            token_file,
            make_current,
        } => {
            if !(server.starts_with("https://") || server.starts_with("http://")) {
                bail!("--server must be an https:// URL");
            }
            let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            f.contexts.insert(
                name.clone(),
                Ctx {
                    server,
                    ca_cert: ca_cert.map(abs),
                    pinned_cert: None,
                    token_file: token_file.map(abs),
                    token: None,
                },
            );
            if make_current || f.current.is_none() {
                f.current = Some(name.clone());
            }
            let p = save(&f)?;
            eprintln!("context {name} saved in {}", p.display());
        }
        ContextCmd::Use { name } => {
            if !f.contexts.contains_key(&name) {
                bail!("no context {name} (see `vouch context list`)");
            }
            f.current = Some(name.clone());
            save(&f)?;
            eprintln!("current context: {name}");
        }
        ContextCmd::Remove { name } => {
            if f.contexts.remove(&name).is_none() {
                bail!("no context {name} (see `vouch context list`)");
            }
            if f.current.as_deref() == Some(name.as_str()) {
                f.current = None;
            }
            save(&f)?;
        }
        ContextCmd::List => {
            if json {
                let names: Vec<_> = f.contexts.keys().collect();
                output::json(&serde_json::json!({ "current": f.current, "contexts": names }))?;
            } else {
                let rows: Vec<Vec<String>> = f
                    .contexts
                    .iter()
                    .map(|(n, c)| {
                        let mark = if f.current.as_deref() == Some(n.as_str()) {
                            "*"
                        } else {
                            ""
                        };
                        vec![mark.into(), n.clone(), c.server.clone()]
                    })
                    .collect();
                output::table(&["", "name", "server"], &rows);
            }
        }
        ContextCmd::Show { name } => {
            let name = name
                .or_else(|| f.current.clone())
                .context("no current context (see `vouch context list`)")?;
            let c = f
                .contexts
                .get(&name)
                .with_context(|| format!("no context {name} (see `vouch context list`)"))?;
            let shown = serde_json::json!({
                "name": name,
                "server": c.server,
                "ca_cert": c.ca_cert,
                "token_file": c.token_file,
                "token": c.token.as_ref().map(|_| "(inline, not shown)"),
            });
            if json {
                output::json(&shown)?;
            } else {
                println!("context    {name}");
                println!("server     {}", c.server);
                if let Some(p) = &c.ca_cert {
                    println!("ca cert    {}", p.display());
                }
                if let Some(p) = &c.token_file {
                    println!("token file {}", p.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
