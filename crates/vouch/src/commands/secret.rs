//! `vouch secret` (issue 17 item 4): secrets released only to attested workloads. `put`,
//! `list` and `delete` are admin verbs through the verifier's API (like every admin command:
//! [`super::remote`]); `get` asks the agent on this machine over its secret socket, which
//! attests the workload with a one-time HPKE key and opens the sealed answer.

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::remote::{Api, seg};
use crate::cli::AdminArgs;
use crate::output;

/// `vouch secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Store a secret (a new version when it exists) with the Rego policy that releases it.
    Put {
        /// The secret's name (1-128 of A-Z a-z 0-9 - _ .).
        name: String,
        /// File holding the secret's bytes (at most 64 KiB); `-` reads standard input.
        #[arg(long = "from-file")]
        from_file: PathBuf,
        /// Rego in `package vouch.secret`: released when `allow` is true for the asking
        /// workload (`input.selectors`, `input.node_id`, `input.workload`, `input.claims`).
        #[arg(long)]
        policy: PathBuf,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// List the secrets (names, versions, sizes, policy digests: never the bytes).
    List {
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Delete a secret.
    Delete {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        api: AdminArgs,
    },
    /// Ask this machine's agent for a secret: it attests the workload for it, and the
    /// verifier releases it sealed to a key only that attestation bound. Written to standard
    /// output (or --out, mode 0600).
    Get {
        /// The secret's name.
        name: String,
        /// The agent's secret socket (its `secret_socket`).
        #[arg(
            long,
            env = "VOUCH_SECRET_SOCKET",
            default_value = "/run/vouch/secrets.sock"
        )]
        socket: PathBuf,
        /// A declared workload of the agent to attest for it (default: the node's own).
        #[arg(long)]
        workload: Option<String>,
        /// Write the secret to this file (created mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Run `vouch secret …`.
pub(crate) async fn run(cmd: SecretCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        SecretCmd::Put {
            name,
            from_file,
            policy,
            api,
        } => {
            let value = if from_file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                b
            } else {
                std::fs::read(&from_file)
                    .with_context(|| format!("reading {}", from_file.display()))?
            };
            let rego = std::fs::read_to_string(&policy)
                .with_context(|| format!("reading {}", policy.display()))?;
            // Checked here first, for the verifier's own message.
            vouch_policy::SecretPolicy::compile(&name, &rego)?;
            let body = json!({ "value": URL_SAFE_NO_PAD.encode(&value), "policy": rego });
            let r = Api::new(&api)?
                .call(
                    Method::PUT,
                    &format!("/v1/secrets/{}", seg(&name)),
                    Some(&body),
                )
                .await?;
            if json {
                output::json(&r)?;
            } else {
                println!(
                    "secret {} version {} stored ({} bytes)",
                    s(&r["name"]),
                    s(&r["version"]),
                    s(&r["size"])
                );
            }
        }
        SecretCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/secrets").await?;
            output::list(
                &list,
                json,
                &["NAME", "VERSION", "BYTES", "POLICY SHA-256"],
                |r| {
                    vec![
                        s(&r["name"]),
                        s(&r["version"]),
                        s(&r["size"]),
                        s(&r["policy_sha256"]).chars().take(16).collect(),
                    ]
                },
            )?;
        }
        SecretCmd::Delete { name, api } => {
            let r = Api::new(&api)?
                .delete(&format!("/v1/secrets/{}", seg(&name)))
                .await?;
            if json {
                output::json(&r)?;
            } else {
                println!("secret {name} deleted");
            }
        }
        SecretCmd::Get {
            name,
            socket,
            workload,
            out,
        } => {
            let value = vouch_agent::ask_secret_socket(&socket, &name, workload.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("secret {name}: {e}"))?;
            match out {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    f.write_all(&value)?;
                    if json {
                        output::json(&json!({ "name": name, "size": value.len(), "out": path }))?;
                    }
                }
                None if json => bail!("--json with get needs --out: the secret goes to a file"),
                None => std::io::stdout().write_all(&value)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
