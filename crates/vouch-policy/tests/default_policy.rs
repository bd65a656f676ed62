//! The default policy, element by element: each rule is shown to pass on good claims and to
//! fire, with the right claim in the trust vector, on claims that break it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use vouch_core::{ArStatus, TrustClaim};
use vouch_policy::{
    Appraisal, CompiledPolicy, DEFAULT_POLICY, PolicyCache, PolicySource, ReferenceValue,
    ReferenceValues,
};

const EXE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const CONF: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn claims() -> Value {
    json!({
        "evidence": {"kind": "software", "key_id": "k", "signature_verified": true,
                     "hardware_backed": false},
        "hostname": "h",
        "workload": {"name": "app", "exe_path": "/usr/bin/app", "exe_sha256": EXE,
                     "image_digest": null, "signers": ["vendor"]},
        "files": {"/etc/app.conf": {"sha256": CONF, "signers": [], "error": null}},
        "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian 12"},
        "kernel": "6.1.0-28-amd64",
        "processes": [{"pid": 1, "name": "init", "exe": "/sbin/init", "exe_sha256": "aa"},
                      {"pid": 99, "name": "app", "exe": "/usr/bin/app", "exe_sha256": EXE}],
        "listening": [{"proto": "tcp", "address": "0.0.0.0", "port": 8443}],
        "packages": {"openssl": "3.0.11-1~deb12u2", "bash": "5.2.15-2+b2"}
    })
}

fn rv(kind: &str, key: &str, value: &str) -> ReferenceValue {
    ReferenceValue {
        kind: kind.into(),
        key: key.into(),
        value: value.into(),
    }
}

fn base_refs() -> Vec<ReferenceValue> {
    vec![
        rv("executable", "app", EXE),
        rv("file", "/etc/app.conf", CONF),
    ]
}

fn appraise_with(extra: Vec<ReferenceValue>, input: &Value) -> Appraisal {
    let mut values = base_refs();
    values.extend(extra);
    let refs = ReferenceValues {
        revision: 1,
        values,
    };
    let src = PolicySource {
        id: "default".into(),
        version: 1,
        rego: DEFAULT_POLICY.into(),
    };
    CompiledPolicy::compile(&src, &refs)
        .unwrap()
        .appraise(input)
        .unwrap()
}

fn assert_denied(a: &Appraisal, rule: &str, claim: TrustClaim) {
    assert_eq!(a.status, ArStatus::Contraindicated, "{}", a.explain());
    assert!(
        a.findings.iter().any(|f| f.rule == rule),
        "rule {rule} did not fire: {}",
        a.explain()
    );
    assert_eq!(a.trust_vector.get(claim), 96, "{}", a.explain());
}

#[test]
fn good_claims_are_affirming() {
    let a = appraise_with(vec![], &claims());
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    assert!(a.findings.is_empty());
    assert_eq!(a.trust_vector.get(TrustClaim::InstanceIdentity), 2);
    assert_eq!(a.trust_vector.get(TrustClaim::Executables), 2);
    assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 0);
}

#[test]
fn unsigned_and_sample_evidence_are_refused() {
    let mut c = claims();
    c["evidence"]["kind"] = json!("sample");
    c["evidence"]["signature_verified"] = json!(false);
    let a = appraise_with(vec![], &c);
    assert_denied(&a, "signed_evidence", TrustClaim::InstanceIdentity);
    assert!(a.findings.iter().any(|f| f.rule == "sample_evidence"));
}

#[test]
fn executable_must_match_reference() {
    let mut c = claims();
    c["workload"]["exe_sha256"] = json!("ff".repeat(32));
    assert_denied(
        &appraise_with(vec![], &c),
        "workload_executable",
        TrustClaim::Executables,
    );
}

#[test]
fn unknown_workload_is_a_warning_that_says_how_to_fix_it() {
    let mut c = claims();
    c["workload"]["name"] = json!("other");
    let a = appraise_with(vec![], &c);
    assert_eq!(a.status, ArStatus::Warning);
    assert!(
        a.findings[0]
            .message
            .contains("vouch refvalue add executable other")
    );
}

