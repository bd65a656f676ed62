//! Each subcommand: validate flags into typed configuration and call the libraries.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig};
use vouch_core::{ArStatus, TrustClaim, TrustTier};
use vouch_policy::{CompiledPolicy, DEFAULT_POLICY, PolicySource, ReferenceValue, ReferenceValues};
use vouch_rp::{Audience, Requirements, ResultVerifier};
use vouch_server::{ServerConfig, unix_now};
use vouch_store::Store;

use crate::cli::{
    AgentArgs, CaCmd, Cli, Command, EntryCmd, KeyCmd, NodeCmd, PolicyCmd, RefvalueCmd,
    RevocationsArgs, RevokeCmd, StoreArgs, TokenCmd, VerifyArgs, WorkloadCmd,
};
use crate::config::{self, FileConfig};
use crate::output;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let file = config::load(cli.config.as_deref())?;
    let json = cli.json;
    match cli.command {
        Command::Server {
            listen,
            insecure_http,
            store,
        } => server(file, listen, insecure_http, store).await,
        Command::Agent { agent, interval } => run_agent(file, agent, interval).await,
        Command::Attest { agent } => attest(file, agent, json).await,
        Command::Verify(args) => verify(args, json).await,
        Command::Policy(cmd) => policy(file, cmd, json).await,
        Command::Refvalue(cmd) => refvalue(file, cmd, json).await,
        Command::Token(cmd) => token(file, cmd, json).await,
        Command::Workload(cmd) => workload(file, cmd, json).await,
        Command::Node(cmd) => node(file, cmd, json).await,
        Command::Entry(cmd) => entry(file, cmd, json).await,
        Command::Ca(cmd) => ca(file, cmd, json),
        Command::Revoke(cmd) => revoke(file, cmd, json).await,
        Command::Revocations(args) => revocations(file, args, json).await,
        Command::Rp(crate::cli::RpCmd::Watch(args)) => rp_watch(args).await,
        Command::Quorum(cmd) => quorum(cmd, json),
        Command::Tee(cmd) => crate::tee::run(cmd, json),
        Command::Key(cmd) => key(file, cmd, json).await,
        Command::Tpm(cmd) => crate::tpm::run(cmd, json),
        Command::Dev(args) => crate::dev::run(args, &file, json).await,
        Command::Bench(args) => crate::bench::run(args, json).await,
    }
}

fn server_config(file: &FileConfig, store: &StoreArgs) -> ServerConfig {
    let mut cfg = file.server.clone();
    if let Some(d) = &store.data_dir {
        cfg.data_dir = d.clone();
    }
    cfg
}

