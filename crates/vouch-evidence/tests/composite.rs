//! How `composite` evidence is appraised once both parts have verified: one attester, a
//! submodule per component. Built from real evidence: the TPM quote of
//! testdata/tpm (verified with its AK) and the SEV-SNP report of
//! testdata/snp (verified against the ARK at a time inside its window), composed
//! exactly as `CompositeVerifier` composes them. Samples bound by others cannot pass the
//! binding check itself; that refusal is tested through the verifier in
//! crates/vouch-server/tests/tee.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use vouch_core::{ArStatus, SoftwareMeasurements, TrustClaim, WorkloadMeasurement};
use vouch_evidence::{
    AgentKey, EvidenceVerifier, SoftwareVerifier, VerifyContext, composite_claims,
    sign_software_evidence,
};
use vouch_policy::{CompiledPolicy, DEFAULT_POLICY, PolicySource, ReferenceValue, ReferenceValues};
use vouch_tee::{TeeKind, TeeRoots};
use vouch_testkit::read_testdata;

/// The quote's claims (`input.tpm`) from the real TPM sample.
fn tpm_claims() -> Value {
    let v: Value = serde_json::from_slice(&read_testdata("tpm/trustee_tpm_evidence.json")).unwrap();
    let q = &v["tpm_quote"];
    let d = |s: &Value| STANDARD.decode(s.as_str().unwrap()).unwrap();
    let mut bank = std::collections::BTreeMap::new();
    for (i, p) in q["pcrs"].as_array().unwrap().iter().enumerate() {
        bank.insert(i as u8, hex::decode(p.as_str().unwrap()).unwrap());
    }
    let mut pcrs = vouch_tpm::PcrValues::default();
    pcrs.0.insert(vouch_tpm::HashAlg::Sha256, bank);
    let message = d(&q["message"]);
    let extra = vouch_tpm::TpmsAttest::parse(&message).unwrap().extra_data;
    let c = vouch_tpm::verify_quote(
        &vouch_tpm::Ak::from_spki(&d(&v["ak_public"])),
        &message,
        &d(&q["signature"]),
        &pcrs,
        &extra,
        &vouch_tpm::QuotePolicy::default(),
    )
    .unwrap();
    json!({"pcrs": pcrs.to_hex(), "clock": vouch_evidence::clock_claims(&c.clock), "signature": c.signature,
           "ima": null, "eventlog": null})
}

/// The TEE's claims (`input.tee`) from the real SEV-SNP report.
fn snp_claims() -> Value {
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let certs = vouch_x509::pem_certificates(&pem);
    let roots = TeeRoots::from_certs(&certs[1..2]).unwrap(); // ASK, ARK, ASVK
    let v = roots
        .verify(
            TeeKind::SevSnp,
            &read_testdata("snp/report_v2.bin"),
            &[read_testdata("snp/vcek.der"), certs[0].clone()],
            1_717_200_000,
        )
        .unwrap();
    v.claims
}

/// The software claims of a signed measurement set.
fn software_claims() -> Value {
    let k = AgentKey::generate().unwrap();
    let m = SoftwareMeasurements {
        nonce: "n".into(),
        workload: WorkloadMeasurement {
            name: "cvm".into(),
            exe_path: "/usr/bin/cvm".into(),
            exe_sha256: "ab".repeat(32),
            ..Default::default()
        },
        ..Default::default()
    };
    let ev = sign_software_evidence(&k, "k", &m).unwrap();
    let ctx = VerifyContext {
        public_key: k.public_key(),
        signers: &[],
        tpm: None,
        tee: None,
        now: 0,
        parts: None,
    };
    SoftwareVerifier.verify(&ev, &ctx).unwrap().claims
}