#[test]
fn configuration_hash_must_match() {
    let mut c = claims();
    c["files"]["/etc/app.conf"]["sha256"] = json!("33".repeat(32));
    assert_denied(
        &appraise_with(vec![], &c),
        "config_file",
        TrustClaim::Configuration,
    );
    // An unreadable file (null digest) is refused too, not skipped.
    let mut c = claims();
    c["files"]["/etc/app.conf"] = json!({"sha256": null, "signers": [], "error": "EACCES"});
    assert_denied(
        &appraise_with(vec![], &c),
        "config_file",
        TrustClaim::Configuration,
    );
}

#[test]
fn required_file_must_be_measured() {
    let extra = vec![rv("required_file", "app", "/etc/other.conf")];
    assert_denied(
        &appraise_with(extra, &claims()),
        "required_file",
        TrustClaim::Configuration,
    );
}

#[test]
fn minimum_os_version_compares_as_versions() {
    // "12" >= "9" as versions although "12" < "9" as strings.
    let a = appraise_with(vec![rv("min_os_version", "debian", "9")], &claims());
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    let a = appraise_with(vec![rv("min_os_version", "debian", "13")], &claims());
    assert_denied(&a, "min_os_version", TrustClaim::Configuration);
    // Another OS id is not constrained by a Debian minimum.
    let a = appraise_with(vec![rv("min_os_version", "ubuntu", "99")], &claims());
    assert_eq!(a.status, ArStatus::Affirming);
}

#[test]
fn minimum_package_version_is_a_patch_level() {
    let a = appraise_with(vec![rv("min_package", "openssl", "3.0.9")], &claims());
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    let a = appraise_with(
        vec![rv("min_package", "openssl", "3.0.11-1~deb12u3")],
        &claims(),
    );
    assert_denied(&a, "min_package", TrustClaim::Configuration);
    let a = appraise_with(vec![rv("min_package", "nginx", "1.0")], &claims());
    assert_denied(&a, "min_package", TrustClaim::Configuration);
}

/// A package list large enough to be converted once and remembered: the remembered list must
/// never stand in for another (one changed version changes the decision, both ways).
#[test]
fn a_long_package_list_is_judged_by_its_own_versions() {
    let mut c = claims();
    let mut pkgs: serde_json::Map<String, Value> = (0..300)
        .map(|i| (format!("lib{i}"), json!(format!("1.{i}-1"))))
        .collect();
    pkgs.insert("openssl".into(), json!("3.0.11-1~deb12u2"));
    c["packages"] = Value::Object(pkgs.clone());
    let min = || vec![rv("min_package", "openssl", "3.0.11-1~deb12u2")];
    for _ in 0..2 {
        let a = appraise_with(min(), &c);
        assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    }
    c["packages"]["openssl"] = json!("3.0.11-1~deb12u1");
    assert_denied(
        &appraise_with(min(), &c),
        "min_package",
        TrustClaim::Configuration,
    );
    c["packages"]["openssl"] = json!("3.0.11-1~deb12u2");
    assert_eq!(appraise_with(min(), &c).status, ArStatus::Affirming);
    // A package removed from a remembered list is missing to the policy.
    let mut fewer = pkgs.clone();
    fewer.remove("openssl");
    c["packages"] = Value::Object(fewer);
    assert_denied(
        &appraise_with(min(), &c),
        "min_package",
        TrustClaim::Configuration,
    );
}

#[test]
fn forbidden_process_by_name_and_by_digest() {
    let mut c = claims();
    c["processes"].as_array_mut().unwrap().push(
        json!({"pid": 4242, "name": "telnetd", "exe": "/usr/sbin/telnetd", "exe_sha256": "bb"}),
    );
    let a = appraise_with(
        vec![rv("forbidden_process", "telnetd", "cleartext logins")],
        &c,
    );
    assert_denied(&a, "forbidden_process", TrustClaim::Executables);
    assert!(a.findings[0].message.contains("4242"));
    let a = appraise_with(vec![rv("forbidden_executable", "bb", "known miner")], &c);
    assert_denied(&a, "forbidden_executable", TrustClaim::Executables);
    // Without the process, the same references pass.
    let a = appraise_with(vec![rv("forbidden_process", "telnetd", "x")], &claims());
    assert_eq!(a.status, ArStatus::Affirming);
}

