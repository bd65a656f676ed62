//! Management commands on the verifier's store: policies, reference values, join tokens,
//! workloads, nodes (TPM re-enrolment), registration entries and revocation.

use anyhow::{Context, Result, bail};
use std::process::ExitCode;

use vouch_policy::{CompiledPolicy, PolicySource, ReferenceValue, ReferenceValues};
use vouch_server::unix_now;

use super::{appraise_with, exit_code, open_store, read_refvalues, server_config};
use crate::cli::{
    EntryCmd, NodeCmd, PolicyCmd, RefvalueCmd, RevocationsArgs, RevokeCmd, TokenCmd, WorkloadCmd,
};
use crate::config::{self, FileConfig};
use crate::output;

/// Append a change made by this command to the audit log (issue 16 item 3), naming the local
/// user as its actor. The change is already made: an error here says it is not in the log.
async fn audit(
    s: &dyn vouch_store::Store,
    kind: &str,
    subject: &str,
    body: serde_json::Value,
) -> Result<()> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let event = vouch_store::AuditEvent {
        time: unix_now(),
        kind: kind.into(),
        actor: format!("cli:{user}"),
        subject: subject.into(),
        body,
    };
    s.append_audit(&event)
        .await
        .context("the change is made but could not be appended to the audit log")?;
    Ok(())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// `vouch policy`: add, list, show, activate or test policies.
pub(crate) async fn policy(file: FileConfig, cmd: PolicyCmd, json: bool) -> Result<ExitCode> {
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
            let body = serde_json::json!({
                "version": v, "sha256": sha256_hex(rego.as_bytes()), "active": !no_activate,
            });
            audit(s.as_ref(), "policy.add", &id, body).await?;
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
            audit(s.as_ref(), "policy.activate", &id, serde_json::json!({})).await?;
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
            return Ok(exit_code(a.status));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch refvalue`: add, list or remove reference values.
pub(crate) async fn refvalue(file: FileConfig, cmd: RefvalueCmd, json: bool) -> Result<ExitCode> {
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
            let body = serde_json::json!({ "kind": kind, "key": key, "value": value });
            let id = s
                .add_reference_value(&ReferenceValue { kind, key, value }, unix_now())
                .await?;
            audit(s.as_ref(), "refvalue.add", &id.to_string(), body).await?;
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
            let old = s
                .reference_value_rows()
                .await?
                .into_iter()
                .find(|r| r.0 == id);
            if !s.remove_reference_value(id).await? {
                bail!("no reference value {id} (see `vouch refvalue list`)");
            }
            let body = match old {
                Some((_, r)) => {
                    serde_json::json!({ "kind": r.kind, "key": r.key, "value": r.value })
                }
                None => serde_json::json!({}),
            };
            audit(s.as_ref(), "refvalue.remove", &id.to_string(), body).await?;
            println!("reference value {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch token create`: a single-use join token for one agent.
pub(crate) async fn token(file: FileConfig, cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let TokenCmd::Create {
        ttl,
        node_name,
        store,
    } = cmd;
    let ttl = config::parse_duration(&ttl)?;
    let s = open_store(&file, &store).await?;
    let t = vouch_server::create_join_token(s.as_ref(), ttl, node_name.as_deref()).await?;
    let body = serde_json::json!({ "ttl": ttl, "token_sha256": sha256_hex(t.as_bytes()) });
    let subject = node_name.as_deref().unwrap_or("");
    audit(s.as_ref(), "token.create", subject, body).await?;
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

/// `vouch workload`: list workloads or show one with its latest attestation.
pub(crate) async fn workload(file: FileConfig, cmd: WorkloadCmd, json: bool) -> Result<ExitCode> {
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

/// `vouch node reenroll`: let a TPM-bound node enroll another TPM or AK, once.
pub(crate) async fn node(file: FileConfig, cmd: NodeCmd, json: bool) -> Result<ExitCode> {
    let NodeCmd::Reenroll {
        node_id,
        reason,
        by,
        ttl,
        store,
    } = cmd;
    let ttl = config::parse_duration(&ttl)?;
    let by = by.unwrap_or_else(operator);
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

/// `vouch entry`: create, list, show or delete registration entries.
pub(crate) async fn entry(file: FileConfig, cmd: EntryCmd, json: bool) -> Result<ExitCode> {
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
            let s = open_store(&file, &store).await?;
            s.add_entry(&e).await?;
            audit(s.as_ref(), "entry.add", &e.id, serde_json::to_value(&e)?).await?;
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
            let s = open_store(&file, &store).await?;
            if !s.delete_entry(&id).await? {
                bail!("no entry {id} (see `vouch entry list`)");
            }
            audit(s.as_ref(), "entry.delete", &id, serde_json::json!({})).await?;
            println!("entry {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch revoke`: revoke a workload, node, agent key, SVID or result, with the reason recorded.
pub(crate) async fn revoke(file: FileConfig, cmd: RevokeCmd, json: bool) -> Result<ExitCode> {
    if cmd.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why");
    }
    let cfg = server_config(&file, &cmd.store);
    let s = open_store(&file, &cmd.store).await?;
    let by = cmd.by.clone().unwrap_or_else(operator);
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

/// `vouch revocations`: list the revocations above an epoch.
pub(crate) async fn revocations(
    file: FileConfig,
    args: RevocationsArgs,
    json: bool,
) -> Result<ExitCode> {
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

/// Who decides, when `--by` is not given: `$USER@hostname`.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}
