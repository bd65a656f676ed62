//! Fleet anomaly flags through a running verifier (issue 16 item 5): a real agent's workload
//! executable changes on its node; the verifier flags the measurement its group never saw,
//! stores it, appends it to the audit log and serves it at `GET /v1/anomalies` (read role
//! only); the default policy ignores it (blocks nothing), a policy that reads
//! `input.anomalies` contraindicates; the flag and the group's baseline survive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use serde_json::Value;
use vouch_core::ArStatus;
use vouch_server::{start_with_store, unix_now};

fn http(ca: &std::path::Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn get(base: &str, ca: &std::path::Path, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http(ca).get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The default policy with one more rule: any anomaly flag on the node contraindicates.
fn strict_policy() -> String {
    format!(
        "{}\n\ndeny contains {{\"rule\": \"anomaly\", \"claim\": \"executables\", \
         \"msg\": sprintf(\"anomaly %s: %s\", [a.kind, a.reason])}} if {{\n\
         \tsome a in input.anomalies\n\
         \ta.kind == \"new_measurement\"\n}}\n",
        vouch_policy::DEFAULT_POLICY
    )
}

/// Whether a flag is about a running process's executable: this machine is shared with other
/// builds, whose compilers and linkers start and stop while the test runs, and a process
/// executable the group has not seen is rightly flagged. The tests look at the others.
fn about_processes(detail: &Value) -> bool {
    detail["kind"] == "process"
}

/// Flags stored so far (the writer stores them in the background), without process ones.
async fn wait_for_flags(
    store: &dyn vouch_store::Store,
    n: usize,
) -> Vec<vouch_store::AnomalyRecord> {
    for _ in 0..100 {
        let mut f = store
            .anomalies(&vouch_store::AnomalyQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        f.retain(|f| !about_processes(&f.detail));
        if f.len() >= n {
            return f;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} anomaly flags stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_executable_is_flagged_stored_exported_and_blocks_only_when_asked() {
    let h = Harness::new(|_| {}).await;
    let ca = h.server.ca_cert.clone().unwrap();
    let base = h.server.base_url.clone();
    let read = h.read_token();
    let mut a = h.agent("web").await;
    h.trust(&mut a).await;

    // The baseline: the group's first node, attesting as recorded: no flag.
    for _ in 0..2 {
        let r = a.attest_once().await.unwrap();
        assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, v) = get(&base, &ca, "/v1/anomalies", Some(&read)).await;
    assert_eq!(s, 200, "{v}");
    let flags: Vec<&Value> = v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !about_processes(&f["detail"]))
        .collect();
    assert!(flags.is_empty(), "no flag on the baseline: {flags:?}");

    // The executable changes on the node (and is trusted: the default policy affirms it).
    std::fs::write(h.path("web.bin"), "binary of web, version 2").unwrap();
    h.trust(&mut a).await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(
        r.status,
        ArStatus::Affirming,
        "the default policy ignores anomalies: {:?}",
        r.reasons
    );
    let flags = wait_for_flags(h.store.as_ref(), 1).await;
    assert_eq!(flags.len(), 1, "{flags:#?}");
    let f = &flags[0];
    assert_eq!(f.kind, "new_measurement");
    assert_eq!(f.group, "web");
    assert!(f.workload_id.ends_with("/web"), "{}", f.workload_id);
    let exe = h.path("web.bin").display().to_string();
    assert!(
        f.reason.ends_with(&format!(
            "of executable {exe} never seen before in group web (1 nodes)"
        )),
        "{}",
        f.reason
    );

    // Exported: the API with the read token, never without it or with a wrong one.
    let (s, v) = get(
        &base,
        &ca,
        "/v1/anomalies?group=web&kind=new_measurement",
        Some(&read),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["reason"] == f.reason.as_str() && x["id"] == f.id.as_str()),
        "{v}"
    );
    let (s, v) = get(&base, &ca, "/v1/anomalies", None).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = get(&base, &ca, "/v1/anomalies", Some("not-the-token")).await;
    assert_eq!(s, 401);
    let (s, v) = get(&base, &ca, "/v1/anomalies?kind=bogus", Some(&read)).await;
    assert_eq!(s, 400, "{v}");
    // …and in the audit log.
    let size = h.store.audit_size().await.unwrap();
    let entries = h.store.audit_entries(0, size).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.entry.contains("\"anomaly.flag\"") && e.entry.contains(&f.id)),
        "no anomaly.flag entry"
    );

    // A policy that asks: the flag is active on the node, so its next result is
    // contraindicated, saying why.
    h.store
        .add_policy("strict", &strict_policy(), true, unix_now())
        .await
        .unwrap();
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("anomaly new_measurement") && x.contains("never seen before")),
        "{:?}",
        r.reasons
    );

    // A restart: the flag is still stored and served, still active for the policy, and the
    // group's baseline is rebuilt (the new executable is not new again).
    // A new verifier on the same store (what a restart or another replica starts from),
    // then the old one stopped.
    let server = start_with_store(h.cfg.clone(), h.store.clone())
        .await
        .unwrap();
    let mut h = h;
    std::mem::replace(&mut h.server, server).shutdown().await;
    let server = &h.server;
    let (s, v) = get(&server.base_url, &ca, "/v1/anomalies", Some(&read)).await;
    assert_eq!(s, 200);
    let flags = v["anomalies"].as_array().unwrap();
    assert_eq!(
        flags
            .iter()
            .filter(|f| !about_processes(&f["detail"]))
            .count(),
        1,
        "{v}"
    );
    let mut a = h
        .agent_with("web", |c| {
            c.servers = vec![server.base_url.clone()];
            c.join_token = None;
        })
        .await;
    std::fs::write(h.path("web.bin"), "binary of web, version 2").unwrap();
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let flags = wait_for_flags(h.store.as_ref(), 1).await;
    assert_eq!(flags.len(), 1, "nothing new after the restart: {flags:#?}");
    h.server.shutdown().await;
}