#[test]
fn forbidden_and_required_ports() {
    let a = appraise_with(vec![rv("forbidden_port", "tcp/8443", "no")], &claims());
    assert_denied(&a, "forbidden_port", TrustClaim::Configuration);
    let a = appraise_with(vec![rv("forbidden_port", "udp/8443", "no")], &claims());
    assert_eq!(a.status, ArStatus::Affirming);
    let a = appraise_with(vec![rv("required_port", "app", "tcp/8443")], &claims());
    assert_eq!(a.status, ArStatus::Affirming);
    let a = appraise_with(vec![rv("required_port", "app", "tcp/443")], &claims());
    assert_denied(&a, "required_port", TrustClaim::Configuration);
}

#[test]
fn hardware_boundary() {
    let a = appraise_with(vec![rv("require_hardware", "*", "true")], &claims());
    assert_denied(&a, "require_hardware", TrustClaim::Hardware);
    let mut c = claims();
    c["evidence"]["hardware_backed"] = json!(true);
    let a = appraise_with(vec![rv("require_hardware", "*", "true")], &c);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 2);
}

/// Issue 12: IMA reference values cannot be dodged by sending TPM evidence without an IMA
/// replay (after a reboot, say); evidence with one, or without a TPM, is judged as before.
#[test]
fn issue_12_ima_reference_values_require_an_ima_replay() {
    let miner = rv("ima_deny", &"ab".repeat(32), "cryptominer");
    let mut tpm = claims();
    tpm["evidence"]["kind"] = json!("tpm");
    tpm["evidence"]["hardware_backed"] = json!(true);
    tpm["tpm"] = json!({"pcrs": {}, "ima": null, "eventlog": null});
    assert_eq!(
        appraise_with(vec![], &tpm).status,
        ArStatus::Affirming,
        "no IMA reference values, no requirement"
    );
    assert_denied(
        &appraise_with(vec![miner.clone()], &tpm),
        "ima_required",
        TrustClaim::Executables,
    );
    let allow = rv("ima_allow", "/usr/bin/app", EXE);
    assert_denied(
        &appraise_with(vec![allow], &tpm),
        "ima_required",
        TrustClaim::Executables,
    );
    tpm["tpm"]["ima"] = json!({"position": 3, "new_entries": 0, "failures": []});
    let a = appraise_with(vec![miner.clone()], &tpm);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    let a = appraise_with(vec![miner], &claims());
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
}

#[test]
fn required_signatures_on_critical_components() {
    let a = appraise_with(vec![rv("required_signer", "app", "vendor")], &claims());
    assert_eq!(a.status, ArStatus::Affirming);
    let a = appraise_with(
        vec![rv("required_signer", "app", "security-team")],
        &claims(),
    );
    assert_denied(&a, "required_signature", TrustClaim::Executables);
    let a = appraise_with(
        vec![rv("required_signer", "/etc/app.conf", "vendor")],
        &claims(),
    );
    assert_denied(&a, "required_signature", TrustClaim::Configuration);
}

#[test]
fn explanation_names_the_rule() {
    let mut c = claims();
    c["workload"]["exe_sha256"] = json!("ff".repeat(32));
    let text = appraise_with(vec![], &c).explain();
    assert!(text.contains("status: contraindicated"), "{text}");
    assert!(text.contains("workload_executable"), "{text}");
    assert!(text.contains("executables"), "{text}");
}

#[test]
fn cache_compiles_each_version_once() {
    let cache = PolicyCache::new();
    let src = PolicySource {
        id: "default".into(),
        version: 1,
        rego: DEFAULT_POLICY.into(),
    };
    let refs = ReferenceValues::default();
    let a = cache.get(&src, &refs).unwrap();
    let b = cache.get(&src, &refs).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let v2 = PolicySource { version: 2, ..src };
    let c = cache.get(&v2, &refs).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(cache.len(), 1, "superseded versions are dropped");
}

