//! `vouch anomalies`: the fleet anomaly flags the verifier raised (issue 16 item 5), read
//! through its API (`GET /v1/anomalies`, any role of the tenant).

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;
use std::process::ExitCode;

use super::remote::{Api, seg};
use crate::cli::AdminArgs;

/// Which flags to list.
#[derive(Debug, Args)]
pub struct AnomaliesArgs {
    /// Only this workload group (the workload's name).
    #[arg(long)]
    pub group: Option<String>,
    /// Only this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only this kind: new_measurement, fleet_change, tpm_counter, rate_outlier,
    /// latency_outlier, cloned_measurements.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only flags raised in the last SECONDS (default: all).
    #[arg(long, value_name = "SECONDS")]
    pub within: Option<u64>,
    /// At most this many, newest first (the verifier gives at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub api: AdminArgs,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The query string of `a`.
fn query(a: &AnomaliesArgs, now: u64) -> String {
    let mut q = vec![format!("limit={}", a.limit)];
    for (k, v) in [("group", &a.group), ("node", &a.node), ("kind", &a.kind)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", seg(v)));
        }
    }
    if let Some(w) = a.within {
        q.push(format!("since={}", now.saturating_sub(w)));
    }
    q.join("&")
}

/// `vouch anomalies`.
pub(crate) async fn run(a: AnomaliesArgs, json: bool) -> Result<ExitCode> {
    let c = Api::new(&a.api)?;
    let v = c
        .get(&format!(
            "/v1/anomalies?{}",
            query(&a, vouch_server::unix_now())
        ))
        .await?;
    let Some(flags) = v["anomalies"].as_array() else {
        bail!("the verifier's answer has no anomalies list");
    };
    if json {
        crate::output::json(flags)?;
    } else if flags.is_empty() {
        println!("no anomaly flags");
    } else {
        for f in flags {
            println!(
                "{:<20} {:<12} {:<24} x{:<4} last {}  {}",
                s(&f["kind"]),
                s(&f["group"]),
                s(&f["node_id"]),
                s(&f["count"]),
                s(&f["last_seen"]),
                s(&f["reason"])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: AnomaliesArgs,
    }

    #[test]
    fn query_carries_the_filters_encoded() {
        let t = T::parse_from([
            "t",
            "--group",
            "web app",
            "--kind",
            "fleet_change",
            "--within",
            "60",
            "--limit",
            "5",
        ]);
        assert_eq!(
            query(&t.a, 1000),
            "limit=5&group=web%20app&kind=fleet_change&since=940"
        );
    }
}
