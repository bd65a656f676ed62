//! What the detector compares: the measurements in verified claims (the policy's `input`) and
//! in an IMA log, and the running processes.

use serde_json::Value;
use std::collections::HashSet;

use super::detector::Measurement;

/// The measurements in verified claims (`input`): the workload's executable and image, the
/// measured files, packages, process executables, kernel and OS, boot PCRs 0–9 (PCR 10 is
/// IMA's, which moves with every file measured; 11 and up are per machine or per boot).
/// `skip` names measurement parts unchanged since the node's last attestation, left out.
pub fn measurements(claims: &Value, skip: &[&str]) -> Vec<Measurement> {
    let mut out = Vec::new();
    let mut push = |kind: &'static str, name: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push(Measurement {
                kind,
                name: name.to_string(),
                value: v.to_string(),
            });
        }
    };
    let w = &claims["workload"];
    push(
        "executable",
        w["exe_path"].as_str().unwrap_or(""),
        w["exe_sha256"].as_str(),
    );
    push("image", "", w["image_digest"].as_str());
    push("kernel", "", claims["kernel"].as_str());
    if let Some(os) = claims["os"].as_object() {
        let v = format!(
            "{} {}",
            os.get("id").and_then(Value::as_str).unwrap_or(""),
            os.get("version_id").and_then(Value::as_str).unwrap_or("")
        );
        push("os", "", Some(v.trim()));
    }
    if !skip.contains(&"files")
        && let Some(files) = claims["files"].as_object()
    {
        for (path, f) in files {
            push("file", path, f["sha256"].as_str());
        }
    }
    if !skip.contains(&"packages")
        && let Some(p) = claims["packages"].as_object()
    {
        for (name, version) in p {
            push("package", name, version.as_str());
        }
    }
    if !skip.contains(&"processes")
        && let Some(p) = claims["processes"].as_array()
    {
        let mut dedup = HashSet::new();
        for proc in p {
            let exe = proc["exe"].as_str().or(proc["name"].as_str()).unwrap_or("");
            if let Some(d) = proc["exe_sha256"].as_str()
                && dedup.insert((exe, d))
            {
                push("process", exe, Some(d));
            }
        }
    }
    if let Some(banks) = claims["tpm"]["pcrs"].as_object() {
        for (bank, pcrs) in banks {
            for i in 0..=9u8 {
                if let Some(v) = pcrs.get(i.to_string()).and_then(Value::as_str) {
                    push("pcr", &format!("{bank}:{i}"), Some(v));
                }
            }
        }
    }
    out
}

/// The running processes in claims, as `(pid, name, exe digest)`.
pub fn processes(claims: &Value) -> Option<Vec<(u64, String, String)>> {
    let p = claims["processes"].as_array()?;
    Some(
        p.iter()
            .map(|p| {
                (
                    p["pid"].as_u64().unwrap_or(0),
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["exe_sha256"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

/// IMA entries as measurements (`ima`, path, `alg:digest`); violations left out.
pub fn ima_measurements(entries: &[vouch_tpm::ImaEntry]) -> Vec<Measurement> {
    entries
        .iter()
        .filter(|e| !e.is_violation())
        .map(|e| Measurement {
            kind: "ima",
            name: e.path.clone(),
            value: format!("{}:{}", e.file_hash_alg, hex::encode(&e.file_hash)),
        })
        .collect()
}