/// Open the verifier's store for an admin command.
pub async fn open_store(file: &FileConfig, store: &StoreArgs) -> Result<Arc<dyn Store>> {
    let cfg = server_config(file, store);
    let what = match &cfg.database_url {
        Some(_) => "the verifier's PostgreSQL store".to_string(),
        None => format!("the verifier store {}", cfg.database_path().display()),
    };
    vouch_server::open_store(&cfg)
        .await
        .with_context(|| format!("opening {what}"))
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

async fn server(
    file: FileConfig,
    listen: Option<std::net::SocketAddr>,
    insecure_http: bool,
    store: StoreArgs,
) -> Result<ExitCode> {
    let mut cfg = server_config(&file, &store);
    if let Some(l) = listen {
        cfg.listen = l;
    }
    cfg.insecure_http |= insecure_http;
    let running = vouch_server::start(cfg).await?;
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

pub fn agent_config(file: &FileConfig, a: &AgentArgs) -> AgentConfig {
    let mut cfg = file.agent.clone();
    if !a.servers.is_empty() {
        cfg.servers = a.servers.clone();
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
    if let Some(v) = &a.trust_domain {
        cfg.trust_domain = v.clone();
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

/// One line describing a result.
pub fn describe(r: &vouch_core::wire::AttestationResult) -> String {
    let mut s = format!("{} {} ({})", r.workload_id, r.status, r.policy);
    for reason in &r.reasons {
        s.push_str(&format!("\n    {reason}"));
    }
    s
}

async fn run_agent(file: FileConfig, a: AgentArgs, interval: Option<u64>) -> Result<ExitCode> {
    let mut cfg = agent_config(&file, &a);
    if let Some(i) = interval {
        cfg.interval = i;
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

async fn attest(file: FileConfig, a: AgentArgs, json: bool) -> Result<ExitCode> {
    let mut agent = Agent::new(agent_config(&file, &a)).await?;
    let r = agent.attest_once().await?;
    if json {
        output::json(&r)?;
    } else {
        println!("{}", describe(&r));
        println!("result: {}", r.result);
    }
    Ok(if r.status == ArStatus::Affirming {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Read a token argument: literal, file, or `-`.
fn read_token(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s.trim().to_string());
    }
    if arg.matches('.').count() == 2 && !std::path::Path::new(arg).exists() {
        return Ok(arg.trim().to_string());
    }
    Ok(std::fs::read_to_string(arg)
        .with_context(|| format!("{arg} is neither a JWT nor a readable file"))?
        .trim()
        .to_string())
}

/// Load a JWKS from a file or an https:// URL.
pub async fn load_jwks(src: &str, ca: Option<&std::path::Path>) -> Result<String> {
    if src.starts_with("https://") || src.starts_with("http://") {
        let base = src
            .strip_suffix("/.well-known/jwks.json")
            .unwrap_or(src)
            .to_string();
        let c = vouch_agent::VerifierClient::new(&base, ca)?;
        return Ok(c.jwks().await?);
    }
    std::fs::read_to_string(src).with_context(|| format!("reading JWKS {src}"))
}

fn parse_requirement(s: &str) -> Result<(TrustClaim, TrustTier)> {
    let (c, t) = s
        .split_once('=')
        .with_context(|| format!("--require {s}: expected CLAIM=TIER, e.g. hardware=affirming"))?;
    let claim = TrustClaim::parse(c).with_context(|| {
        format!("unknown trust claim {c:?} (instance-identity, configuration, executables, file-system, hardware, runtime-opaque, storage-opaque, sourced-data)")
    })?;
    let tier = ArStatus::parse(t)
        .filter(|t| *t != ArStatus::None)
        .with_context(|| format!("unknown tier {t:?} (affirming, warning, contraindicated)"))?;
    Ok((claim, tier))
}

async fn verify(args: VerifyArgs, json: bool) -> Result<ExitCode> {
    let token = read_token(&args.token)?;
    let bundle = match &args.trust_bundle {
        Some(p) => Some(load_trust_bundle(p, &args.trust_domain)?),
        None => None,
    };
    let mut v = match (&args.jwks, &bundle) {
        (Some(j), _) => {
            ResultVerifier::from_jwks_json(&load_jwks(j, args.ca_cert.as_deref()).await?)?
        }
        (None, Some(b)) => ResultVerifier::from_trust_bundle(b.clone()),
        (None, None) => anyhow::bail!("give --jwks or --trust-bundle"),
    };
    if let (Some(b), Some(_)) = (&bundle, &args.jwks) {
        v = v.with_trust_bundle(b.clone());
    }
    let revoked = match (&args.revocations, &bundle) {
        (Some(p), Some(b)) => {
            let max_age = crate::config::parse_duration(&args.max_revocation_age)
                .context("--max-revocation-age")?;
            let mut set = vouch_rp::RevocationSet::new(b.clone())
                .with_max_age(std::time::Duration::from_secs(max_age));
            set.load(p, unix_now())
                .with_context(|| format!("loading revocations from {}", p.display()))?;
            Some(set)
        }
        _ => None,
    };
    let audience = match (args.audience, args.any_audience) {
        (Some(a), _) => Audience::Required(a),
        (None, true) => Audience::Unchecked,
        // clap requires one of the two; were neither given, verification would refuse.
        (None, false) => Audience::Unset,
    };
    let mut req = Requirements {
        audience,
        nonce: args.nonce,
        accept_warning: args.accept_warning,
        submods: args.require_submods,
        evidence_kinds: args.evidence_kinds,
        ..Requirements::default()
    };
    for r in &args.require {
        let (c, t) = parse_requirement(r)?;
        req.tiers.insert(c, t);
    }
    let now = unix_now();
    let checked = v.verify(&token, &req).and_then(|r| match &revoked {
        Some(set) => set.check_result(&r, now).map(|()| r),
        None => Ok(r),
    });
    if let Some(set) = &revoked {
        let view = set.view();
        if let Some(age) = view.staleness(now) {
            eprintln!(
                "revocations: complete through epoch {}, as of {age} s ago (at most {} s allowed)",
                view.complete_through,
                set.max_age().as_secs()
            );
        }
    }
    match checked {
        Ok(r) => {
            if json {
                output::json(&r.ear)?;
            } else {
                println!(
                    "valid: {} is {} (kid {}, expires {})",
                    r.subject.as_deref().unwrap_or("?"),
                    r.status,
                    r.kid.as_deref().unwrap_or("-"),
                    output::ago(r.ear.exp),
                );
                for (name, sub) in &r.ear.submods {
                    println!("  submod {name}: {}", sub.status);
                    for (k, v) in &sub.trust_vector.0 {
                        println!("    {k:<18} {v:>4}  {}", vouch_core::tier_of(*v));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Appraise `input` with the policy `policy` (`default`, or a Rego file) and `values`.
pub fn appraise_with(
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

pub(crate) fn read_refvalues(p: &std::path::Path) -> Result<Vec<ReferenceValue>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} must be a JSON array of {{\"kind\", \"key\", \"value\"}}",
            p.display()
        )
    })
}

async fn policy(file: FileConfig, cmd: PolicyCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Add {
            id,
            file: path,
            no_activate,
            store,
        } => {
            let rego = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Refuse a policy that does not compile before it can become active.
            CompiledPolicy::compile(
                &PolicySource {
                    id: id.clone(),
                    version: 0,
                    rego: rego.clone(),
                },
                &ReferenceValues::default(),
            )?;
            let s = open_store(&file, &store).await?;
            let v = s.add_policy(&id, &rego, !no_activate, unix_now()).await?;
            if json {
                output::json(&serde_json::json!({"id": id, "version": v, "active": !no_activate}))?;
            } else {
                println!(
                    "policy {id} v{v} added{}",
                    if no_activate { "" } else { " and active" }
                );
            }
        }
        PolicyCmd::List { store } => {
            let s = open_store(&file, &store).await?;
            let active = s.active_policy_id().await?;
            let list = s.policies().await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            p.version.to_string(),
                            if active.as_deref() == Some(&p.id) {
                                "yes"
                            } else {
                                ""
                            }
                            .into(),
                            p.sha256[..16].to_string(),
                            output::ago(Some(p.created_at)),
                        ]
                    })
                    .collect();
                output::table(&["id", "version", "active", "sha256", "created"], &rows);
            }
        }
        PolicyCmd::Show { id, version, store } => {
            let s = open_store(&file, &store).await?;
            let p = s
                .policy(&id, version)
                .await?
                .with_context(|| format!("no policy {id} (see `vouch policy list`)"))?;
            if json {
                output::json(&p)?;
            } else {
                println!("# policy {} v{} sha256 {}", p.id, p.version, p.sha256);
                print!("{}", p.rego);
            }
        }
        PolicyCmd::Activate { id, store } => {
            let s = open_store(&file, &store).await?;
            s.activate_policy(&id).await?;
            println!("policy {id} is active");
        }
        PolicyCmd::Test {
            policy,
            input,
            refvalues,
            from_store,
            store,
        } => {
            let claims: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&input)
                    .with_context(|| format!("reading {}", input.display()))?,
            )
            .with_context(|| format!("{} is not JSON", input.display()))?;
            let mut values = match &refvalues {
                Some(p) => read_refvalues(p)?,
                None => Vec::new(),
            };
            if from_store {
                values.extend(
                    open_store(&file, &store)
                        .await?
                        .reference_values()
                        .await?
                        .values,
                );
            }
            let a = appraise_with(&policy, values, &claims)?;
            if json {
                output::json(&a)?;
            } else {
                print!("{}", a.explain());
            }
            return Ok(if a.status == ArStatus::Affirming {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn refvalue(file: FileConfig, cmd: RefvalueCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        RefvalueCmd::Add {
            kind,
            key,
            value,
            store,
        } => {
            if kind.is_empty() || key.is_empty() {
                bail!("kind and key must not be empty");
            }
            let s = open_store(&file, &store).await?;
            let id = s
                .add_reference_value(&ReferenceValue { kind, key, value }, unix_now())
                .await?;
            if json {
                output::json(&serde_json::json!({"id": id}))?;
            } else {
                println!("reference value {id} added");
            }
        }
        RefvalueCmd::List { store } => {
            let s = open_store(&file, &store).await?;
            let rows = s.reference_value_rows().await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, r)| serde_json::json!({"id": id, "kind": r.kind, "key": r.key, "value": r.value}))
                    .collect();
                output::json(&v)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(id, r)| vec![id.to_string(), r.kind, r.key, r.value])
                    .collect();
                output::table(&["id", "kind", "key", "value"], &t);
            }
        }
        RefvalueCmd::Remove { id, store } => {
            let s = open_store(&file, &store).await?;
            if !s.remove_reference_value(id).await? {
                bail!("no reference value {id} (see `vouch refvalue list`)");
            }
            println!("reference value {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(file: FileConfig, cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let TokenCmd::Create {
        ttl,
        node_name,
        store,
    } = cmd;
    let ttl = config::parse_duration(&ttl)?;
    let s = open_store(&file, &store).await?;
    let t = vouch_server::create_join_token(s.as_ref(), ttl, node_name.as_deref()).await?;
    if json {
        output::json(&serde_json::json!({"token": t, "expires_at": unix_now() + ttl}))?;
    } else {
        println!("{t}");
        eprintln!(
            "single use, expires in {ttl}s; give it to the agent with --join-token or VOUCH_JOIN_TOKEN"
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn node(file: FileConfig, cmd: NodeCmd, json: bool) -> Result<ExitCode> {
    let NodeCmd::Reenroll {
        node_id,
        reason,
        by,
        ttl,
        store,
    } = cmd;
    let ttl = config::parse_duration(&ttl)?;
    let by = by.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{user}@{}", host.trim())
    });
    let s = open_store(&file, &store).await?;
    let rec =
        vouch_server::allow_tpm_reenrollment(s.as_ref(), &node_id, &reason, &by, ttl, unix_now())
            .await
            .with_context(|| format!("re-enrolling the TPM of node {node_id}"))?;
    if json {
        output::json(&rec)?;
    } else {
        println!(
            "node {} may enroll another TPM or AK for {ttl}s (re-enrolment {}, by {}: {})",
            rec.node_id, rec.id, rec.requested_by, rec.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn workload(file: FileConfig, cmd: WorkloadCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        WorkloadCmd::List { store } => {
            let s = open_store(&file, &store).await?;
            let list = s.workloads().await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .into_iter()
                    .map(|w| {
                        vec![
                            w.id,
                            w.status,
                            output::ago(w.last_attested_at),
                            output::ago(w.deadline),
                            w.reason,
                        ]
                    })
                    .collect();
                output::table(
                    &["workload", "status", "last evidence", "deadline", "reason"],
                    &rows,
                );
            }
        }
        WorkloadCmd::Show { id, store } => {
            let s = open_store(&file, &store).await?;
            let w = s
                .workload(&id)
                .await?
                .with_context(|| format!("no workload {id} (see `vouch workload list`)"))?;
            let last = match &w.last_attestation_id {
                Some(a) => s.attestation(a).await?,
                None => None,
            };
            if json {
                output::json(&serde_json::json!({"workload": w, "latest": last}))?;
            } else {
                println!("workload   {}", w.id);
                println!("status     {}", w.status);
                println!("reason     {}", w.reason);
                println!("evidence   {}", output::ago(w.last_attested_at));
                println!("deadline   {}", output::ago(w.deadline));
                if let Some(a) = last {
                    println!(
                        "latest     {} (policy {} v{})",
                        a.id, a.policy_id, a.policy_version
                    );
                    println!("trust      {}", a.trust_vector);
                    for r in &a.reasons {
                        println!("  {r}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn key(file: FileConfig, cmd: KeyCmd, json: bool) -> Result<ExitCode> {
    let KeyCmd::Rotate { alg, store } = cmd;
    let cfg = server_config(&file, &store);
    let alg = match alg.as_str() {
        "ES256" => vouch_server::SigningAlg::ES256,
        _ => vouch_server::SigningAlg::EdDSA,
    };
    let dir: PathBuf = cfg.data_dir.join("keys");
    let kid = vouch_server::Keyring::rotate(&dir, alg, unix_now())?;
    if json {
        output::json(&serde_json::json!({"kid": kid}))?;
    } else {
        println!(
            "new signing key {kid} is active; the previous key stays in the JWKS for {}s",
            cfg.retired_key_grace
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(file: FileConfig, cmd: RevokeCmd, json: bool) -> Result<ExitCode> {
    if cmd.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why");
    }
    let cfg = server_config(&file, &cmd.store);
    let s = open_store(&file, &cmd.store).await?;
    let by = cmd.by.clone().unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{user}@{}", host.trim())
    });
    let rec = vouch_server::revoke_offline(&cfg, s.as_ref(), cmd.kind, &cmd.id, &cmd.reason, &by)
        .await
        .with_context(|| format!("revoking {} {}", cmd.kind, cmd.id))?;
    if json {
        output::json(&rec)?;
    } else {
        println!(
            "{} {} revoked at epoch {} by {}: {}",
            rec.kind, rec.target, rec.epoch, rec.by, rec.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revocations(file: FileConfig, args: RevocationsArgs, json: bool) -> Result<ExitCode> {
    let s = open_store(&file, &args.store).await?;
    let mut after = args.after;
    let mut all = Vec::new();
    loop {
        let batch = s.revocations_since(after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.epoch;
        all.extend(batch);
    }
    if json {
        output::json(&all)?;
    } else if all.is_empty() {
        println!("no revocations above epoch {}", args.after);
    } else {
        for r in &all {
            println!(
                "{:>6}  {:<9} {:<40} {:<20} {}",
                r.epoch, r.kind, r.target, r.by, r.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ca(file: FileConfig, cmd: CaCmd, json: bool) -> Result<ExitCode> {
    let (CaCmd::Show { store } | CaCmd::Prepare { store } | CaCmd::Activate { store }) = &cmd;
    let cfg = server_config(&file, store);
    let td = vouch_identity::TrustDomain::parse(&cfg.trust_domain)?;
    let dir = cfg.spiffe_dir();
    let now = unix_now();
    let mut set = if cfg.svid_ca_pkcs11.is_some() {
        let p = cfg.svid_ca_pkcs11.as_ref().context("pkcs11")?;
        let active = vouch_identity::SvidCa::open_pkcs11(p, &dir, &td, cfg.svid_ca_ttl, now)?;
        vouch_identity::CaSet::around(&dir, &td, active)?
    } else {
        vouch_identity::CaSet::load_or_create(&dir, &td, cfg.svid_ca_ttl, now)?
    };
    match cmd {
        CaCmd::Show { .. } => {}
        CaCmd::Prepare { .. } => set.prepare(cfg.svid_ca_ttl, now)?,
        CaCmd::Activate { .. } => set.activate(cfg.svid_ttl, now)?,
    }
    let describe = |der: &[u8]| -> serde_json::Value {
        use sha2::Digest as _;
        let (from, until) = x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            })
            .unwrap_or((0, 0));
        serde_json::json!({
            "sha256": hex::encode(sha2::Sha256::digest(der)),
            "not_before": from,
            "not_after": until,
        })
    };
    let role = |der: &[u8]| {
        if der == set.active().cert_der() {
            "active"
        } else if set.next().is_some_and(|n| n.cert_der() == der) {
            "next"
        } else {
            "retired"
        }
    };
    let authorities: Vec<serde_json::Value> = set
        .authorities(now)
        .into_iter()
        .map(|d| {
            let mut v = describe(d);
            v["role"] = serde_json::json!(role(d));
            v
        })
        .collect();
    if json {
        output::json(&serde_json::json!({
            "trust_domain": td.as_str(),
            "sequence": set.sequence(),
            "authorities": authorities,
        }))?;
    } else {
        println!("trust domain {td}, bundle sequence {}", set.sequence());
        for a in &authorities {
            let until = a["not_after"].as_u64().unwrap_or(0);
            println!(
                "  {:<8} sha256:{}  expires in {} days (unix {until})",
                a["role"].as_str().unwrap_or(""),
                a["sha256"].as_str().unwrap_or(""),
                until.saturating_sub(now) / 86_400,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn entry(file: FileConfig, cmd: EntryCmd, json: bool) -> Result<ExitCode> {
    use vouch_identity::{Entry, Selector, SpiffeId};
    let row = |e: &Entry| {
        vec![
            e.id.clone(),
            e.spiffe_id.clone(),
            e.selectors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            format!("{}s", e.ttl),
        ]
    };
    match cmd {
        EntryCmd::Create {
            spiffe_id,
            selectors,
            ttl,
            store,
        } => {
            let id = SpiffeId::parse(&spiffe_id)?;
            let selectors = selectors
                .iter()
                .map(|s| Selector::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let e = Entry::new(
                uuid::Uuid::new_v4().to_string(),
                &id,
                selectors,
                config::parse_duration(&ttl)?,
                unix_now(),
            )?;
            open_store(&file, &store).await?.add_entry(&e).await?;
            if json {
                output::json(&e)?;
            } else {
                println!("entry {} grants {}", e.id, e.spiffe_id);
            }
        }
        EntryCmd::List { store } => {
            let list = open_store(&file, &store).await?.entries().await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                output::table(&["id", "spiffe id", "selectors", "ttl"], &rows);
            }
        }
        EntryCmd::Show { id, store } => {
            let list = open_store(&file, &store).await?.entries().await?;
            let e = list
                .iter()
                .find(|e| e.id == id)
                .with_context(|| format!("no entry {id} (see `vouch entry list`)"))?;
            if json {
                output::json(e)?;
            } else {
                output::table(&["id", "spiffe id", "selectors", "ttl"], &[row(e)]);
            }
        }
        EntryCmd::Delete { id, store } => {
            if !open_store(&file, &store).await?.delete_entry(&id).await? {
                bail!("no entry {id} (see `vouch entry list`)");
            }
            println!("entry {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Trust-domain CA certificates from a PEM file, as a SPIFFE verifier.
fn load_trust_bundle(path: &std::path::Path, td: &str) -> Result<Arc<vouch_rp::SpiffeVerifier>> {
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

async fn rp_watch(args: crate::cli::RpWatchArgs) -> Result<ExitCode> {
    use std::sync::RwLock;
    let bundle = load_trust_bundle(&args.trust_bundle, &args.trust_domain)?;
    let mut set = vouch_rp::RevocationSet::new(bundle);
    if args.state.exists() {
        let n = set
            .load(&args.state, unix_now())
            .with_context(|| format!("loading {}", args.state.display()))?;
        tracing::info!("{n} revocation(s) loaded from {}", args.state.display());
    }
    let set = Arc::new(RwLock::new(set));
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("rp-{}", args.listen));
    let auth = match &args.gossip_key {
        Some(p) => vouch_rp::gossip::GossipAuth::Keys(vouch_rp::gossip::GossipKeys::from_files(
            p,
            &args.accept_gossip_keys,
        )?),
        // clap requires --gossip-key unless --insecure-gossip.
        None => vouch_rp::gossip::GossipAuth::Insecure,
    };
    let mut cfg = vouch_rp::gossip::GossipConfig::new(
        &node_id,
        &args.trust_domain,
        args.listen,
        args.seeds,
        auth,
    );
    cfg.advertise = args.advertise.unwrap_or(args.listen);
    cfg.interval = std::time::Duration::from_millis(args.interval_ms.max(10));
    let gossip = vouch_rp::gossip::Gossip::join(cfg, set.clone()).await?;
    let mut watch = gossip.watch();
    let report = |set: &vouch_rp::RevocationSet| -> Result<()> {
        let v = set.view();
        let revoked: Vec<serde_json::Value> = set
            .records()
            .map(|c| serde_json::json!({"epoch": c.epoch, "kind": c.kind, "target": c.target}))
            .collect();
        // Validly signed records for an epoch whose first record says something else: kept,
        // revoking too, as evidence that a replica misbehaved.
        let conflicts: Vec<serde_json::Value> = set
            .conflicts()
            .map(|c| {
                serde_json::json!({
                    "epoch": c.epoch, "kind": c.kind, "target": c.target,
                    "by": c.by, "iss": c.iss,
                })
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({
                "node": node_id,
                "unix_ms": now_ms,
                "complete_through": v.complete_through,
                "head_epoch": v.head_epoch,
                "head_iat": v.head_iat,
                "revoked": revoked,
                "conflicts": conflicts,
            })
        );
        set.save(&args.state)
            .with_context(|| format!("saving {}", args.state.display()))
    };
    if let Ok(s) = set.read() {
        report(&s)?;
    }
    loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Ok(s) = set.read() {
                    report(&s)?;
                }
            }
            () = shutdown_signal() => break,
        }
    }
    gossip.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn quorum(cmd: crate::cli::QuorumCmd, json: bool) -> Result<ExitCode> {
    use crate::cli::QuorumCmd;
    use vouch_server::quorum::{dealer, dkg};
    let written = match cmd {
        QuorumCmd::Dealer {
            threshold,
            signers,
            out,
        } => dealer(threshold, signers, &out)?,
        QuorumCmd::Dkg {
            step,
            id,
            threshold,
            signers,
            dir,
        } => match step.as_str() {
            "round1" => vec![dkg::round1(id, threshold, signers, &dir)?],
            "round2" => dkg::round2(id, signers, &dir)?,
            _ => vec![dkg::finish(id, signers, &dir)?],
        },
    };
    if json {
        output::json(&written)?;
    } else {
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
