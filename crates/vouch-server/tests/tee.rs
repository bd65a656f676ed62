//! `tee` evidence through the verifier: the real samples of testdata wrapped as an
//! enrolled agent would send them. Their report data was bound by someone else's nonce, so the
//! verifier must refuse every one with the reason, record nothing, and refuse tampered or
//! expired ones and ones it has no roots for. (Accepting TEE evidence needs a TEE to make a
//! report over this verifier's nonce; the claims and policy path it would take is tested on
//! the same samples through `vouch tee verify`, crates/vouch/tests/tee.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use common::Harness;
use vouch_core::wire::AttestRequest;
use vouch_core::{
    CompositePayload, ErrorKind, Evidence, EvidenceKind, TeePayload, TeeReport,
    evidence_signing_input,
};
use vouch_testkit::read_testdata;

fn roots(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.join("tee-roots");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("amd.pem"),
        read_testdata("snp/milan_ask_ark_asvk.pem"),
    )
    .unwrap();
    std::fs::write(
        d.join("intel.der"),
        read_testdata("tdx/intel_sgx_root_ca.der"),
    )
    .unwrap();
    std::fs::write(
        d.join("nitro.pem"),
        read_testdata("nitro/aws_nitro_root.pem"),
    )
    .unwrap();
    d
}