fn policy(values: &[(&str, &str, &str)]) -> CompiledPolicy {
    let refs = ReferenceValues {
        revision: 1,
        values: values
            .iter()
            .map(|(kind, key, value)| ReferenceValue {
                kind: (*kind).into(),
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
    };
    CompiledPolicy::compile(
        &PolicySource {
            id: "default".into(),
            version: 1,
            rego: DEFAULT_POLICY.into(),
        },
        &refs,
    )
    .unwrap()
}

#[test]
fn each_component_is_appraised_alone_and_the_whole_is_its_worst() {
    let tee = snp_claims();
    let measurement = tee["measurement"].as_str().unwrap().to_string();
    let pcr0 = tpm_claims()["pcrs"]["sha256"]["0"]
        .as_str()
        .unwrap()
        .to_string();
    let (whole, parts) = composite_claims(
        software_claims(),
        tpm_claims(),
        TeeKind::SevSnp,
        tee.clone(),
    );
    assert_eq!(whole["evidence"]["kind"], "composite");
    assert_eq!(whole["evidence"]["hardware_backed"], true);
    assert_eq!(whole["tee"], tee);
    assert!(whole["tpm"]["pcrs"]["sha256"].is_object());
    let names: Vec<&str> = parts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tpm", "sev-snp"]);
    let (tpm_view, tee_view) = (parts[0].apply(&whole), parts[1].apply(&whole));
    assert_eq!(tpm_view["evidence"]["kind"], "tpm");
    assert!(tpm_view.get("tee").is_none() && tpm_view["tpm"].is_object());
    assert_eq!(tee_view["evidence"]["kind"], "tee");
    assert!(tee_view.get("tpm").is_none() && tee_view["tee"] == tee);
    assert_eq!(whole["workload"], tpm_view["workload"]);

    let exe_digest = "ab".repeat(32);
    let exe = ("executable", "cvm", exe_digest.as_str());
    // The launch measurement not yet registered: the SEV-SNP part warns, the TPM part does
    // not, and the whole carries the warning.
    let (w, p) = policy(&[exe]).appraise_components(&whole, &parts).unwrap();
    assert_eq!(p[0].1.status, ArStatus::Affirming, "{:?}", p[0].1.reasons());
    assert_eq!(p[1].1.status, ArStatus::Warning, "{:?}", p[1].1.reasons());
    assert!(p[1].1.reasons()[0].contains("no reference launch measurement"));
    assert_eq!(w.status, ArStatus::Warning);
    for (_, a) in &p {
        assert_eq!(a.trust_vector.get(TrustClaim::Hardware), 2);
    }

    // Registered: every part affirms.
    let tee_ref = ("tee_measurement", "sev-snp", measurement.as_str());
    let (w, p) = policy(&[exe, tee_ref])
        .appraise_components(&whole, &parts)
        .unwrap();
    assert_eq!(
        [w.status, p[0].1.status, p[1].1.status],
        [ArStatus::Affirming; 3],
        "{:?}",
        w.reasons()
    );

    // A PCR reference value the quote does not meet: the TPM part is contraindicated, the
    // SEV-SNP part stays affirming, and the whole is contraindicated.
    let wrong = "11".repeat(32);
    assert_ne!(wrong, pcr0);
    let (w, p) = policy(&[exe, tee_ref, ("pcr", "sha256:0", &wrong)])
        .appraise_components(&whole, &parts)
        .unwrap();
    assert_eq!(p[0].1.status, ArStatus::Contraindicated);
    assert_eq!(p[0].1.trust_vector.get(TrustClaim::Executables), 96);
    assert_eq!(p[1].1.status, ArStatus::Affirming);
    assert_eq!(w.status, ArStatus::Contraindicated);
    // Requiring vendor revocation checks: the store had no AMD CRL, so the SEV-SNP part (and
    // the whole) is refused, the TPM part is not.
    let (w, p) = policy(&[exe, tee_ref, ("require_tee_revocation", "*", "true")])
        .appraise_components(&whole, &parts)
        .unwrap();
    assert_eq!(tee["revocation_checked"], false);
    assert_eq!(p[0].1.status, ArStatus::Affirming);
    assert_eq!(p[1].1.status, ArStatus::Contraindicated);
    assert!(p[1].1.reasons()[0].contains("tee_revocation"));
    assert_eq!(w.status, ArStatus::Contraindicated);
    // The right PCR 0: all affirm again.
    let (w, _) = policy(&[exe, tee_ref, ("pcr", "sha256:0", &pcr0)])
        .appraise_components(&whole, &parts)
        .unwrap();
    assert_eq!(w.status, ArStatus::Affirming, "{:?}", w.reasons());
    // The engine-side views are the JSON views: each part appraised alone gives the same.
    let p2 = policy(&[exe, ("pcr", "sha256:0", &wrong)]);
    let (_, together) = p2.appraise_components(&whole, &parts).unwrap();
    for (c, (name, a)) in parts.iter().zip(&together) {
        assert_eq!(&c.name, name);
        assert_eq!(&p2.appraise(&c.apply(&whole)).unwrap(), a, "{name}");
    }

    // A guest in debug mode is refused on its own submodule (and so as a whole).
    let mut debug = tee.clone();
    debug["debug"] = json!(true);
    let (whole, parts) = composite_claims(software_claims(), tpm_claims(), TeeKind::SevSnp, debug);
    let (w, p) = policy(&[exe, tee_ref])
        .appraise_components(&whole, &parts)
        .unwrap();
    assert_eq!(p[0].1.status, ArStatus::Affirming);
    assert_eq!(p[1].1.status, ArStatus::Contraindicated);
    assert_eq!(w.status, ArStatus::Contraindicated);
}

/// Issue 12: the real SEV-SNP report composed with the real quote as `CompositeVerifier`
/// composes them, with its VMPL or guest policy changed. Only the whole knows that the report
/// is bound to a vTPM, so the VMPL rule judges the whole (the `workload` submodule, and so the
/// result's status); the guest policy's bits judge the SEV-SNP part too. (A composite the
/// verifier accepts needs a report over its own nonce, which no real sample has: through the
/// verifier, crates/vouch-server/tests/tee.rs shows the refusal before the policy.)
#[test]
fn issue_12_a_composite_snp_report_from_vmpl_above_0_or_allowing_migration() {
    let tee = snp_claims();
    assert_eq!(tee["details"]["vmpl"], 0);
    let measurement = tee["measurement"].as_str().unwrap().to_string();
    let exe_digest = "ab".repeat(32);
    let refs = [
        ("executable", "cvm", exe_digest.as_str()),
        ("tee_measurement", "sev-snp", measurement.as_str()),
    ];
    let appraise = |tee: &Value| {
        let (whole, parts) = composite_claims(
            software_claims(),
            tpm_claims(),
            TeeKind::SevSnp,
            tee.clone(),
        );
        policy(&refs).appraise_components(&whole, &parts).unwrap()
    };
    let (w, _) = appraise(&tee);
    assert_eq!(w.status, ArStatus::Affirming, "{:?}", w.reasons());

    let mut vmpl2 = tee.clone();
    vmpl2["details"]["vmpl"] = json!(2);
    let (w, p) = appraise(&vmpl2);
    assert_eq!(w.status, ArStatus::Contraindicated);
    assert!(
        w.reasons().iter().any(|r| r.contains("snp_vmpl")),
        "{:?}",
        w.reasons()
    );
    assert_eq!(w.trust_vector.get(TrustClaim::Hardware), 96);
    assert_eq!([p[0].1.status, p[1].1.status], [ArStatus::Affirming; 2]);

    let mut migrates = tee.clone();
    migrates["migratable"] = json!(true);
    migrates["details"]["policy"]["migrate_ma"] = json!(true);
    let (w, p) = appraise(&migrates);
    assert_eq!(w.status, ArStatus::Warning, "{:?}", w.reasons());
    assert_eq!(p[1].1.status, ArStatus::Warning);
    assert_eq!(p[0].1.status, ArStatus::Affirming);
}

/// Azure composite evidence: the node's AK must be the vTPM AK (`HCLAkPub`) that Trustee's
/// real Azure evidence vouches for (verified through its three layers here): that AK passes;
/// another RSA key is refused, and so is an AK known only by SPKI (the real TPM sample's).
#[test]
fn issue_18_an_azure_composite_needs_the_nodes_ak_to_be_the_hcl_ak() {
    let mut certs = vouch_x509::pem_certificates(
        &String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap(),
    );
    let roots = TeeRoots::from_certs(&certs[1..2]).unwrap();
    certs.remove(1);
    let ev = read_testdata("azure/snp/evidence-v1.json");
    let d = vouch_tee::input::decode(TeeKind::AzSnpVtpm, &ev).unwrap();
    let tee = roots
        .verify(TeeKind::AzSnpVtpm, &d.report, &certs, 1_750_809_600)
        .unwrap()
        .claims;
    // The HCL AK, read here from the runtime data of the HCL report.
    let j: Value = serde_json::from_slice(&ev).unwrap();
    let hcl = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(j["hcl_report"].as_str().unwrap().trim_end_matches('='))
        .unwrap();
    let size = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    let rt: Value = serde_json::from_slice(&hcl[1236..1236 + size]).unwrap();
    let b64u = |s: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_str().unwrap())
            .unwrap()
    };
    let hcl_ak = vouch_tpm::Ak {
        key: vouch_tpm::PublicKey::Rsa {
            n: b64u(&rt["keys"][0]["n"]),
            e: b64u(&rt["keys"][0]["e"]),
        },
        scheme: None,
        qualified_name: None,
    };
    vouch_evidence::check_azure_ak(&tee, &hcl_ak).unwrap();
    // Another RSA key of the runtime data (the vTPM's encryption key, HCLEkPub): not the AK.
    let other = vouch_tpm::Ak {
        key: vouch_tpm::PublicKey::Rsa {
            n: b64u(&rt["keys"][1]["n"]),
            e: b64u(&rt["keys"][1]["e"]),
        },
        scheme: None,
        qualified_name: None,
    };
    let e = vouch_evidence::check_azure_ak(&tee, &other).unwrap_err();
    assert!(e.to_string().contains("not the Azure vTPM AK"), "{e}");
    let t: Value = serde_json::from_slice(&read_testdata("tpm/trustee_tpm_evidence.json")).unwrap();
    let spki =
        vouch_tpm::Ak::from_spki(&STANDARD.decode(t["ak_public"].as_str().unwrap()).unwrap());
    let e = vouch_evidence::check_azure_ak(&tee, &spki).unwrap_err();
    assert!(e.to_string().contains("not an RSA key"), "{e}");
    // Claims of a bare SEV-SNP report carry no runtime data: refused, not passed.
    let e = vouch_evidence::check_azure_ak(&snp_claims(), &hcl_ak).unwrap_err();
    assert!(e.to_string().contains("without the runtime data"), "{e}");
}
