//! Each subcommand: validate flags into typed configuration and call the libraries.
//!
//! `run` dispatches to one module per topic: [`run`](mod@run) for the running roles (verifier,
//! agent, one-shot attestation), [`admin`] for the management commands (policies, reference
//! values, join tokens, workloads, nodes, entries, revocation) and [`keys`] for the verifier's
//! signing keys and CAs, all through the verifier's API ([`remote`], [`context`]), and [`rp`]
//! for the relying-party commands. The TPM and TEE tools live in `crate::tpm` and
//! `crate::tee`, the dev stack in `crate::dev`. The helpers shared between them stay here.

mod admin;
pub(crate) mod anomalies;
mod apitoken;
pub(crate) mod audit;
pub(crate) mod ci;
pub(crate) mod context;
pub(crate) mod custody;
pub(crate) mod health;
pub(crate) mod image;
mod keys;
pub(crate) mod provenance;
mod refcsv;
mod remote;
pub(crate) mod rfc3339;
mod rp;
mod run;
pub(crate) mod secret;
pub(crate) mod timestamp;
pub(crate) mod update;

use anyhow::{Context, Result};
use std::process::ExitCode;

use vouch_core::ArStatus;
use vouch_policy::{CompiledPolicy, DEFAULT_POLICY, PolicySource, ReferenceValue, ReferenceValues};
use vouch_server::ServerConfig;

use crate::cli::{Cli, Command, StoreArgs};
use crate::config::{self, FileConfig};

/// Run the parsed command line; the exit code says how it went (an `Err` exits with 2).
pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    let file = config::load(cli.config.as_deref())?;
    let json = cli.json;
    let _ = remote::LOCAL_DATA_DIR.set(file.server.data_dir.clone());
    match cli.command {
        Command::Server {
            listen,
            insecure_http,
            migrate,
            store,
        } => run::server(file, listen, insecure_http, migrate, store).await,
        Command::Migrate { store } => run::migrate(file, store).await,
        Command::Context(cmd) => context::run(cmd, json),
        Command::Agent {
            agent,
            interval,
            metrics_listen,
        } => run::run_agent(file, agent, interval, metrics_listen).await,
        Command::Attest {
            agent,
            ci: true,
            accept_warning,
        } => ci::attest(run::agent_config(&file, &agent), accept_warning).await,
        Command::Attest { agent, .. } => run::attest(file, agent, json).await,
        Command::Verify(args) => rp::verify(args, json).await,
        Command::Policy(cmd) => admin::policy(cmd, json).await,
        Command::Refvalue(cmd) => admin::refvalue(cmd, json).await,
        Command::Token(cmd) => admin::token(cmd, json).await,
        Command::ApiToken(cmd) => apitoken::run(cmd, json).await,
        Command::Workload(cmd) => admin::workload(cmd, json).await,
        Command::Node(cmd) => admin::node(cmd, json).await,
        Command::Entry(cmd) => admin::entry(cmd, json).await,
        Command::Ca(cmd) => keys::ca(cmd, json).await,
        Command::Revoke(cmd) => admin::revoke(cmd, json).await,
        Command::Revocations(args) => admin::revocations(args, json).await,
        Command::Anomalies(args) => anomalies::run(args, json).await,
        Command::Audit(cmd) => audit::run(cmd, json).await,
        Command::Rp(crate::cli::RpCmd::Watch(args)) => rp::rp_watch(args).await,
        Command::Quorum(cmd) => keys::quorum(cmd, json),
        Command::Tee(cmd) => crate::tee::run(cmd, json),
        Command::Key(cmd) => keys::key(cmd, json).await,
        Command::Tpm(cmd) => crate::tpm::run(cmd, json),
        Command::Dev(args) => crate::dev::run(args, &file, json).await,
        Command::Bench(args) => crate::bench::run(args, json).await,
        Command::Healthcheck(args) => health::run(args).await,
        Command::Secret(cmd) => secret::run(cmd, json).await,
        Command::Update(cmd) => update::run(cmd, file, json).await,
        Command::Custody(cmd) => custody::run(cmd, json).await,
        Command::Provenance(provenance::ProvenanceCmd::Sign(a)) => ci::sign(a).await,
        Command::Provenance(cmd) => provenance::run(cmd, json).await,
        Command::Image(cmd) => image::run(cmd, json).await,
        Command::Completions { shell } => crate::docgen::completions(shell),
        Command::Man { dir } => crate::docgen::man(dir.as_deref()),
    }
}

fn server_config(file: &FileConfig, store: &StoreArgs) -> ServerConfig {
    let mut cfg = file.server.clone();
    if let Some(d) = &store.data_dir {
        cfg.data_dir = d.clone();
    }
    cfg
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// One line describing a result.
pub(crate) fn describe(r: &vouch_core::wire::AttestationResult) -> String {
    let mut s = format!("{} {} ({})", r.workload_id, r.status, r.policy);
    for reason in &r.reasons {
        s.push_str(&format!("\n    {reason}"));
    }
    s
}

/// 0 for an affirming result, 1 for any other.
fn exit_code(status: ArStatus) -> ExitCode {
    if status == ArStatus::Affirming {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Appraise `input` with the policy `policy` (`default`, or a Rego file) and `values`.
pub(crate) fn appraise_with(
    policy: &str,
    values: Vec<ReferenceValue>,
    input: &serde_json::Value,
) -> Result<vouch_policy::Appraisal> {
    let rego = if policy == "default" {
        DEFAULT_POLICY.to_string()
    } else {
        std::fs::read_to_string(policy).with_context(|| format!("reading {policy}"))?
    };
    let compiled = CompiledPolicy::compile(
        &PolicySource {
            id: policy.to_string(),
            version: 0,
            rego,
        },
        &ReferenceValues {
            revision: 0,
            values,
        },
    )?;
    Ok(compiled.appraise(input)?)
}

/// Reference values from a JSON file: an array of `{"kind", "key", "value"}`.
pub(crate) fn read_refvalues(p: &std::path::Path) -> Result<Vec<ReferenceValue>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} must be a JSON array of {{\"kind\", \"key\", \"value\"}}",
            p.display()
        )
    })
}