#[test]
fn bad_policies_are_clear_errors() {
    let refs = ReferenceValues::default();
    let bad = PolicySource {
        id: "p".into(),
        version: 1,
        rego: "package vouch.appraisal\nimport rego.v1\ndeny contains x if {".into(),
    };
    assert!(CompiledPolicy::compile(&bad, &refs).is_err());
    let wrong_pkg = PolicySource {
        id: "p".into(),
        version: 1,
        rego: "package other\nimport rego.v1\nx := 1".into(),
    };
    let e = CompiledPolicy::compile(&wrong_pkg, &refs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vouch.appraisal"), "{e}");
    let bad_claim = PolicySource {
        id: "p".into(),
        version: 1,
        rego: "package vouch.appraisal\nimport rego.v1\ntrust_vector := {\"nonsense\": 2}".into(),
    };
    let p = CompiledPolicy::compile(&bad_claim, &refs).unwrap();
    assert!(p.appraise(&claims()).is_err());
}

#[test]
fn a_minimal_policy_with_only_deny_works() {
    let src = PolicySource {
        id: "min".into(),
        version: 1,
        rego: "package vouch.appraisal\nimport rego.v1\ndeny contains \"always\" if true".into(),
    };
    let p = CompiledPolicy::compile(&src, &ReferenceValues::default()).unwrap();
    let a = p.appraise(&claims()).unwrap();
    assert_eq!(a.status, ArStatus::Contraindicated);
    assert_eq!(a.findings[0].message, "always");
}

#[test]
fn issue_15_provenance_builder_and_source_of_every_running_image() {
    const B: &str = "https://builder.example/ci@v1";
    const SRC: &str = "https://git.example/app";
    let d1 = format!("sha256:{}", "a1".repeat(32));
    let d2 = format!("sha256:{}", "b2".repeat(32));
    let with_images = |images: Value| {
        let mut c = claims();
        c["workload"]["containers"] = json!([
            {"id": "c1".repeat(32), "image_digests": [d1]},
            {"id": "c2".repeat(32), "image_digests": [d2]},
        ]);
        c["images"] = images;
        c
    };
    let good = |d: &str| {
        json!({"digest": d, "signed_by": ["k"], "repository": "r",
               "provenance": {"builder_id": B, "build_type": "t", "source_repo": SRC,
                              "source_ref": "refs/tags/v1", "verified_by": "k"}})
    };
    let refs = || {
        vec![
            rv("require_provenance_builder", "*", B),
            rv("require_provenance_source", "*", SRC),
        ]
    };
    let a = appraise_with(refs(), &with_images(json!([good(&d1), good(&d2)])));
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());

    // The second container's image: provenance by another builder, from another source.
    let mut other = good(&d2);
    other["provenance"]["builder_id"] = json!("https://evil.example/builder");
    other["provenance"]["source_repo"] = json!("https://git.example/fork");
    let a = appraise_with(refs(), &with_images(json!([good(&d1), other])));
    assert_denied(&a, "require_provenance_builder", TrustClaim::Executables);
    assert_denied(&a, "require_provenance_source", TrustClaim::Executables);
    assert!(a.explain().contains(&d2), "{}", a.explain());
    assert!(!a.explain().contains(&d1), "{}", a.explain());
    assert!(
        a.explain()
            .contains("built by https://evil.example/builder"),
        "{}",
        a.explain()
    );

    // No provenance: its reason is quoted.
    let none =
        json!({"digest": d2, "signed_by": ["k"], "provenance": {"reason": "r: no provenance"}});
    let a = appraise_with(refs(), &with_images(json!([good(&d1), none])));
    assert_denied(&a, "require_provenance_builder", TrustClaim::Executables);
    assert!(a.explain().contains("r: no provenance"), "{}", a.explain());

    // A verifier that checks signatures but not provenance.
    let unchecked = json!({"digest": d2, "signed_by": ["k"]});
    let a = appraise_with(refs(), &with_images(json!([good(&d1), unchecked])));
    assert!(
        a.explain().contains("checks no provenance"),
        "{}",
        a.explain()
    );

    // A verifier that checks no images at all: the running containers' digests are named.
    let mut c = with_images(json!(null));
    c.as_object_mut().unwrap().remove("images");
    let a = appraise_with(refs(), &c);
    assert_denied(&a, "require_provenance_builder", TrustClaim::Executables);
    let a = appraise_with(vec![rv("require_image_signature", "*", "true")], &c);
    assert_denied(&a, "require_image_signature", TrustClaim::Executables);
    assert!(
        a.explain().contains(&d1) && a.explain().contains(&d2),
        "{}",
        a.explain()
    );

    // A running container whose image has no manifest digest cannot be checked.
    let mut c = with_images(json!([good(&d1), good(&d2)]));
    c["workload"]["containers"][1]["image_digests"] = json!([]);
    let a = appraise_with(vec![rv("require_image_signature", "*", "true")], &c);
    assert_denied(&a, "require_image_signature", TrustClaim::Executables);
    assert!(
        a.explain().contains("no manifest digest"),
        "{}",
        a.explain()
    );
    // Likewise when only provenance is required: a locally built image (no digest, so the
    // image hook is asked about d1 alone) is not let through for having nothing to check.
    let mut c = with_images(json!([good(&d1)]));
    c["workload"]["containers"][1]["image_digests"] = json!([]);
    let a = appraise_with(refs(), &c);
    assert_denied(&a, "require_provenance_builder", TrustClaim::Executables);
    assert!(
        a.explain().contains("no manifest digest") && a.explain().contains(&"c2".repeat(32)),
        "{}",
        a.explain()
    );
    let a = appraise_with(vec![rv("require_provenance_source", "*", SRC)], &c);
    assert_denied(&a, "require_provenance_source", TrustClaim::Executables);

    // Without the reference values, nothing is required.
    let a = appraise_with(vec![], &with_images(json!([other_unsigned(&d2)])));
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
}

