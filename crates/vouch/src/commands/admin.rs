//! Management commands: policies, reference values, join tokens, workloads, nodes (TPM
//! re-enrolment), registration entries and revocation. Each is a call to the verifier's
//! authenticated admin API ([`Api`]); none opens the verifier's store (issue 16 item 1). The
//! verifier appends every change to its audit log with the caller's name.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::ExitCode;

use vouch_policy::{CompiledPolicy, PolicySource, ReferenceValue, ReferenceValues};

use super::remote::{Api, seg};
use super::{appraise_with, exit_code, read_refvalues};
use crate::cli::{
    EntryCmd, NodeCmd, PolicyCmd, RefvalueCmd, RevocationsArgs, RevokeCmd, TokenCmd, WorkloadCmd,
};
use crate::config;
use crate::output;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `vouch policy`: add, list, show, activate or test policies.
pub(crate) async fn policy(cmd: PolicyCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Add {
            id,
            file: path,
            no_activate,
            api,
        } => {
            let rego = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Refuse a policy that does not compile before sending it (the verifier checks too).
            CompiledPolicy::compile(
                &PolicySource {
                    id: id.clone(),
                    version: 0,
                    rego: rego.clone(),
                },
                &ReferenceValues::default(),
            )?;
            let body = json!({ "id": id, "rego": rego, "activate": !no_activate });
            let r = Api::new(&api)?.post("/v1/policies", &body).await?;
            if json {
                output::json(&r)?;
            } else {
                println!(
                    "policy {id} v{} added{}",
                    s(&r["version"]),
                    if no_activate { "" } else { " and active" }
                );
            }
        }
        PolicyCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/policies").await?;
            output::list(
                &list,
                json,
                &["id", "version", "active", "sha256", "created"],
                |p| {
                    let sha = s(&p["sha256"]);
                    vec![
                        s(&p["id"]),
                        s(&p["version"]),
                        if p["active"] == true { "yes" } else { "" }.into(),
                        sha.get(..16).unwrap_or(&sha).to_string(),
                        output::ago(p["created_at"].as_u64()),
                    ]
                },
            )?;
        }
        PolicyCmd::Show { id, version, api } => {
            let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let p = Api::new(&api)?
                .get(&format!("/v1/policies/{}{q}", seg(&id)))
                .await?;
            if json {
                output::json(&p)?;
            } else {
                println!(
                    "# policy {} v{} sha256 {}",
                    s(&p["id"]),
                    s(&p["version"]),
                    s(&p["sha256"])
                );
                print!("{}", s(&p["rego"]));
            }
        }
        PolicyCmd::Versions { id, api } => {
            let list = Api::new(&api)?
                .get(&format!("/v1/policies/{}/versions", seg(&id)))
                .await?;
            output::list(&list, json, &["version", "sha256", "created"], |p| {
                vec![
                    s(&p["version"]),
                    s(&p["sha256"]),
                    output::ago(p["created_at"].as_u64()),
                ]
            })?;
        }
        PolicyCmd::Activate { id, api } => {
            Api::new(&api)?
                .post(&format!("/v1/policies/{}/activate", seg(&id)), &json!({}))
                .await?;
            println!("policy {id} is active");
        }
        PolicyCmd::Test {
            policy,
            input,
            refvalues,
            from_server,
            api,
        } => {
            let claims: Value = serde_json::from_str(
                &std::fs::read_to_string(&input)
                    .with_context(|| format!("reading {}", input.display()))?,
            )
            .with_context(|| format!("{} is not JSON", input.display()))?;
            let mut values = match &refvalues {
                Some(p) => read_refvalues(p)?,
                None => Vec::new(),
            };
            if from_server {
                let rows = Api::new(&api)?.get("/v1/refvalues").await?;
                values.extend(
                    serde_json::from_value::<Vec<ReferenceValue>>(rows)
                        .context("the verifier's reference values")?,
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

/// `vouch refvalue`: add, list, remove, import or learn reference values.
pub(crate) async fn refvalue(cmd: RefvalueCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        RefvalueCmd::Add {
            kind,
            key,
            value,
            api,
        } => {
            if kind.is_empty() || key.is_empty() {
                bail!("kind and key must not be empty");
            }
            let body = json!({ "kind": kind, "key": key, "value": value });
            let r = Api::new(&api)?.post("/v1/refvalues", &body).await?;
            if json {
                output::json(&r)?;
            } else {
                println!("reference value {} added", s(&r["id"]));
            }
        }
        RefvalueCmd::List { api } => {
            let rows = Api::new(&api)?.get("/v1/refvalues").await?;
            if json {
                output::json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| vec![s(&r["id"]), s(&r["kind"]), s(&r["key"]), s(&r["value"])])
                    .collect();
                output::table(&["id", "kind", "key", "value"], &t);
            }
        }
        RefvalueCmd::Remove { id, api } => {
            Api::new(&api)?
                .delete(&format!("/v1/refvalues/{id}"))
                .await?;
            println!("reference value {id} removed");
        }
        RefvalueCmd::Import { file, format, api } => {
            let text = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let csv = match format.as_deref() {
                Some(f) => f == "csv",
                None => {
                    file.extension().is_some_and(|e| e == "csv")
                        || !text.trim_start().starts_with('[')
                }
            };
            let (values, rows) = if csv {
                super::refcsv::parse(&text)?
            } else {
                let v: Vec<Value> = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} must be a JSON array of {{\"kind\", \"key\", \"value\"}}",
                        file.display()
                    )
                })?;
                let n = v.len();
                (v, (1..=n).map(|i| format!("element {i}")).collect())
            };
            let n = values.len();
            let r = Api::new(&api)?
                .post("/v1/refvalues/import", &json!({ "values": values }))
                .await
                .map_err(|e| super::refcsv::name_row(e, &rows))?;
            if json {
                output::json(&r)?;
            } else {
                println!(
                    "imported {n} reference values in one transaction ({} new)",
                    s(&r["added"])
                );
            }
        }
        RefvalueCmd::Learn { node, apply, api } => {
            let c = Api::new(&api)?;
            let learned = c
                .get(&format!("/v1/refvalues/learn/{}", seg(&node)))
                .await?;
            if apply {
                let values = learned["values"].clone();
                let r = c
                    .post("/v1/refvalues/import", &json!({ "values": values }))
                    .await?;
                if json {
                    output::json(&r)?;
                } else {
                    println!(
                        "imported {} reference values learned from node {node} ({} new)",
                        s(&r["count"]),
                        s(&r["added"])
                    );
                }
            } else {
                // For review: the values alone, ready for `vouch refvalue import`.
                output::json(&learned["values"])?;
                eprintln!(
                    "{} candidates from node {node}'s latest attestations; review them, then \
                     `vouch refvalue import FILE` or run again with --apply",
                    learned["values"].as_array().map_or(0, Vec::len)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch token`: make a single-use join token for one agent, or list them.
pub(crate) async fn token(cmd: TokenCmd, json: bool) -> Result<ExitCode> {
    let (ttl, node_name, api) = match cmd {
        TokenCmd::Create {
            ttl,
            node_name,
            api,
        } => (ttl, node_name, api),
        TokenCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/tokens").await?;
            output::list(
                &list,
                json,
                &[
                    "sha256",
                    "node name",
                    "state",
                    "used by",
                    "created",
                    "expires",
                ],
                |t| {
                    let sha = s(&t["token_sha256"]);
                    vec![
                        sha.get(..16).unwrap_or(&sha).to_string(),
                        s(&t["node_name"]),
                        s(&t["state"]),
                        s(&t["used_by"]),
                        output::ago(t["created_at"].as_u64()),
                        output::ago(t["expires_at"].as_u64()),
                    ]
                },
            )?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let ttl = config::parse_duration(&ttl)?;
    let r = Api::new(&api)?
        .post("/v1/tokens", &json!({ "ttl": ttl, "node_name": node_name }))
        .await?;
    if json {
        output::json(&r)?;
    } else {
        println!("{}", s(&r["token"]));
        eprintln!(
            "single use, expires in {ttl}s; give it to the agent with --join-token or VOUCH_JOIN_TOKEN"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch workload`: list workloads or show one with its latest attestation.
pub(crate) async fn workload(cmd: WorkloadCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        WorkloadCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/workloads").await?;
            output::list(
                &list,
                json,
                &["workload", "status", "last evidence", "deadline", "reason"],
                |w| {
                    vec![
                        s(&w["id"]),
                        s(&w["status"]),
                        output::ago(w["last_attested_at"].as_u64()),
                        output::ago(w["deadline"].as_u64()),
                        s(&w["reason"]),
                    ]
                },
            )?;
        }
        WorkloadCmd::Show { id, api } => {
            let (node, name) = id
                .split_once('/')
                .with_context(|| format!("a workload id is NODE/NAME, not {id}"))?;
            let v = Api::new(&api)?
                .get(&format!("/v1/workloads/{}/{}/latest", seg(node), seg(name)))
                .await?;
            if json {
                output::json(&v)?;
            } else {
                let w = &v["workload"];
                println!("workload   {}", s(&w["id"]));
                println!("status     {}", s(&w["status"]));
                println!("reason     {}", s(&w["reason"]));
                println!("evidence   {}", output::ago(w["last_attested_at"].as_u64()));
                println!("deadline   {}", output::ago(w["deadline"].as_u64()));
                let a = &v["latest"];
                if !a.is_null() {
                    println!(
                        "latest     {} (policy {} v{})",
                        s(&a["id"]),
                        s(&a["policy_id"]),
                        s(&a["policy_version"])
                    );
                    println!("trust      {}", a["trust_vector"]);
                    for r in a["reasons"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        println!("  {}", s(r));
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch node`: list, show, or let a TPM-bound node enroll another TPM or AK once.
pub(crate) async fn node(cmd: NodeCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        NodeCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/nodes").await?;
            output::list(&list, json, &["node", "hostname", "enrolled"], |n| {
                vec![
                    s(&n["id"]),
                    s(&n["hostname"]),
                    output::ago(n["created_at"].as_u64()),
                ]
            })?;
        }
        NodeCmd::Show { node_id, api } => {
            let v = Api::new(&api)?
                .get(&format!("/v1/nodes/{}", seg(&node_id)))
                .await?;
            if json {
                output::json(&v)?;
            } else {
                println!("node       {}", s(&v["node"]["id"]));
                println!("hostname   {}", s(&v["node"]["hostname"]));
                if let Some(m) = v["attestation"]["method"].as_str() {
                    println!("attested   {m}");
                }
                if !v["tpm"].is_null() {
                    let bound = if v["tpm"]["bound_at"].is_null() {
                        "not bound"
                    } else {
                        "bound"
                    };
                    println!("tpm        EK {} ({bound})", s(&v["tpm"]["ek_key"]));
                }
                if !v["revoked"].is_null() {
                    println!("revoked    {}", s(&v["revoked"]["reason"]));
                }
                for w in v["workloads"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!("  {} {}", s(&w["id"]), s(&w["status"]));
                }
            }
        }
        NodeCmd::Reenroll {
            node_id,
            reason,
            by,
            ttl,
            api,
        } => {
            let ttl = config::parse_duration(&ttl)?;
            let by = by.unwrap_or_else(operator);
            let body = json!({ "reason": reason, "by": by, "ttl": ttl });
            let rec = Api::new(&api)?
                .post(&format!("/v1/nodes/{}/tpm/reenroll", seg(&node_id)), &body)
                .await
                .with_context(|| format!("re-enrolling the TPM of node {node_id}"))?;
            if json {
                output::json(&rec)?;
            } else {
                println!(
                    "node {} may enroll another TPM or AK for {ttl}s (re-enrolment {}, by {}: {})",
                    s(&rec["node_id"]),
                    s(&rec["id"]),
                    s(&rec["requested_by"]),
                    s(&rec["reason"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch entry`: create, list, show or delete registration entries.
pub(crate) async fn entry(cmd: EntryCmd, json: bool) -> Result<ExitCode> {
    use vouch_identity::{Selector, SpiffeId};
    let row = |e: &Value| {
        let sel: Vec<String> = e["selectors"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(s)
            .collect();
        vec![
            s(&e["id"]),
            s(&e["spiffe_id"]),
            sel.join(" "),
            format!("{}s", s(&e["ttl"])),
        ]
    };
    match cmd {
        EntryCmd::Create {
            spiffe_id,
            selectors,
            ttl,
            api,
        } => {
            // Checked here first, for the same messages the verifier would give.
            SpiffeId::parse(&spiffe_id)?;
            for sel in &selectors {
                Selector::parse(sel)?;
            }
            let ttl = config::parse_duration(&ttl)?;
            let body = json!({ "spiffe_id": spiffe_id, "selectors": selectors, "ttl": ttl });
            let e = Api::new(&api)?.post("/v1/entries", &body).await?;
            if json {
                output::json(&e)?;
            } else {
                println!("entry {} grants {}", s(&e["id"]), s(&e["spiffe_id"]));
            }
        }
        EntryCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/entries").await?;
            output::list(&list, json, &["id", "spiffe id", "selectors", "ttl"], row)?;
        }
        EntryCmd::Show { id, api } => {
            let e = Api::new(&api)?
                .get(&format!("/v1/entries/{}", seg(&id)))
                .await?;
            if json {
                output::json(&e)?;
            } else {
                output::table(&["id", "spiffe id", "selectors", "ttl"], &[row(&e)]);
            }
        }
        EntryCmd::Delete { id, api } => {
            Api::new(&api)?
                .delete(&format!("/v1/entries/{}", seg(&id)))
                .await?;
            println!("entry {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch revoke`: revoke a workload, node, agent key, SVID or result, with the reason recorded.
pub(crate) async fn revoke(cmd: RevokeCmd, json: bool) -> Result<ExitCode> {
    if cmd.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let body = json!({
        "kind": cmd.kind.to_string(), "target": cmd.id, "reason": cmd.reason,
        "by": cmd.by.clone().unwrap_or_else(operator),
    });
    let rec = Api::new(&cmd.api)?
        .post("/v1/revocations", &body)
        .await
        .with_context(|| format!("revoking {} {}", cmd.kind, cmd.id))?;
    if json {
        output::json(&rec)?;
    } else {
        println!(
            "{} {} revoked at epoch {} by {}: {}",
            s(&rec["kind"]),
            s(&rec["target"]),
            s(&rec["epoch"]),
            s(&rec["by"]),
            s(&rec["reason"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch revocations`: list the revocations above an epoch.
pub(crate) async fn revocations(args: RevocationsArgs, json: bool) -> Result<ExitCode> {
    let c = Api::new(&args.api)?;
    let mut after = args.after;
    let mut all: Vec<Value> = Vec::new();
    loop {
        let batch = c.get(&format!("/v1/revocations/log?after={after}")).await?;
        let batch = batch.as_array().cloned().unwrap_or_default();
        let Some(last) = batch.last().and_then(|r| r["epoch"].as_u64()) else {
            break;
        };
        if last <= after {
            bail!("the verifier's revocation log went backwards at epoch {last}");
        }
        after = last;
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
                s(&r["epoch"]),
                s(&r["kind"]),
                s(&r["target"]),
                s(&r["by"]),
                s(&r["reason"])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who decides, when `--by` is not given: `$USER@hostname` (the verifier's audit log records
/// the credential's name as the actor besides).
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}
