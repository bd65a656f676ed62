//! Issue 12: the default policy and the example confidential-computing policy on the claims of
//! real TEE evidence (testdata's SEV-SNP report and dcap-qvl's TDX quote, verified by
//! `vouch-tee` at a time inside their windows, the TDX quote with and without its platform's
//! collateral), as they are and with fields changed, alone (`tee` evidence) and as the TEE part
//! of `composite` evidence (appraised whole and per part, as the verifier does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use vouch_core::{ArStatus, ComponentView, EvidenceKind, TrustClaim};
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
                     "hardware_backed": true},
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

/// `input.tee` of the real SEV-SNP report (VMPL 0; guest policy 0x3001f: no debugging, no
/// migration agent).
fn snp() -> Value {
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let ask = vouch_x509::pem_certificates(&pem)[0].clone();
    roots(false)
        .verify(
            TeeKind::SevSnp,
            &read_testdata("snp/report_v2.bin"),
            &[read_testdata("snp/vcek.der"), ask],
            1_717_200_000,
        )
        .unwrap()
        .claims
}

/// The claims of `composite` evidence with `tee` as its TEE part (the TPM part a quote with no
/// PCRs: no rule of the default policy reads them without reference values), and its parts as
/// `vouch-evidence` makes them (`tpm` without `tee`, the TEE's kind without `tpm`).
fn composite(tee: &Value) -> (Value, Vec<ComponentView>) {
    let mut whole = tee_evidence(tee);
    whole["evidence"]["kind"] = json!("composite");
    whole["tpm"] = json!({"pcrs": {"sha256": {}}, "ima": null, "eventlog": null});
    let part = |name: &str, kind, without: &str| ComponentView {
        name: name.into(),
        kind,
        without: vec![without.into()],
    };
    (
        whole,
        vec![
            part("tpm", EvidenceKind::Tpm, "tee"),
            part(tee["kind"].as_str().unwrap(), EvidenceKind::Tee, "tpm"),
        ],
    )
}

fn appraise_composite(tee: &Value, extra: &[(&str, &str, &str)]) -> (Appraisal, Vec<Appraisal>) {
    let base = refs_for(tee);
    let mut refs: Vec<(&str, &str, &str)> = base
        .iter()
        .map(|(k, key, v)| (*k, key.as_str(), v.as_str()))
        .collect();
    refs.extend_from_slice(extra);
    let (whole, parts) = composite(tee);
    let (w, p) = compile(DEFAULT_POLICY, &refs)
        .appraise_components(&whole, &parts)
        .unwrap();
    (w, p.into_iter().map(|(_, a)| a).collect())
}

#[test]
fn issue_12_a_composite_snp_report_must_come_from_vmpl_0() {
    let real = snp();
    assert_eq!(real["details"]["vmpl"], 0);
    let (w, parts) = appraise_composite(&real, &[]);
    assert_eq!(w.status, ArStatus::Affirming, "{}", w.explain());
    assert!(parts.iter().all(|a| a.status == ArStatus::Affirming));
    for vmpl in [json!(1), json!(3), json!(null)] {
        let mut t = real.clone();
        t["details"]["vmpl"] = vmpl.clone();
        let (w, _) = appraise_composite(&t, &[]);
        assert_eq!(
            w.status,
            ArStatus::Contraindicated,
            "{vmpl}: {}",
            w.explain()
        );
        assert!(fired(&w, "snp_vmpl"), "{vmpl}");
        assert_eq!(w.trust_vector.get(TrustClaim::Hardware), 96);
        // `tee` evidence alone binds no vTPM: a guest below an SVSM reports from VMPL > 0.
        let a = appraise(DEFAULT_POLICY, &t, &[]);
        assert!(!fired(&a, "snp_vmpl"), "{vmpl}: {}", a.explain());
        assert_eq!(a.status, ArStatus::Affirming, "{vmpl}: {}", a.explain());
        // The example policy refuses it for any evidence.
        let a = appraise(EXAMPLE, &t, &[]);
        assert!(fired(&a, "snp_vmpl"), "{vmpl}: {}", a.explain());
        assert_eq!(a.status, ArStatus::Contraindicated);
    }
    assert!(!fired(&appraise(EXAMPLE, &real, &[]), "snp_vmpl"));
}

#[test]
fn issue_12_a_guest_policy_that_allows_debugging_is_never_affirming() {
    let real = snp();
    assert_eq!(real["debug"], false);
    let mut t = real.clone();
    t["debug"] = json!(true);
    t["details"]["policy"]["debug"] = json!(true);
    let (w, parts) = appraise_composite(&t, &[]);
    assert_eq!(w.status, ArStatus::Contraindicated, "{}", w.explain());
    assert!(fired(&w, "tee_debug"));
    assert_eq!(
        parts[1].status,
        ArStatus::Contraindicated,
        "the sev-snp part"
    );
    let a = appraise(DEFAULT_POLICY, &t, &[]);
    assert_eq!(a.status, ArStatus::Contraindicated, "{}", a.explain());
    assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 96);
    // Accepted for development: still a warning, never affirming.
    let allow = [("allow_tee_debug", "*", "true")];
    let a = appraise(DEFAULT_POLICY, &t, &allow);
    assert_eq!(a.status, ArStatus::Warning, "{}", a.explain());
    assert!(fired(&a, "tee_debug"));
    let (w, _) = appraise_composite(&t, &allow);
    assert_eq!(w.status, ArStatus::Warning, "{}", w.explain());
}

#[test]
fn issue_12_a_guest_policy_that_allows_a_migration_agent_is_a_warning_or_per_policy() {
    let real = snp();
    assert_eq!(real["migratable"], false);
    let mut t = real.clone();
    t["migratable"] = json!(true);
    t["details"]["policy"]["migrate_ma"] = json!(true);
    // By default a warning, on the hardware claim, that says how to decide.
    let a = appraise(DEFAULT_POLICY, &t, &[]);
    assert_eq!(a.status, ArStatus::Warning, "{}", a.explain());
    assert!(fired(&a, "tee_migration"));
    assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 32);
    assert!(
        a.explain().contains("tee_migration sev-snp allow"),
        "{}",
        a.explain()
    );
    let (w, parts) = appraise_composite(&t, &[]);
    assert_eq!(w.status, ArStatus::Warning, "{}", w.explain());
    assert_eq!(parts[1].status, ArStatus::Warning, "the sev-snp part");
    // Per policy: allowed for every kind or this one, denied for this one.
    for (key, value, want) in [
        ("*", "allow", ArStatus::Affirming),
        ("sev-snp", "allow", ArStatus::Affirming),
        ("*", "deny", ArStatus::Contraindicated),
        ("sev-snp", "deny", ArStatus::Contraindicated),
        ("tdx", "deny", ArStatus::Warning),
    ] {
        let a = appraise(DEFAULT_POLICY, &t, &[("tee_migration", key, value)]);
        assert_eq!(a.status, want, "{key} {value}: {}", a.explain());
    }
    // The kind's own value before `*`.
    let a = appraise(
        DEFAULT_POLICY,
        &t,
        &[
            ("tee_migration", "*", "deny"),
            ("tee_migration", "sev-snp", "allow"),
        ],
    );
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    // A guest that may not migrate is unaffected by any of it.
    let a = appraise(DEFAULT_POLICY, &real, &[("tee_migration", "*", "deny")]);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
}