/// Shut down and power-cycle a real swtpm (its control channel's CMD_INIT), start it again: a TPM Reset,
/// resetCount + 1 and every PCR back to zero, while this machine keeps running.
fn reset_tpm(tpm: &vouch_testkit::Swtpm) {
    // An orderly TPM2_Shutdown(CLEAR) first, as a reboot does: the clock stays `safe` (the
    // verifier refuses a quote whose clock may have been rolled back).
    tpm.tool(&["tpm2_shutdown", "-c"]);
    let ok = std::process::Command::new("swtpm_ioctl")
        .args(["--tcp", &format!("127.0.0.1:{}", tpm.port + 1), "-i"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "swtpm_ioctl -i");
    // swtpm may start the TPM itself (startup-clear); a second TPM2_Startup is refused then.
    let _ = std::process::Command::new("tpm2_startup")
        .arg("-c")
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output();
}

/// The TPM reset attack on a real swtpm: the TPM is reset under a running machine (to extend
/// its PCRs again with values of the attacker's choosing); the quote's real resetCount rises
/// by one, which the verifier accepts (the clock moved forward), but the node's processes are
/// the same ones with the same PIDs: flagged `tpm_counter`. Attestations without the reset
/// raise no such flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_reset_without_a_reboot_is_flagged_on_a_real_swtpm() {
    let tpm = vouch_testkit::Swtpm::start("sha256");
    let h = Harness::new(|c| c.tpm_ca_dir = Some(tpm.path("ca"))).await;
    let mut a = h
        .agent_with("db", |c| {
            c.tpm = Some(vouch_agent::TpmConfig {
                tcti: tpm.tcti(),
                key_alg: "rsa".into(),
                pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7, 16],
                ima_log: None,
                eventlog: None,
                ek_handle: None,
            })
        })
        .await;
    let tpm_flags = |flags: &[vouch_store::AnomalyRecord]| {
        flags
            .iter()
            .filter(|f| f.kind == "tpm_counter")
            .cloned()
            .collect::<Vec<_>>()
    };
    let all = async || {
        h.store
            .anomalies(&vouch_store::AnomalyQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let first = a.attest_once().await.unwrap();
    let rec = h
        .store
        .attestation(&first.attestation_id)
        .await
        .unwrap()
        .unwrap();
    let reset_before = rec.claims["tpm"]["clock"]["reset_count"].as_u64().unwrap();
    a.attest_once().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(tpm_flags(&all().await).is_empty(), "no reset, no flag");

    reset_tpm(&tpm);
    let r = a.attest_once().await.unwrap();
    let rec = h
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.claims["tpm"]["clock"]["reset_count"].as_u64().unwrap(),
        reset_before + 1,
        "a real TPM Reset"
    );
    let mut flags = Vec::new();
    for _ in 0..100 {
        flags = tpm_flags(&all().await);
        if !flags.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0].reason.starts_with(&format!(
            "resetCount rose from {reset_before} to {} on node",
            reset_before + 1
        )) && flags[0].reason.contains("same PIDs as before"),
        "{}",
        flags[0].reason
    );
    h.server.shutdown().await;
}
