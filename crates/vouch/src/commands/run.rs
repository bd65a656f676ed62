//! The running roles: the verifier (`vouch server`), the agent (`vouch agent`) and one
//! attestation from the command line (`vouch attest`). The dev stack is `crate::dev`.

use anyhow::Result;
use std::process::ExitCode;

use vouch_agent::{Agent, AgentConfig};

use super::{describe, exit_code, server_config, shutdown_signal};
use crate::cli::{AgentArgs, StoreArgs};
use crate::config::FileConfig;
use crate::output;

/// `vouch server`: run the verifier until SIGINT or SIGTERM.
pub(crate) async fn server(
    file: FileConfig,
    listen: Option<std::net::SocketAddr>,
    insecure_http: bool,
    migrate: bool,
    store: StoreArgs,
) -> Result<ExitCode> {
    let mut cfg = server_config(&file, &store);
    if let Some(l) = listen {
        cfg.listen = l;
    }
    cfg.insecure_http |= insecure_http;
    let migrations = if migrate {
        vouch_store::Migrations::Apply
    } else {
        vouch_store::Migrations::RefuseOutdated
    };
    if migrate {
        // Each tenant's own store too, before the verifier opens them (refusing old ones).
        for t in vouch_server::tenant_configs(&cfg)? {
            vouch_server::open_store_with(&t, migrations).await?;
        }
    }
    let db = vouch_server::open_store_with(&cfg, migrations).await?;
    vouch_server::migrate_tenants(&cfg, migrations).await?;
    let (data_dir, tls_cert) = (cfg.data_dir.clone(), cfg.tls_cert.clone());
    let running = vouch_server::start_with_store(cfg, db).await?;
    // Admin commands on this machine find it with --data-dir.
    if let Err(e) = super::context::publish(
        &data_dir,
        &running.base_url,
        running.ca_cert.as_deref(),
        tls_cert.as_deref(),
    ) {
        tracing::warn!("could not publish the admin context in the data directory: {e:#}");
    }
    println!("verifier listening on {}", running.base_url);
    if let Some(ca) = &running.ca_cert {
        println!("agents and relying parties trust {}", ca.display());
    }
    let addr = running.addr;
    shutdown_signal().await;
    tracing::info!("shutting down {addr}");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `vouch migrate`: apply pending schema migrations, then exit.
pub(crate) async fn migrate(file: FileConfig, store: StoreArgs) -> Result<ExitCode> {
    let cfg = server_config(&file, &store);
    let what = match &cfg.database_url {
        Some(_) => "the verifier's PostgreSQL store".to_string(),
        None => format!("the verifier store {}", cfg.database_path().display()),
    };
    vouch_server::open_store_with(&cfg, vouch_store::Migrations::Apply)
        .await
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context(format!("migrating {what}")))?;
    println!("{what} is at the current schema");
    for tenant in vouch_server::migrate_tenants(&cfg, vouch_store::Migrations::Apply).await? {
        println!("{tenant} is at the current schema");
    }
    for t in vouch_server::tenant_configs(&cfg)? {
        vouch_server::open_store_with(&t, vouch_store::Migrations::Apply)
            .await
            .map_err(anyhow::Error::from)
            .map_err(|e| {
                e.context(format!(
                    "migrating the store of tenant {}",
                    t.data_dir.display()
                ))
            })?;
        println!(
            "the store in {} is at the current schema",
            t.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's configuration: the file's `[agent]` section, overridden by the flags given.
pub(super) fn agent_config(file: &FileConfig, a: &AgentArgs) -> AgentConfig {
    let mut cfg = file.agent.clone();
    if !a.servers.is_empty() {
        cfg.servers = a.servers.clone();
    }
    if let Some(v) = &a.tenant {
        cfg.tenant = Some(v.clone());
    }
    if let Some(v) = &a.ca_cert {
        cfg.ca_cert = Some(v.clone());
    }
    if let Some(v) = &a.agent_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.join_token {
        cfg.join_token = Some(v.clone());
    }
    if let Some(v) = &a.workload {
        cfg.workload_name = v.clone();
    }
    if let Some(v) = &a.exe {
        cfg.exe = Some(v.clone());
    }
    if !a.files.is_empty() {
        cfg.files = a.files.clone();
    }
    if let Some(v) = &a.image_digest {
        cfg.image_digest = Some(v.clone());
    }
    if let Some(v) = &a.result_audience {
        cfg.result_audience = Some(v.clone());
    }
    if let Some(v) = &a.workload_api_socket {
        cfg.workload_api_socket = Some(v.clone());
    }
    if let Some(v) = &a.secret_socket {
        cfg.secret_socket = Some(v.clone());
    }
    if let Some(v) = &a.trust_domain {
        cfg.trust_domain = v.clone();
    }
    if let Some(v) = &a.container_runtime_socket {
        let mut c = cfg.container.clone().unwrap_or_default();
        c.socket = v.clone();
        cfg.container = Some(c);
    }
    if a.tpm_tcti.is_some()
        || a.tpm_key_alg.is_some()
        || !a.tpm_pcrs.is_empty()
        || a.tpm_eventlog.is_some()
    {
        let mut t = cfg.tpm.clone().unwrap_or_default();
        if let Some(v) = &a.tpm_tcti {
            t.tcti = v.clone();
        }
        if let Some(v) = &a.tpm_key_alg {
            t.key_alg = v.clone();
        }
        if !a.tpm_pcrs.is_empty() {
            t.pcrs = a.tpm_pcrs.clone();
        }
        if let Some(v) = &a.tpm_eventlog {
            t.eventlog = Some(v.clone());
        }
        cfg.tpm = Some(t);
    }
    cfg
}

/// `vouch agent`: attest at every interval until SIGINT or SIGTERM.
pub(crate) async fn run_agent(
    file: FileConfig,
    a: AgentArgs,
    interval: Option<u64>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    let mut cfg = agent_config(&file, &a);
    if let Some(i) = interval {
        cfg.interval = i;
    }
    if metrics_listen.is_some() {
        cfg.metrics_listen = metrics_listen;
    }
    let agent = Agent::new(cfg).await?;
    println!(
        "agent {} attesting every {}s",
        agent.enrollment().node_id,
        agent.config().interval
    );
    agent
        .run(shutdown_signal(), |r| match r {
            Ok(r) => println!("{}", describe(r)),
            Err(e) => eprintln!("attestation failed: {e}"),
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// `vouch attest`: attest once; exits 0 only when the result is affirming.
pub(crate) async fn attest(file: FileConfig, a: AgentArgs, json: bool) -> Result<ExitCode> {
    let mut agent = Agent::new(agent_config(&file, &a)).await?;
    let r = agent.attest_once().await?;
    if json {
        output::json(&r)?;
    } else {
        println!("{}", describe(&r));
        println!("result: {}", r.result);
    }
    Ok(exit_code(r.status))
}
