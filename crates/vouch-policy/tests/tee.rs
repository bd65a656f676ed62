//! Issue 12: the default policy and the example confidential-computing policy on the claims of
//! real TEE evidence (testdata's SEV-SNP report and dcap-qvl's TDX quote, verified by
//! `vouch-tee` at a time inside their windows, the TDX quote with and without its platform's
//! collateral), as they are and with fields changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use vouch_core::{ArStatus, TrustClaim};
use vouch_policy::{
    Appraisal, CompiledPolicy, DEFAULT_POLICY, PolicySource, ReferenceValue, ReferenceValues,
};
use vouch_tee::{TeeKind, TeeRoots};
use vouch_testkit::read_testdata;

const EXAMPLE: &str = include_str!("../../../policies/examples/confidential-computing.rego");
const EXE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// The vendor roots (AMD's ARK, Intel's root), and the TDX platform's collateral if asked.
fn roots(collateral: bool) -> TeeRoots {
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let amd = vouch_x509::pem_certificates(&pem);
    let mut r = TeeRoots::from_certs(&[amd[1].clone(), read_testdata("tdx/intel_sgx_root_ca.der")])
        .unwrap();
    if collateral {
        let store = tempfile::tempdir().unwrap();
        std::fs::copy(
            vouch_testkit::testdata("tdx/dcapqvl_tdx_quote_collateral.json"),
            store.path().join("b0c06f000000.json"),
        )
        .unwrap();
        r.add_store_dir(store.path()).unwrap();
    }
    r
}

/// `input.tee` of the real TDX quote (not a debug TD).
fn tdx(collateral: bool) -> Value {
    roots(collateral)
        .verify(
            TeeKind::Tdx,
            &read_testdata("tdx/dcapqvl_tdx_quote.bin"),
            &[],
            1_750_809_600,
        )
        .unwrap()
        .claims
}

/// The claims of `tee` evidence around `tee`, signed by an enrolled agent.
fn tee_evidence(tee: &Value) -> Value {
    json!({
        "evidence": {"kind": "tee", "key_id": "k", "signature_verified": true,
                     "hardware_backed": true, "collected_at": 1},
        "workload": {"name": "cvm", "exe_path": "/usr/bin/cvm", "exe_sha256": EXE,
                     "image_digest": null, "signers": []},
        "files": {}, "processes": [], "listening": [], "packages": {},
        "tee": tee,
    })
}

fn compile(rego: &str, refs: &[(&str, &str, &str)]) -> CompiledPolicy {
    let values = refs
        .iter()
        .map(|(kind, key, value)| ReferenceValue {
            kind: (*kind).into(),
            key: (*key).into(),
            value: (*value).into(),
        })
        .collect();
    CompiledPolicy::compile(
        &PolicySource {
            id: "p".into(),
            version: 1,
            rego: rego.into(),
        },
        &ReferenceValues {
            revision: 1,
            values,
        },
    )
    .unwrap()
}

/// The reference values that make the real evidence otherwise acceptable: its executable and
/// its launch measurement.
fn refs_for(tee: &Value) -> Vec<(&'static str, String, String)> {
    vec![
        ("executable", "cvm".into(), EXE.into()),
        (
            "tee_measurement",
            tee["kind"].as_str().unwrap().into(),
            tee["measurement"].as_str().unwrap().into(),
        ),
    ]
}

fn appraise(rego: &str, tee: &Value, extra: &[(&str, &str, &str)]) -> Appraisal {
    let base = refs_for(tee);
    let mut refs: Vec<(&str, &str, &str)> = base
        .iter()
        .map(|(k, key, v)| (*k, key.as_str(), v.as_str()))
        .collect();
    refs.extend_from_slice(extra);
    compile(rego, &refs).appraise(&tee_evidence(tee)).unwrap()
}

fn fired(a: &Appraisal, rule: &str) -> bool {
    a.findings.iter().any(|f| f.rule == rule)
}

#[test]
fn issue_12_the_example_policy_refuses_a_tcb_status_that_was_not_judged() {
    // With the platform's collateral: UpToDate, and the example accepts the quote.
    let judged = tdx(true);
    assert_eq!(judged["tcb"]["status"], "UpToDate");
    let a = appraise(EXAMPLE, &judged, &[]);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    // The same quote without collateral: not judged, refused on hardware.
    let unjudged = tdx(false);
    assert_eq!(unjudged["tcb"]["status"], "not judged (no collateral)");
    let a = appraise(EXAMPLE, &unjudged, &[]);
    assert_eq!(a.status, ArStatus::Contraindicated, "{}", a.explain());
    assert!(fired(&a, "tee_tcb_status"), "{}", a.explain());
    assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 96);
    assert!(a.explain().contains("not judged"), "{}", a.explain());
    // The default policy: never affirming without a judged status (a warning).
    let a = appraise(DEFAULT_POLICY, &unjudged, &[]);
    assert_eq!(a.status, ArStatus::Warning, "{}", a.explain());
    assert!(fired(&a, "tee_tcb_status"), "{}", a.explain());
    // Other statuses, and none at all.
    for (status, want) in [
        (json!("OutOfDate"), ArStatus::Contraindicated),
        (json!("Revoked"), ArStatus::Contraindicated),
        (json!("ConfigurationNeeded"), ArStatus::Contraindicated),
        (json!("SWHardeningNeeded"), ArStatus::Warning),
        (json!(null), ArStatus::Contraindicated),
    ] {
        let mut t = judged.clone();
        t["tcb"]["status"] = status.clone();
        let a = appraise(EXAMPLE, &t, &[]);
        assert_eq!(a.status, want, "{status}: {}", a.explain());
        assert!(fired(&a, "tee_tcb_status"), "{status}");
    }
    let mut t = judged.clone();
    t["tcb"].as_object_mut().unwrap().remove("status");
    let a = appraise(EXAMPLE, &t, &[]);
    assert_eq!(a.status, ArStatus::Contraindicated, "{}", a.explain());
}