/// TEE evidence from `agent` for the nonce, around `report` of kind `tee`.
fn evidence(
    agent: &mut vouch_agent::Agent,
    nonce: &str,
    tee: &str,
    report: &[u8],
    certs: &[Vec<u8>],
) -> Evidence {
    let sw = agent.evidence(nonce).unwrap();
    let p = TeePayload {
        tee: tee.into(),
        measurements: sw.payload,
        report: B64.encode(report),
        certs: certs.iter().map(|c| B64.encode(c)).collect(),
    };
    let payload = B64.encode(serde_json::to_vec(&p).unwrap());
    let signature = agent
        .key()
        .sign_b64(&evidence_signing_input(EvidenceKind::Tee, &payload));
    Evidence {
        kind: EvidenceKind::Tee,
        key_id: sw.key_id,
        payload,
        signature,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tee_evidence_is_checked_against_vendor_roots_and_bound_to_the_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let h = Harness::new(|c| c.tee_roots_dir = Some(roots.clone())).await;
    let mut agent = h.agent("cvm").await;
    let client = h.client();
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let ask = vouch_x509::pem_certificates(&pem)[0].clone();
    let snp = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    let nitro = STANDARD
        .decode(
            String::from_utf8(read_testdata("nitro/attestation_doc.b64"))
                .unwrap()
                .trim(),
        )
        .unwrap();

    let attest = |ev: Evidence| {
        let client = client.clone();
        async move {
            client
                .attest(&AttestRequest {
                    evidence: ev,
                    result_audience: None,
                })
                .await
                .unwrap_err()
        }
    };
    macro_rules! refused {
        ($tee:expr, $report:expr, $certs:expr) => {{
            let nonce = fresh_nonce(&client).await;
            attest(evidence(&mut agent, &nonce, $tee, $report, $certs)).await
        }};
    }
    // Real, valid chains, but report data bound to another party's nonce.
    let e = refused!("sev-snp", &snp, &[vcek.clone(), ask.clone()]);
    assert_eq!(e.kind(), Some(ErrorKind::TeeEvidence), "{e}");
    assert!(e.to_string().contains("does not bind this nonce"), "{e}");
    for (tee, file) in [
        ("tdx", "tdx/quote_v4.dat"),
        ("sgx", "sgx/occlum_quote_v3.dat"),
    ] {
        let e = refused!(tee, &read_testdata(file), &[]);
        assert!(
            e.to_string().contains("does not bind this nonce"),
            "{tee}: {e}"
        );
    }
    // Azure confidential VMs (issue 18): Trustee's evidence JSON (HCL report, vTPM quote,
    // VCEK or TD quote) as the report. The hardware report, the runtime data it binds and the
    // vTPM quote by the runtime data's AK all verify; the vTPM quote's nonce is someone else's.
    for (tee, file) in [
        ("az-snp-vtpm", "azure/snp/evidence-v1.json"),
        ("az-tdx-vtpm", "azure/tdx/evidence-v1.json"),
    ] {
        let e = refused!(tee, &read_testdata(file), std::slice::from_ref(&ask));
        assert_eq!(e.kind(), Some(ErrorKind::TeeEvidence), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("the {tee} report data does not bind this nonce")),
            "{tee}: {e}"
        );
    }
    // One byte of its runtime data changed: the hardware report no longer binds it.
    let mut az: serde_json::Value =
        serde_json::from_slice(&read_testdata("azure/snp/evidence-v1.json")).unwrap();
    let mut hcl = B64
        .decode(az["hcl_report"].as_str().unwrap().trim_end_matches('='))
        .unwrap();
    hcl[1300] ^= 1;
    az["hcl_report"] = B64.encode(&hcl).into();
    let e = refused!(
        "az-snp-vtpm",
        &serde_json::to_vec(&az).unwrap(),
        std::slice::from_ref(&ask)
    );
    assert!(e.to_string().contains("runtime data"), "{e}");
    // A quote of one kind sent as the other.
    let e = refused!("sgx", &read_testdata("tdx/quote_v4.dat"), &[]);
    assert!(e.to_string().contains("not a sgx quote"), "{e}");
    // One flipped byte in the report: its signature fails first.
    let mut bad = snp.clone();
    bad[0x90] ^= 1;
    let e = refused!("sev-snp", &bad, &[vcek.clone(), ask.clone()]);
    assert!(e.to_string().contains("signature"), "{e}");
    // The Nitro document's certificate expired in 2023.
    let e = refused!("nitro", &nitro, &[]);
    assert!(e.to_string().contains("expired"), "{e}");
    // No VEK: refused by name.
    let e = refused!("sev-snp", &snp, &[]);
    assert!(e.to_string().contains("no VEK"), "{e}");
    // Evidence signed by the agent for another kind is not TEE evidence.
    let nonce = fresh_nonce(&client).await;
    let mut ev = evidence(
        &mut agent,
        &nonce,
        "sev-snp",
        &snp,
        &[vcek.clone(), ask.clone()],
    );
    ev.kind = EvidenceKind::Software;
    let e = attest(ev).await;
    assert_eq!(e.kind(), Some(ErrorKind::EvidenceSignature), "{e}");
    assert_eq!(
        h.store.attestation_count().await.unwrap(),
        0,
        "nothing recorded"
    );

    // A verifier without TEE roots says so.
    let bare = Harness::new(|_| {}).await;
    let mut agent = bare.agent("cvm").await;
    let nonce = bare.client().challenge().await.unwrap().nonce;
    let ev = evidence(&mut agent, &nonce, "sev-snp", &snp, &[vcek, ask]);
    let e = bare
        .client()
        .attest(&AttestRequest {
            evidence: ev,
            result_audience: None,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no TEE roots configured"), "{e}");
}

/// `composite` evidence from `agent` (whose TPM is enrolled) for the nonce: its real quote and
/// `report` as the TEE part.
async fn composite(
    agent: &mut vouch_agent::Agent,
    nonce: &str,
    tee: &str,
    report: &[u8],
    certs: &[Vec<u8>],
) -> (Evidence, vouch_core::TpmPayload) {
    let t = agent.tpm_evidence(nonce).await.unwrap();
    let tpm: vouch_core::TpmPayload =
        serde_json::from_slice(&B64.decode(&t.payload).unwrap()).unwrap();
    (
        sign_composite(agent, &t.key_id, tpm.clone(), tee, report, certs),
        tpm,
    )
}

fn sign_composite(
    agent: &vouch_agent::Agent,
    key_id: &str,
    tpm: vouch_core::TpmPayload,
    tee: &str,
    report: &[u8],
    certs: &[Vec<u8>],
) -> Evidence {
    let p = CompositePayload {
        tpm,
        tee: TeeReport {
            tee: tee.into(),
            report: B64.encode(report),
            certs: certs.iter().map(|c| B64.encode(c)).collect(),
        },
    };
    let payload = B64.encode(serde_json::to_vec(&p).unwrap());
    let signature = agent
        .key()
        .sign_b64(&evidence_signing_input(EvidenceKind::Composite, &payload));
    Evidence {
        kind: EvidenceKind::Composite,
        key_id: key_id.into(),
        payload,
        signature,
    }
}

/// `composite` evidence on a real software TPM with the real TEE samples: the quote is checked
/// exactly as for `tpm` evidence and the TEE report against the vendor roots; the report's data
/// must bind this nonce, agent key, measurements and the AK, so every real sample (bound by
/// others) is refused for that, as are a tampered quote, a tampered report, a quote replayed
/// under a new nonce, and composite evidence from a node with no TPM. Nothing is recorded.
/// (How an accepted composite is appraised, one submodule per component, is tested on the same
/// real samples in crates/vouch-evidence/tests/composite.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_evidence_needs_the_quote_and_a_tee_report_binding_the_ak() {
    let tpm = vouch_testkit::Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let h = Harness::new(|c| {
        c.tee_roots_dir = Some(roots.clone());
        c.tpm_ca_dir = Some(tpm.path("ca"));
    })
    .await;
    let mut agent = h
        .agent_with("cvm", |c| {
            c.tpm = Some(vouch_agent::TpmConfig {
                tcti: tpm.tcti(),
                key_alg: "rsa".into(),
                pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7],
                ima_log: None,
                eventlog: None,
                ek_handle: None,
            })
        })
        .await;
    let client = h.client();
    let attest = |ev: Evidence| {
        let client = client.clone();
        async move {
            client
                .attest(&AttestRequest {
                    evidence: ev,
                    result_audience: None,
                })
                .await
                .unwrap_err()
        }
    };
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let ask = vouch_x509::pem_certificates(&pem)[0].clone();
    let snp = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    let chain = [vcek.clone(), ask.clone()];

    // The quote verifies; the real reports are bound to others' data.
    let nonce = fresh_nonce(&client).await;
    let (ev, tpm_part) = composite(&mut agent, &nonce, "sev-snp", &snp, &chain).await;
    let e = attest(ev).await;
    assert_eq!(e.kind(), Some(ErrorKind::TeeEvidence), "{e}");
    assert!(
        e.to_string()
            .contains("does not bind this nonce, agent key, measurements and the quoting AK"),
        "{e}"
    );
    for (tee, file) in [
        ("tdx", "tdx/quote_v4.dat"),
        ("sgx", "sgx/occlum_quote_v3.dat"),
    ] {
        let nonce = fresh_nonce(&client).await;
        let (ev, _) = composite(&mut agent, &nonce, tee, &read_testdata(file), &[]).await;
        let e = attest(ev).await;
        assert!(e.to_string().contains("quoting AK"), "{tee}: {e}");
    }
    // The same quote again under a new nonce: its extraData names the old one.
    let nonce2 = fresh_nonce(&client).await;
    let (fresh, _) = composite(&mut agent, &nonce2, "sev-snp", &snp, &chain).await;
    let mut replay: CompositePayload =
        serde_json::from_slice(&B64.decode(&fresh.payload).unwrap()).unwrap();
    replay.tpm.attest = tpm_part.attest.clone();
    replay.tpm.quote_signature = tpm_part.quote_signature.clone();
    let e = attest(sign_composite(
        &agent,
        &fresh.key_id,
        replay.tpm,
        "sev-snp",
        &snp,
        &chain,
    ))
    .await;
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    // One flipped byte in the quote signature.
    let nonce = fresh_nonce(&client).await;
    let (ev, mut t) = composite(&mut agent, &nonce, "sev-snp", &snp, &chain).await;
    let mut sig = B64.decode(&t.quote_signature).unwrap();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    t.quote_signature = B64.encode(&sig);
    let e = attest(sign_composite(
        &agent, &ev.key_id, t, "sev-snp", &snp, &chain,
    ))
    .await;
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    // One flipped byte in the report: its signature fails.
    let mut bad = snp.clone();
    bad[0x90] ^= 1;
    let nonce = fresh_nonce(&client).await;
    let (ev, _) = composite(&mut agent, &nonce, "sev-snp", &bad, &chain).await;
    let e = attest(ev).await;
    assert!(e.to_string().contains("signature"), "{e}");
    // Composite evidence signed as `tpm` evidence does not verify.
    let nonce = fresh_nonce(&client).await;
    let (mut ev, _) = composite(&mut agent, &nonce, "sev-snp", &snp, &chain).await;
    ev.kind = EvidenceKind::Tpm;
    let e = attest(ev).await;
    assert_eq!(e.kind(), Some(ErrorKind::EvidenceSignature), "{e}");
    // A node without an enrolled TPM cannot send composite evidence.
    let mut plain = h.agent("plain").await;
    let nonce = fresh_nonce(&client).await;
    let sw = plain.evidence(&nonce).unwrap();
    let tpm_less = vouch_core::TpmPayload {
        measurements: sw.payload.clone(),
        ..Default::default()
    };
    let e = attest(sign_composite(
        &plain, &sw.key_id, tpm_less, "sev-snp", &snp, &chain,
    ))
    .await;
    assert_eq!(e.kind(), Some(ErrorKind::TpmNotEnrolled), "{e}");
    assert_eq!(
        h.store.attestation_count().await.unwrap(),
        0,
        "nothing recorded"
    );
    // The same agent's plain `tpm` evidence still attests: the refusals above were the TEE's.
    let r = agent
        .tpm_evidence(&fresh_nonce(&client).await)
        .await
        .unwrap();
    client
        .attest(&AttestRequest {
            evidence: r,
            result_audience: None,
        })
        .await
        .unwrap();
    assert_eq!(h.store.attestation_count().await.unwrap(), 1);
}

async fn fresh_nonce(client: &vouch_agent::VerifierClient) -> String {
    client.challenge().await.unwrap().nonce
}
