//! Azure confidential VMs (issue 18 item 1): Trustee's real `az-snp-vtpm` and `az-tdx-vtpm`
//! evidence (testdata/azure, see SOURCES.md) verifies through all three layers (the hardware
//! report against AMD's or Intel's root, the runtime data it binds, the vTPM quote signed by
//! the runtime data's AK) and is refused when any layer changes by one byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use serde_json::Value;
use vouch_tee::input::decode;
use vouch_tee::{TeeError, TeeKind, TeeRoots};
use vouch_testkit::read_testdata;

fn pem(p: &str) -> Vec<Vec<u8>> {
    vouch_x509::pem_certificates(&String::from_utf8(read_testdata(p)).unwrap())
}

fn roots() -> TeeRoots {
    let mut certs = vec![read_testdata("tdx/intel_sgx_root_ca.der")];
    for p in ["snp/milan_ask_ark_asvk.pem", "snp/genoa_ask_ark.pem"] {
        certs.extend(pem(p).into_iter().filter(|d| {
            let c = vouch_x509::parse(d, "x").unwrap();
            c.tbs_certificate.subject == c.tbs_certificate.issuer
        }));
    }
    TeeRoots::from_certs(&certs).unwrap()
}

/// The ASKs the VCEKs need (the evidence carries the VCEK only).
fn asks() -> Vec<Vec<u8>> {
    let mut c = pem("snp/milan_ask_ark_asvk.pem");
    c.extend(pem("snp/genoa_ask_ark.pem"));
    c
}

/// 2025-06-25: inside the VCEKs' (2023-05 .. 2030, 2025-01 .. 2032) and the PCK chain's windows.
const NOW: u64 = 1_750_809_600;

fn verify(kind: TeeKind, evidence: &[u8]) -> Result<vouch_tee::TeeVerified, TeeError> {
    let d = decode(kind, evidence)?;
    roots().verify(kind, &d.report, &asks(), NOW)
}

fn json(p: &str) -> Value {
    serde_json::from_slice(&read_testdata(p)).unwrap()
}

