//! `vouch dev`: a verifier on embedded SQLite and an agent attesting this machine, in one
//! process, with the dashboard up.

use anyhow::{Context, Result};
use base64::Engine as _;
use std::process::ExitCode;

use vouch_agent::{Agent, AgentConfig};
use vouch_core::{ArStatus, SoftwareMeasurements};
use vouch_policy::ReferenceValue;
use vouch_rp::{Requirements, ResultVerifier};
use vouch_server::{ServerConfig, unix_now};
use vouch_store::Store;

use crate::cli::DevArgs;
use crate::commands::describe;
use crate::output;

const WORKLOAD: &str = "vouch-dev";
/// The audience the dev agent requests its results for, and that the printed `vouch verify`
/// command requires (a relying party always names the audience it accepts).
const AUDIENCE: &str = "vouch-dev-rp";

/// Dev mode trusts this machine as it is at start: the workload's executable and measured files
/// become reference values (replacing those of an earlier run), and are printed.
async fn trust_current_state(agent: &mut Agent, store: &dyn Store) -> Result<Vec<ReferenceValue>> {
    let ev = agent.evidence("dev-mode-trust-on-start")?;
    let m: SoftwareMeasurements = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&ev.payload)?,
    )?;
    let mut want = vec![ReferenceValue {
        kind: "executable".into(),
        key: m.workload.name.clone(),
        value: m.workload.exe_sha256.clone(),
    }];
    for f in &m.files {
        if let Some(d) = &f.sha256 {
            want.push(ReferenceValue {
                kind: "file".into(),
                key: f.path.clone(),
                value: d.clone(),
            });
        }
    }
    for (id, rv) in store.reference_value_rows().await? {
        let stale = want
            .iter()
            .any(|w| w.kind == rv.kind && w.key == rv.key && w.value != rv.value);
        if stale {
            store.remove_reference_value(id).await?;
        }
    }
    for w in &want {
        store.add_reference_value(w, unix_now()).await?;
    }
    Ok(want)
}

/// Dev mode grants this user's processes an identity while the machine attests affirming:
/// `spiffe://<trust domain>/dev/uid-<uid>` for selectors `vouch:workload:vouch-dev` and
/// `unix:uid:<uid>`, created once.
async fn dev_entry(store: &dyn Store, trust_domain: &str) -> Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self")?.uid();
    let td = vouch_identity::TrustDomain::parse(trust_domain)?;
    let id = vouch_identity::SpiffeId::new(&td, &format!("/dev/uid-{uid}"))?;
    if !store
        .entries()
        .await?
        .iter()
        .any(|e| e.spiffe_id == id.to_string())
    {
        let selectors = [
            format!("vouch:workload:{WORKLOAD}"),
            format!("unix:uid:{uid}"),
        ]
        .iter()
        .map(|s| vouch_identity::Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
        let entry = vouch_identity::Entry::new(
            uuid::Uuid::new_v4().to_string(),
            &id,
            selectors,
            3600,
            unix_now(),
        )?;
        store.add_entry(&entry).await?;
    }
    Ok(id.to_string())
}