#[test]
fn issue_15_containers_the_agent_could_not_list_are_contraindicated() {
    const B: &str = "https://builder.example/ci@v1";
    const SRC: &str = "https://git.example/app";
    const WHY: &str =
        "container runtime at /run/podman/podman.sock: connecting: Connection refused";
    let d1 = format!("sha256:{}", "a1".repeat(32));
    let good = json!({"digest": d1, "signed_by": ["k"], "repository": "r",
        "provenance": {"builder_id": B, "build_type": "t", "source_repo": SRC,
                       "source_ref": "refs/tags/v1", "verified_by": "k"}});
    // The last list the agent got (one signed image with provenance), and whether it is marked
    // unlisted this round (the evidence's claims carry null when it is not).
    let claims_with = |unlisted: Value, containers: Value, images: Value| {
        let mut c = claims();
        c["workload"]["containers"] = containers;
        c["workload"]["containers_unlisted"] = unlisted;
        c["images"] = images;
        c
    };
    let listed = || json!([{"id": "c1".repeat(32), "image_digests": [d1]}]);
    let all_rules = || {
        vec![
            rv("require_image_signature", "*", "true"),
            rv("require_provenance_builder", "*", B),
            rv("require_provenance_source", "*", SRC),
        ]
    };
    let a = appraise_with(
        all_rules(),
        &claims_with(json!(null), listed(), json!([good])),
    );
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());

    // The same last list, marked unlisted: each rule alone denies, naming why.
    let unlisted = claims_with(json!(WHY), listed(), json!([good]));
    for (rule, value) in [
        ("require_image_signature", "true"),
        ("require_provenance_builder", B),
        ("require_provenance_source", SRC),
    ] {
        let a = appraise_with(vec![rv(rule, "*", value)], &unlisted);
        assert_denied(&a, rule, TrustClaim::Executables);
        assert!(
            a.explain().contains(&format!(
                "the agent could not list the running containers: {WHY}"
            )),
            "{rule}: {}",
            a.explain()
        );
    }
    // No list at all yet (the runtime has not answered since the agent started), no images.
    let never = claims_with(json!(WHY), json!([]), json!([]));
    let a = appraise_with(all_rules(), &never);
    assert_denied(&a, "require_image_signature", TrustClaim::Executables);
    assert_denied(&a, "require_provenance_builder", TrustClaim::Executables);
    // The claims of an agent that sends neither field (older agents): nothing changes.
    let mut old = claims_with(json!(null), listed(), json!([good]));
    old["workload"]
        .as_object_mut()
        .unwrap()
        .remove("containers_unlisted");
    let a = appraise_with(all_rules(), &old);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
    // Without the rules, an unlisted round alone denies nothing.
    let a = appraise_with(vec![], &unlisted);
    assert_eq!(a.status, ArStatus::Affirming, "{}", a.explain());
}

fn other_unsigned(d: &str) -> Value {
    json!({"digest": d, "signed_by": [], "reason": "no signature"})
}