fn b64u(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The HCL report's runtime data, read here at the layout's offsets.
fn runtime_of(hcl: &[u8]) -> &[u8] {
    let size = u32::from_le_bytes(hcl[1232..1236].try_into().unwrap()) as usize;
    &hcl[1236..1236 + size]
}

#[test]
fn azure_snp_evidence_verifies_through_all_three_layers() {
    for (file, product, nonce) in [
        ("azure/snp/evidence-v1.json", "Milan", hex::encode("challenge")),
        (
            "azure/snp/evidence-v2.json",
            "Milan",
            "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef".into(),
        ),
        (
            "azure/snp/evidence-genoa.json",
            "Genoa",
            "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f".into(),
        ),
    ] {
        let ev = read_testdata(file);
        let v = verify(TeeKind::AzSnpVtpm, &ev).unwrap_or_else(|e| panic!("{file}: {e}"));
        let c = &v.claims;
        // Layer 3 binds the nonce: it is the report data a caller checks.
        assert_eq!(c["kind"], "az-snp-vtpm", "{file}");
        assert_eq!(hex::encode(&v.report_data), nonce, "{file}");
        assert_eq!(c["report_data"], nonce, "{file}");
        // Layer 1: the SEV-SNP report's claims, from the report inside the HCL report.
        let j: Value = serde_json::from_slice(&ev).unwrap();
        let hcl = match &j["hcl_report"] {
            Value::String(s) => b64u(s),
            _ => j["report"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect(),
        };
        let report = &hcl[32..32 + 1184];
        assert_eq!(c["measurement"], hex::encode(&report[0x90..0xC0]), "{file}");
        assert_eq!(c["details"]["product"], product, "{file}");
        assert_eq!(c["details"]["vmpl"], 0, "{file}");
        // Layer 2: the runtime data the report binds, and its AK.
        let runtime = runtime_of(&hcl);
        assert_eq!(
            &report[0x50..0x70],
            digest(&SHA256, runtime).as_ref(),
            "{file}"
        );
        assert_eq!(
            c["details"]["hcl"]["hardware_report_data"],
            hex::encode(&report[0x50..0x90])
        );
        let rt: Value = serde_json::from_slice(runtime).unwrap();
        let ak_n = rt["keys"][0]["n"].as_str().unwrap();
        assert_eq!(rt["keys"][0]["kid"], "HCLAkPub");
        assert_eq!(
            c["details"]["runtime_data"]["ak_sha256"],
            hex::encode(digest(&SHA256, &b64u(ak_n)))
        );
        assert_eq!(
            c["details"]["runtime_data"]["vm_configuration"],
            rt["vm-configuration"]
        );
        assert_eq!(c["details"]["runtime_data"]["user_data"], rt["user-data"]);
        // The vTPM's PCRs as the quote signed them.
        assert_eq!(
            c["details"]["vtpm"]["pcrs"]["sha256"]
                .as_object()
                .unwrap()
                .len(),
            24
        );
        assert_eq!(c["details"]["vtpm"]["signature"], "rsassa-sha256");
    }
    // Evidence v2 also carries the nonce in the runtime data's user-data (Trustee's v2).
    let v = verify(
        TeeKind::AzSnpVtpm,
        &read_testdata("azure/snp/evidence-v2.json"),
    )
    .unwrap();
    let user = v.claims["details"]["runtime_data"]["user_data"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(user.starts_with(&hex::encode(&v.report_data)), "{user}");
    assert_eq!(
        v.claims["details"]["runtime_data"]["user_data_binds_nonce"],
        true
    );
    // v1's user-data is zero: the hardware report does not bind its nonce.
    let v = verify(
        TeeKind::AzSnpVtpm,
        &read_testdata("azure/snp/evidence-v1.json"),
    )
    .unwrap();
    assert_eq!(
        v.claims["details"]["runtime_data"]["user_data_binds_nonce"],
        false
    );
}

#[test]
fn azure_tdx_evidence_verifies_through_all_three_layers() {
    let ev = read_testdata("azure/tdx/evidence-v1.json");
    let v = verify(TeeKind::AzTdxVtpm, &ev).unwrap();
    let c = &v.claims;
    assert_eq!(c["kind"], "az-tdx-vtpm");
    assert_eq!(hex::encode(&v.report_data), hex::encode("challenge"));
    let j: Value = serde_json::from_slice(&ev).unwrap();
    let quote = b64u(j["td_quote"].as_str().unwrap());
    let hcl = b64u(j["hcl_report"].as_str().unwrap());
    // The TD quote's MRTD, and its report data = SHA-256(runtime data) ‖ zeros.
    assert_eq!(c["measurement"], hex::encode(&quote[48 + 136..48 + 184]));
    assert_eq!(
        &quote[48 + 520..48 + 552],
        digest(&SHA256, runtime_of(&hcl)).as_ref()
    );
    assert_eq!(c["details"]["hcl"]["report_type"], "tdx");
    assert_eq!(c["details"]["version"], 4);
}

/// Trustee's v1 evidence with the HCL report (or the quote) changed by `edit`.
fn edited(file: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut j = json(file);
    edit(&mut j);
    serde_json::to_vec(&j).unwrap()
}

fn edit_hcl(file: &str, at: usize) -> Vec<u8> {
    edited(file, |j| {
        let mut h = b64u(j["hcl_report"].as_str().unwrap());
        h[at] ^= 0x01;
        j["hcl_report"] = enc(&h).into();
    })
}

#[test]
fn one_byte_changed_in_any_layer_is_refused() {
    let snp = "azure/snp/evidence-v1.json";
    let hcl = b64u(json(snp)["hcl_report"].as_str().unwrap());
    let runtime_len = runtime_of(&hcl).len();
    // Layer 1: every byte of the SEV-SNP report (refused by its signature, reserved bytes,
    // the VCEK's TCB and chip id).
    for at in 32..32 + 1184 {
        assert!(
            verify(TeeKind::AzSnpVtpm, &edit_hcl(snp, at)).is_err(),
            "SNP report byte {} changed, still accepted",
            at - 32
        );
    }
    // Layer 2: every byte of the runtime data (the AK, vm-configuration, user-data): the
    // report no longer binds it.
    for at in 1236..1236 + runtime_len {
        let e = verify(TeeKind::AzSnpVtpm, &edit_hcl(snp, at)).unwrap_err();
        assert!(
            e.to_string()
                .contains("not SHA-256 of the HCL runtime data"),
            "runtime byte {}: {e}",
            at - 1236
        );
    }
    // The request data's report type, hash type and sizes; the padding after the report.
    for at in [1216, 1224, 1228, 1232, 1236 + runtime_len + 5] {
        assert!(
            verify(TeeKind::AzSnpVtpm, &edit_hcl(snp, at)).is_err(),
            "{at}"
        );
    }
    // Layer 3: every byte of the vTPM quote message and signature, and of each PCR value.
    let q = &json(snp)["tpm_quote"];
    for field in ["message", "signature"] {
        let n = q[field].as_str().unwrap().len() / 2;
        for at in 0..n {
            let ev = edited(snp, |j| {
                let mut b = hex::decode(j["tpm_quote"][field].as_str().unwrap()).unwrap();
                b[at] ^= 0x01;
                j["tpm_quote"][field] = hex::encode(b).into();
            });
            assert!(
                verify(TeeKind::AzSnpVtpm, &ev).is_err(),
                "vTPM {field} byte {at} changed, still accepted"
            );
        }
    }
    for pcr in 0..24 {
        let ev = edited(snp, |j| {
            let mut b = hex::decode(j["tpm_quote"]["pcrs"][pcr].as_str().unwrap()).unwrap();
            b[7] ^= 0x01;
            j["tpm_quote"]["pcrs"][pcr] = hex::encode(b).into();
        });
        let e = verify(TeeKind::AzSnpVtpm, &ev).unwrap_err();
        assert!(e.to_string().contains("PCR"), "PCR {pcr}: {e}");
    }
    // Another vTPM's quote (the Genoa VM's) with this HCL report: not signed by this AK.
    let ev = edited(snp, |j| {
        let g = json("azure/snp/evidence-genoa.json");
        let bytes = |v: &Value| -> String {
            let b: Vec<u8> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect();
            hex::encode(b)
        };
        j["tpm_quote"]["message"] = bytes(&g["quote"]["message"]).into();
        j["tpm_quote"]["signature"] = bytes(&g["quote"]["signature"]).into();
    });
    let e = verify(TeeKind::AzSnpVtpm, &ev).unwrap_err();
    assert!(matches!(e, TeeError::Signature(_)), "{e}");
    // The VCEK of another chip (the Genoa evidence's) for this report.
    let ev = edited(snp, |j| {
        let g = String::from_utf8(read_testdata("azure/snp/vcek-genoa.pem")).unwrap();
        j["vcek"] = enc(&vouch_x509::pem_certificates(&g)[0]).into();
    });
    assert!(verify(TeeKind::AzSnpVtpm, &ev).is_err());
}

#[test]
fn azure_tdx_layers_are_refused_when_changed() {
    let tdx = "azure/tdx/evidence-v1.json";
    let hcl = b64u(json(tdx)["hcl_report"].as_str().unwrap());
    let runtime_len = runtime_of(&hcl).len();
    // The TD report in the HCL report: its report data, MRTD and RTMRs must be the quote's.
    for at in [
        32 + 128,
        32 + 512 + 16,
        32 + 512 + 208,
        32 + 512 + 208 + 3 * 48 + 47,
    ] {
        let e = verify(TeeKind::AzTdxVtpm, &edit_hcl(tdx, at)).unwrap_err();
        assert!(
            e.to_string().contains("not the one the TD quote signed"),
            "{at}: {e}"
        );
    }
    for at in (1236..1236 + runtime_len).step_by(7) {
        let e = verify(TeeKind::AzTdxVtpm, &edit_hcl(tdx, at)).unwrap_err();
        assert!(e.to_string().contains("runtime data"), "{at}: {e}");
    }
    // The TD quote: one byte of its body (MRTD) changed.
    let ev = edited(tdx, |j| {
        let mut q = b64u(j["td_quote"].as_str().unwrap());
        q[48 + 140] ^= 0x01;
        j["td_quote"] = enc(&q).into();
    });
    assert!(matches!(
        verify(TeeKind::AzTdxVtpm, &ev),
        Err(TeeError::Signature(_))
    ));
    // The vTPM quote's nonce.
    let ev = edited(tdx, |j| {
        let mut b = hex::decode(j["tpm_quote"]["message"].as_str().unwrap()).unwrap();
        b[45] ^= 0x01;
        j["tpm_quote"]["message"] = hex::encode(b).into();
    });
    assert!(verify(TeeKind::AzTdxVtpm, &ev).is_err());
}

#[test]
fn the_wrong_kind_or_an_hcl_report_alone_is_named() {
    let e = verify(
        TeeKind::AzTdxVtpm,
        &read_testdata("azure/snp/evidence-v1.json"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("holds an SEV-SNP report"), "{e}");
    let e = verify(
        TeeKind::AzSnpVtpm,
        &read_testdata("azure/snp/hcl-report.bin"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("vTPM quote is needed"), "{e}");
    let e = verify(TeeKind::AzSnpVtpm, &read_testdata("snp/report_v2.bin")).unwrap_err();
    assert!(e.to_string().contains("--kind sev-snp"), "{e}");
}

#[test]
fn the_vcek_may_come_from_the_offline_store_instead_of_the_evidence() {
    // Trustee's v1 evidence without its VCEK: refused with no VCEK anywhere, verified when the
    // operator's store holds it (found by the report's chip id and TCB), and when sent first.
    let ev = edited("azure/snp/evidence-v1.json", |j| {
        j.as_object_mut().unwrap().remove("vcek");
    });
    let vcek = b64u(json("azure/snp/evidence-v1.json")["vcek"].as_str().unwrap());
    let d = decode(TeeKind::AzSnpVtpm, &ev).unwrap();
    let e = roots()
        .verify(TeeKind::AzSnpVtpm, &d.report, &[], NOW)
        .unwrap_err();
    assert!(e.to_string().contains("no VCEK"), "{e}");
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("vcek.der"), &vcek).unwrap();
    std::fs::write(
        store.path().join("milan.pem"),
        read_testdata("snp/milan_ask_ark_asvk.pem"),
    )
    .unwrap();
    let mut r = roots();
    assert_eq!(r.add_snp_cert_dir(store.path()).unwrap(), 1);
    let v = r.verify(TeeKind::AzSnpVtpm, &d.report, &[], NOW).unwrap();
    assert_eq!(hex::encode(&v.report_data), hex::encode("challenge"));
    let mut certs = vec![vcek];
    certs.extend(asks());
    roots()
        .verify(TeeKind::AzSnpVtpm, &d.report, &certs, NOW)
        .unwrap();
}