pub async fn run(args: DevArgs, file: &crate::config::FileConfig, json: bool) -> Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let listen = args.listen.unwrap_or_else(|| {
        if args.once {
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into())
        } else {
            ([127, 0, 0, 1], 8443).into()
        }
    });
    // Dev mode is the defaults, but for the listeners' limits, which the configuration (file
    // or `VOUCH_SERVER_*`/`VOUCH_AGENT_*`) may set as for a real deployment.
    let limits = &file.server;
    let cfg = ServerConfig {
        listen,
        data_dir: dir.join("server"),
        attest_interval: args.interval,
        allow_sample_evidence: true,
        max_connections: limits.max_connections,
        max_connections_per_client: limits.max_connections_per_client,
        handshake_timeout: limits.handshake_timeout,
        header_read_timeout: limits.header_read_timeout,
        request_timeout: limits.request_timeout,
        idle_timeout: limits.idle_timeout,
        max_header_bytes: limits.max_header_bytes,
        ..ServerConfig::default()
    };
    // The dev stack owns its database: it migrates it (a verifier on its own never does).
    let store = vouch_server::open_store_with(&cfg, vouch_store::Migrations::Apply).await?;
    let running = vouch_server::start_with_store(cfg.clone(), store.clone())
        .await
        .with_context(|| {
            format!("starting the verifier on {listen} (pass --listen to pick another address)")
        })?;

    let conf = dir.join("workload.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            "# A configuration file measured by `vouch dev`.\n# Change it and the next attestation turns contraindicated.\nlisten = 127.0.0.1:5432\n",
        )?;
    }
    // `vouch policy list --data-dir .vouch/dev/server` and the like reach this verifier.
    crate::commands::context::publish(
        &cfg.data_dir,
        &running.base_url,
        running.ca_cert.as_deref(),
        cfg.tls_cert.as_deref(),
    )?;
    let mut files = vec![conf.clone()];
    files.extend(args.files.iter().cloned());
    let agent_dir = dir.join("agent");
    let join_token = if agent_dir.join("enrollment.json").exists() {
        None
    } else {
        Some(vouch_server::create_join_token(store.as_ref(), 300, Some("this-machine")).await?)
    };
    let mut agent = Agent::new(AgentConfig {
        servers: vec![running.base_url.clone()],
        ca_cert: running.ca_cert.clone(),
        data_dir: agent_dir.clone(),
        join_token,
        workload_name: WORKLOAD.into(),
        exe: None,
        files,
        image_digest: None,
        result_audience: Some(AUDIENCE.into()),
        interval: args.interval,
        workload_api_socket: Some(agent_dir.join("api.sock")),
        workload_api_max_connections: file.agent.workload_api_max_connections,
        workload_api_max_connections_per_uid: file.agent.workload_api_max_connections_per_uid,
        workload_api_idle_timeout: file.agent.workload_api_idle_timeout,
        trust_domain: cfg.trust_domain.clone(),
        ..AgentConfig::default()
    })
    .await?;
    let identity = dev_entry(store.as_ref(), &cfg.trust_domain).await?;
    let trusted = trust_current_state(&mut agent, store.as_ref()).await?;
    let first = agent.attest_once().await?;
    let jwks = agent.client().jwks().await?;
    let rp = ResultVerifier::from_jwks_json(&jwks)?;
    let inspect = Requirements {
        accept_any_status: true,
        ..Requirements::for_audience(AUDIENCE)
    };
    let verified = rp.verify(&first.result, &inspect)?;
    let ca = running
        .ca_cert
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let verify_cmd = format!(
        "vouch verify --jwks {}/.well-known/jwks.json --ca-cert {ca} --audience {AUDIENCE} {}",
        running.base_url,
        agent_dir.join("result.jwt").display()
    );

    if args.once {
        if json {
            output::json(&verified.ear)?;
        } else {
            println!("{}", describe(&first));
            println!("result saved in {}", agent_dir.join("result.jwt").display());
        }
        running.shutdown().await;
        return Ok(if first.status == ArStatus::Affirming {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    println!("Vouch dev mode");
    println!(
        "  verifier   {} (SQLite at {})",
        running.base_url,
        cfg.database_path().display()
    );
    let read_token = std::fs::read_to_string(cfg.data_dir.join("keys/read.token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    println!(
        "  dashboard  {}/dashboard/login (sign in with the read token {read_token})",
        running.base_url
    );
    println!(
        "  read token {} (Bearer credential of /v1/workloads, /v1/results, /metrics)",
        cfg.data_dir.join("keys/read.token").display()
    );
    println!("  CA         {ca}");
    println!("  trusted this machine's current state as reference values:");
    for t in &trusted {
        println!("    {} {} {}", t.kind, t.key, t.value);
    }
    println!("  result     {}", agent_dir.join("result.jwt").display());
    println!("  identity   {identity} for processes of this user, from the SPIFFE Workload API:");
    println!(
        "             SPIFFE_ENDPOINT_SOCKET=unix://{}",
        agent_dir.join("api.sock").display()
    );
    println!("  verify     {verify_cmd}");
    println!(
        "  try        edit {} and watch the status turn contraindicated",
        conf.display()
    );
    println!();
    println!("[{}] {}", output::clock(unix_now()), describe(&first));
    let mut first_round = true;
    agent
        .run(
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |r| {
                // `run` attests at once; the first round was already printed above.
                if std::mem::take(&mut first_round) {
                    return;
                }
                match r {
                    Ok(r) => println!("[{}] {}", output::clock(unix_now()), describe(r)),
                    Err(e) => eprintln!("[{}] attestation failed: {e}", output::clock(unix_now())),
                }
            },
        )
        .await?;
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
