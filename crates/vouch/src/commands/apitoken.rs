//! `vouch api-token`: a tenant's scoped API tokens, through the verifier's API (issue 16
//! item 2). The tenant is the one `--tenant` names (its routes `/t/<tenant>/…`), and the token
//! used must be that tenant's admin's.

use anyhow::Result;
use serde_json::{Value, json};
use std::process::ExitCode;

use super::remote::{Api, seg};
use crate::cli::ApiTokenCmd;
use crate::output;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Run an `api-token` subcommand.
pub(crate) async fn run(cmd: ApiTokenCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        ApiTokenCmd::Create { name, role, api } => {
            let r = Api::new(&api)?
                .post("/v1/api-tokens", &json!({ "name": name, "role": role }))
                .await?;
            if json {
                output::json(&r)?;
            } else {
                println!("{}", s(&r["token"]));
                eprintln!(
                    "{} token {:?} of tenant {}: shown once, keep it in a file (mode 0600) and \
                     pass it with --token-file",
                    s(&r["role"]),
                    s(&r["name"]),
                    s(&r["tenant"])
                );
            }
        }
        ApiTokenCmd::List { api } => {
            let list = Api::new(&api)?.get("/v1/api-tokens").await?;
            output::list(&list, json, &["name", "role", "created"], |t| {
                vec![
                    s(&t["name"]),
                    s(&t["role"]),
                    output::ago(t["created_at"].as_u64()),
                ]
            })?;
        }
        ApiTokenCmd::Revoke { name, api } => {
            Api::new(&api)?
                .delete(&format!("/v1/api-tokens/{}", seg(&name)))
                .await?;
            if json {
                output::json(&json!({ "revoked": name }))?;
            } else {
                println!("revoked token {name:?}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
