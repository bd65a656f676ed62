//! TPM attestation end to end on a real software TPM: enrollment with EK-certificate checks and
//! credential activation, hybrid evidence (software measurements bound into the quote), PCR
//! reference values, and the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use vouch_agent::{Agent, AgentConfig, TpmConfig};
use vouch_core::wire::{AttestRequest, TpmEnrollRequest, tpm_enroll_signing_input};
use vouch_core::{ArStatus, ErrorKind, TrustClaim};
use vouch_rp::{Requirements, ResultVerifier};
use vouch_server::{create_join_token, unix_now};
use vouch_testkit::Swtpm;

mod common;
mod tpm_ima;
use common::Harness as Setup;
use tpm_ima::{ima_line, measure, real_ima_log};

/// A verifier trusting the EK CAs in `ca_dir`.
async fn server(ca_dir: std::path::PathBuf) -> Setup {
    Setup::new(|c| c.tpm_ca_dir = Some(ca_dir)).await
}

async fn agent(s: &Setup, tpm: &Swtpm, name: &str) -> Result<Agent, vouch_agent::AgentError> {
    agent_with(
        s,
        tpm,
        "rsa",
        name,
        vec![0, 1, 2, 3, 4, 5, 6, 7, 16],
        None,
        None,
    )
    .await
}

async fn agent_with(
    s: &Setup,
    tpm: &Swtpm,
    key_alg: &str,
    name: &str,
    pcrs: Vec<u8>,
    ima_log: Option<std::path::PathBuf>,
    eventlog: Option<std::path::PathBuf>,
) -> Result<Agent, vouch_agent::AgentError> {
    let exe = s.dir.path().join(format!("{name}.bin"));
    std::fs::write(&exe, name).unwrap();
    let data_dir = s.dir.path().join(format!("agent-{name}"));
    let join_token = if data_dir.join("enrollment.json").exists() {
        None
    } else {
        Some(
            create_join_token(s.store.as_ref(), 600, None)
                .await
                .unwrap(),
        )
    };
    Agent::new(AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir,
        join_token,
        workload_name: name.into(),
        exe: Some(exe),
        tpm: Some(TpmConfig {
            tcti: tpm.tcti(),
            key_alg: key_alg.into(),
            pcrs,
            ima_log,
            eventlog,
            ek_handle: None,
        }),
        result_audience: Some("rp".into()),
        ..AgentConfig::default()
    })
    .await
}

/// Agent `ima` quoting PCRs 10 and 16, sending `ima_log`.
async fn ima_agent(
    s: &Setup,
    tpm: &Swtpm,
    ima_log: Option<std::path::PathBuf>,
) -> Result<Agent, vouch_agent::AgentError> {
    agent_with(s, tpm, "rsa", "ima", vec![10, 16], ima_log, None).await
}

/// Make agent `name`'s executable (`{name}.bin`, as [`agent_with`] writes it) a reference value.
async fn allow_exe(s: &Setup, name: &str) {
    let sha = vouch_evidence::sha256_file(&s.dir.path().join(format!("{name}.bin"))).unwrap();
    s.refvalue("executable", name, &sha).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_backed_attestation_end_to_end() {
    let tpm = Swtpm::start("sha256");
    tpm.extend(16, "sha256", "01");
    let s = server(tpm.path("ca")).await;
    let mut a = agent(&s, &tpm, "app").await.unwrap();
    allow_exe(&s, "app").await;

    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let jwks = a.client().jwks().await.unwrap();
    let rp = ResultVerifier::from_jwks_json(&jwks).unwrap();
    let mut req = Requirements::for_audience("rp");
    req.tiers
        .insert(TrustClaim::Hardware, vouch_core::TrustTier::Affirming);
    let v = rp.verify(&r.result, &req).unwrap();
    assert_eq!(
        v.ear.submods["workload"]
            .trust_vector
            .get(TrustClaim::Hardware),
        2
    );
    let rec = s
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.evidence_kind, "tpm");
    assert_eq!(rec.claims["evidence"]["hardware_backed"], true);
    assert!(
        rec.claims["tpm"]["ek_issuer"]
            .as_str()
            .unwrap()
            .contains("swtpm-localca")
    );

    // A registration entry bound to this TPM's EK (a node selector only the verifier can
    // vouch for) grants an X.509-SVID; the same entry for another EK does not.
    {
        use rcgen::PublicKeyData as _;
        use sha2::Digest as _;
        use vouch_identity::{Entry, Selector, SpiffeId};
        let node = a.enrollment().node_id.clone();
        let ek = s.store.tpm_key(&node).await.unwrap().unwrap().ek_public;
        let ek_hash = hex::encode(sha2::Sha256::digest(&ek));
        for (path, hash) in [("/tpm-node", ek_hash.clone()), ("/other", "00".repeat(32))] {
            let e = Entry::new(
                format!("e{path}"),
                &SpiffeId::parse(&format!("spiffe://vouch.local{path}")).unwrap(),
                vec![
                    Selector::parse("vouch:workload:app").unwrap(),
                    Selector::parse(&format!("tpm:ek_sha256:{hash}")).unwrap(),
                    Selector::parse("vouch:evidence:tpm").unwrap(),
                ],
                600,
                unix_now(),
            )
            .unwrap();
            s.store.add_entry(&e).await.unwrap();
        }
        let leaf = rcgen::KeyPair::generate().unwrap();
        let pk = B64.encode(leaf.subject_public_key_info());
        let key_id = a.enrollment().key_id.clone();
        let r = a
            .client()
            .svid(&vouch_core::wire::SvidRequest {
                signature: a.key().sign_b64(&vouch_core::wire::svid_signing_input(
                    &key_id,
                    "app",
                    &pk,
                    &[],
                )),
                key_id,
                workload: "app".into(),
                public_key: pk,
                selectors: vec![],
            })
            .await
            .unwrap();
        let ids: Vec<&str> = r.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        assert_eq!(ids, ["spiffe://vouch.local/tpm-node"]);
    }

    // PCR 16 as a reference value: affirming now, contraindicated once it is extended.
    let pcr16 = rec.claims["tpm"]["pcrs"]["sha256"]["16"]
        .as_str()
        .unwrap()
        .to_string();
    s.refvalue("pcr", "sha256:16", &pcr16).await;
    let one = a.attest_once().await.unwrap();
    assert_eq!(one.status, ArStatus::Affirming);
    // Issue 13: a quote's claims repeat while nothing measured changed (the TPM clock counter
    // is checked, not claimed), so a repeat TPM attestation can reuse its appraisal.
    let two = a.attest_once().await.unwrap();
    let tpm_claims = |id: String| {
        let store = s.store.clone();
        async move { store.attestation(&id).await.unwrap().unwrap().claims["tpm"].clone() }
    };
    let (c1, c2) = (
        tpm_claims(one.attestation_id).await,
        tpm_claims(two.attestation_id).await,
    );
    assert_eq!(c1, c2);
    assert!(c1["clock"].get("clock").is_none(), "{}", c1["clock"]);
    assert!(c1["clock"]["reset_count"].is_u64());
    tpm.extend(16, "sha256", "02");
    let bad = a.attest_once().await.unwrap();
    assert_eq!(bad.status, ArStatus::Contraindicated);
    assert!(
        bad.reasons.iter().any(|x| x.contains("(pcr)")),
        "{:?}",
        bad.reasons
    );

    // Hybrid binding: an agent that alters its measurements after quoting (re-signing them
    // with its own key) is caught, because the quote's extraData covers the exact bytes.
    let c = a.client().clone();
    let n = c.challenge().await.unwrap().nonce;
    let ev = a.tpm_evidence(&n).await.unwrap();
    let mut p: vouch_core::TpmPayload =
        serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
    let mut m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&p.measurements).unwrap()).unwrap();
    m.kernel.push_str("-altered");
    p.measurements = B64.encode(serde_json::to_vec(&m).unwrap());
    let payload = B64.encode(serde_json::to_vec(&p).unwrap());
    let forged = vouch_core::Evidence {
        signature: a.key().sign_b64(&vouch_core::evidence_signing_input(
            vouch_core::EvidenceKind::Tpm,
            &payload,
        )),
        payload,
        ..ev.clone()
    };
    let e = c
        .attest(&AttestRequest {
            evidence: forged,
            result_audience: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");

    // Replaying accepted evidence: the AK's clock has not advanced since, so the quote is
    // refused as replayed (before the nonce's own single-use check is even reached).
    let n = c.challenge().await.unwrap().nonce;
    let ev = a.tpm_evidence(&n).await.unwrap();
    let req = AttestRequest {
        evidence: ev,
        result_audience: None,
    };
    c.attest(&req).await.unwrap();
    let e = c.attest(&req).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    assert!(e.to_string().contains("replayed"), "{e}");

    // Re-enrolling without completing credential activation leaves no usable AK.
    let id = vouch_agent::Tpm::new(
        TpmConfig {
            tcti: tpm.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![16],
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        },
        &s.dir.path().join("agent-app/tpm"),
    )
    .identity()
    .unwrap();
    let key_id = a.enrollment().key_id.clone();
    let (ekp, akp) = (B64.encode(&id.ek_public), B64.encode(&id.ak_public));
    let cert = id.ek_cert.as_ref().map(|c| B64.encode(c));
    c.tpm_enroll(&TpmEnrollRequest {
        signature: a.key().sign_b64(&tpm_enroll_signing_input(
            &key_id,
            &[&ekp, cert.as_deref().unwrap_or(""), &akp],
        )),
        key_id,
        ek_public: ekp,
        ek_cert: cert,
        ak_public: akp,
    })
    .await
    .unwrap();
    let e = a.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmNotEnrolled), "{e}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ek_certificate_from_an_untrusted_ca_is_refused() {
    let tpm = Swtpm::start("sha256");
    let other = Swtpm::start("sha256");
    let s = server(other.path("ca")).await;
    let e = agent(&s, &tpm, "app").await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("no trusted manufacturer CA"), "{e}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ima_log_replays_incrementally_and_denied_files_stay_denied() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let log = real_ima_log(&tpm, s.dir.path());
    let mut a = ima_agent(&s, &tpm, Some(log.clone())).await.unwrap();
    allow_exe(&s, "ima").await;

    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    assert_eq!(r.ima_position, Some(2));

    // A new measurement: only it is sent and replayed.
    measure(&tpm, &log, &ima_line("/usr/bin/tool", b"tool v1"));
    let r = a.attest_once().await.unwrap();
    assert_eq!((r.status, r.ima_position), (ArStatus::Affirming, Some(3)));
    let rec = s
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.claims["tpm"]["ima"]["new_entries"], 1);

    // A denied file is measured: contraindicated, and it stays so on later rounds.
    let miner = vouch_tpm::HashAlg::Sha256.digest(&[b"xmrig".as_slice()]);
    s.refvalue("ima_deny", &hex::encode(&miner), "cryptominer")
        .await;
    measure(&tpm, &log, &ima_line("/tmp/xmrig", b"xmrig"));
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("(ima)") && x.contains("cryptominer")),
        "{:?}",
        r.reasons
    );
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "sticky for the boot");

    // An altered log (a path rewritten) is refused once it has to be replayed from the start.
    let tampered = std::fs::read_to_string(&log)
        .unwrap()
        .replace("/tmp/xmrig", "/tmp/xmriG");
    std::fs::write(&log, tampered).unwrap();
    drop(a);
    let mut fresh = ima_agent(&s, &tpm, Some(log.clone())).await.unwrap();
    let e = fresh.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    assert!(e.to_string().contains("template hash"), "{e}");

    // A log with an entry removed does not replay to the quoted PCR 10.
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .replace("/tmp/xmriG", "/tmp/xmrig")
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&log, lines.concat()).unwrap();
    let e = fresh.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    assert!(e.to_string().contains("does not replay"), "{e}");
    s.server.shutdown().await;
}

/// The real SeaBIOS event log (vouch-tpm/tests/data) is replayed into the swtpm's PCRs 0–7, as
/// the firmware would have extended them; the agent sends it with each quote.
fn boot_like_seabios(tpm: &Swtpm) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vouch-tpm/tests/data/seabios_qemu_binary_bios_measurements"
    ));
    let log = vouch_tpm::EventLog::parse(&std::fs::read(&path).unwrap()).unwrap();
    for e in &log.events {
        if e.event_type != vouch_tpm::EV_NO_ACTION {
            let d = e.digest(vouch_tpm::HashAlg::Sha256).unwrap();
            tpm.extend(e.pcr, "sha256", &hex::encode(d));
        }
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_boot_event_log_replays_and_gates_the_result() {
    let tpm = Swtpm::start("sha256");
    let log = boot_like_seabios(&tpm);
    let s = server(tpm.path("ca")).await;
    let pcrs: Vec<u8> = (0..10).collect();
    let mut a = agent_with(
        &s,
        &tpm,
        "rsa",
        "boot",
        pcrs.clone(),
        None,
        Some(log.clone()),
    )
    .await
    .unwrap();
    s.refvalue("boot", "required", "yes").await;
    allow_exe(&s, "boot").await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let rec = s
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    let boot = &rec.claims["tpm"]["eventlog"];
    assert_eq!(boot["events"], 17, "{boot}");
    assert_eq!(boot["actions"][1], "Calling INT 19h");
    assert_eq!(
        boot["verified_pcrs"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
    );

    // Secure Boot required: SeaBIOS has none, so the result turns contraindicated.
    s.refvalue("boot", "secure_boot", "yes").await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated);
    assert!(
        r.reasons.iter().any(|x| x.contains("Secure Boot")),
        "{:?}",
        r.reasons
    );

    // A log that does not replay to the quoted PCRs is refused outright.
    let tampered = s.dir.path().join("tampered_log");
    // One flipped byte in the first measured event's digest.
    let mut bytes = std::fs::read(&log).unwrap();
    let first = 32 + u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize;
    bytes[first + 14] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    drop(a);
    let mut bad = agent_with(&s, &tpm, "rsa", "boot", pcrs.clone(), None, Some(tampered))
        .await
        .unwrap();
    let e = bad.attest_once().await.unwrap_err();
    assert!(e.to_string().contains("event log replays"), "{e}");

    // A PCR extended after boot (outside the log) no longer matches the log either.
    tpm.extend(4, "sha256", "aa");
    let mut a = agent_with(&s, &tpm, "rsa", "boot", pcrs, None, Some(log))
        .await
        .unwrap();
    let e = a.attest_once().await.unwrap_err();
    assert!(e.to_string().contains("PCR 4"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecc_p384_ek_enrolls_by_credential_activation_and_attests() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let mut a = agent_with(
        &s,
        &tpm,
        "ecc",
        "ecc-app",
        vec![0, 1, 2, 3, 4, 5, 6, 7],
        None,
        None,
    )
    .await
    .unwrap();
    allow_exe(&s, "ecc-app").await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let node = a.enrollment().node_id.clone();
    let t = s.store.tpm_key(&node).await.unwrap().unwrap();
    assert!(t.activated_at.is_some());
    // The EK is the high-range P-384 one whose certificate swtpm provisioned.
    let ek = vouch_tpm::TpmtPublic::from_tpm2b(&t.ek_public).unwrap();
    assert!(matches!(
        ek.key,
        vouch_tpm::PublicKey::Ecc {
            curve: vouch_tpm::EccCurve::P384,
            ..
        }
    ));
    assert!(t.ek_issuer.unwrap().contains("swtpm-localca"));
}

/// Issue 12 item 2: a miner runs and IMA measures it into PCR 10; the agent (root) stops
/// sending its IMA log, or leaves PCR 10 out of the quote, to hide it. Once the verifier has
/// replayed this boot's list, the quoted PCR 10 must equal its replay unless the log comes
/// with the quote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_ima_cannot_be_skipped_once_pcr_10_moved() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let log = real_ima_log(&tpm, s.dir.path());
    let with_log = |pcrs: Vec<u8>, log: Option<std::path::PathBuf>| {
        agent_with(&s, &tpm, "rsa", "ima", pcrs, log, None)
    };
    let mut a = with_log(vec![10, 16], Some(log.clone())).await.unwrap();
    allow_exe(&s, "ima").await;
    let miner = vouch_tpm::HashAlg::Sha256.digest(&[b"xmrig".as_slice()]);
    s.refvalue("ima_deny", &hex::encode(&miner), "cryptominer")
        .await;
    let r = a.attest_once().await.unwrap();
    assert_eq!((r.status, r.ima_position), (ArStatus::Affirming, Some(2)));
    drop(a);

    // The miner runs; the same agent key and TPM now quote without the IMA log.
    measure(&tpm, &log, &ima_line("/tmp/xmrig", b"xmrig"));
    let mut hiding = with_log(vec![10, 16], None).await.unwrap();
    let e = hiding.attest_once().await.map(|r| (r.status, r.reasons));
    let e = e.expect_err("PCR 10 moved past the verifier's replay and no IMA log came");
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    assert!(e.to_string().contains("PCR 10"), "{e}");

    // Leaving PCR 10 out of the quote hides nothing either.
    let mut hiding = with_log(vec![16], None).await.unwrap();
    let e = hiding.attest_once().await.map(|r| (r.status, r.reasons));
    let e = e.expect_err("this boot's IMA replay has begun: PCR 10 must be quoted");
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");
    assert!(e.to_string().contains("PCR 10"), "{e}");

    // Sending the log shows the miner.
    let mut a = with_log(vec![10, 16], Some(log.clone())).await.unwrap();
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert_eq!(r.ima_position, Some(3));

    // With PCR 10 where the replay left it, a quote without the log is accepted (nothing was
    // measured since) and the sticky failure still stands.
    let mut quiet = with_log(vec![10, 16], None).await.unwrap();
    let r = quiet.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains("cryptominer")),
        "{:?}",
        r.reasons
    );

    // The list sent again from its first entry starts a fresh replay but keeps the boot's
    // failures, even once the deny value behind them is gone: they last until the TPM resets.
    for (id, v) in s.store.reference_value_rows().await.unwrap() {
        if v.kind == "ima_deny" {
            s.store.remove_reference_value(id).await.unwrap();
        }
    }
    drop((a, quiet));
    let mut again = with_log(vec![10, 16], Some(log.clone())).await.unwrap();
    let r = again.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert_eq!(r.ima_position, Some(3));
    assert_eq!(
        r.reasons
            .iter()
            .filter(|x| x.contains("cryptominer"))
            .count(),
        1,
        "{:?}",
        r.reasons
    );
    s.server.shutdown().await;
}

/// Issue 12 item 2: re-enrolling the same TPM (the agent runs enrollment and credential
/// activation again) must not wipe the node's sticky IMA failures or the clock of its last
/// quote: otherwise the agent clears a detected miner, or has an older quote accepted after a
/// newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_reenrolling_the_same_tpm_keeps_ima_failures_and_the_clock() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let log = real_ima_log(&tpm, s.dir.path());
    let mut a = ima_agent(&s, &tpm, Some(log.clone())).await.unwrap();
    allow_exe(&s, "ima").await;
    let miner = vouch_tpm::HashAlg::Sha256.digest(&[b"xmrig".as_slice()]);
    s.refvalue("ima_deny", &hex::encode(&miner), "cryptominer")
        .await;
    assert_eq!(a.attest_once().await.unwrap().status, ArStatus::Affirming);
    measure(&tpm, &log, &ima_line("/tmp/xmrig", b"xmrig"));
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);

    // A quote taken now (without the log: PCR 10 is where the replay left it) and held back,
    // then a newer one accepted.
    let c = a.client().clone();
    let n = c.challenge().await.unwrap().nonce;
    let mut quiet = ima_agent(&s, &tpm, None).await.unwrap();
    let held = AttestRequest {
        evidence: quiet.tpm_evidence(&n).await.unwrap(),
        result_audience: None,
    };
    drop(quiet);
    assert_eq!(
        a.attest_once().await.unwrap().status,
        ArStatus::Contraindicated
    );
    let node = a.enrollment().node_id.clone();
    let before = s.store.tpm_key(&node).await.unwrap().unwrap();
    drop(a);

    // Enrollment and activation again, same EK and AK (the agent lost its marker).
    std::fs::remove_file(s.dir.path().join("agent-ima/tpm-enrollment.json")).unwrap();
    let mut a = ima_agent(&s, &tpm, None).await.unwrap();
    let after = s.store.tpm_key(&node).await.unwrap().unwrap();
    assert!(after.activated_at.is_some());
    assert_eq!(after.last_clock, before.last_clock, "clock history kept");
    assert_eq!(after.ima_state, before.ima_state, "IMA replay kept");

    // The held-back quote is older than the last accepted one: refused as before.
    let e = c.attest(&held).await.map(|r| r.status);
    let e = e.expect_err("an older quote after a newer one");
    assert_eq!(e.kind(), Some(ErrorKind::TpmQuote), "{e}");

    // The miner is still on the record for this boot.
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains("cryptominer")),
        "{:?}",
        r.reasons
    );
    s.server.shutdown().await;
}

/// A directory trusting the EK CAs of these TPMs.
fn ca_dir(tpms: &[&Swtpm]) -> std::path::PathBuf {
    let d = tpms[0].path("trusted-cas");
    std::fs::create_dir_all(&d).unwrap();
    for (i, t) in tpms.iter().enumerate() {
        std::fs::copy(t.ca_cert(), d.join(format!("ca{i}.pem"))).unwrap();
    }
    d
}

/// POST `body` to `path` with the verifier's admin token: the status and the JSON answer.
async fn admin_post(s: &Setup, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let token = std::fs::read_to_string(s.dir.path().join("server/keys/admin.token")).unwrap();
    let ca = std::fs::read(s.server.ca_cert.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let r = http
        .post(format!("{}{path}", s.server.base_url))
        .header("authorization", format!("Bearer {token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Move a file or directory of the agent's state aside (or back).
fn mv(dir: &std::path::Path, from: &str, to: &str) {
    std::fs::rename(dir.join(from), dir.join(to)).unwrap();
}

/// Issue 12 item 8: once a node's AK is activated, the node's agent key alone cannot bind it
/// to another TPM (a second swtpm, another EK) or to another AK of the same TPM; an admin
/// re-enrolment (`vouch node reenroll`, here its API route) allows one change, recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_another_tpm_for_a_bound_node_needs_an_admin_reenrolment() {
    let tpm = Swtpm::start("sha256");
    let other = Swtpm::start("sha256");
    let s = server(ca_dir(&[&tpm, &other])).await;
    let mut a = agent(&s, &tpm, "app").await.unwrap();
    allow_exe(&s, "app").await;
    assert_eq!(a.attest_once().await.unwrap().status, ArStatus::Affirming);
    let node = a.enrollment().node_id.clone();
    let first = s.store.tpm_key(&node).await.unwrap().unwrap();
    drop(a);

    // The agent key presents another TPM (its TPM state set aside, as if lost).
    let dir = s.dir.path().join("agent-app");
    mv(&dir, "tpm", "tpm.first");
    mv(&dir, "tpm-enrollment.json", "tpm-enrollment.first");
    let e = agent(&s, &other, "app").await.map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmBound), "{e}");
    assert!(e.to_string().contains("vouch node reenroll"), "{e}");
    // Another AK in the same TPM.
    std::fs::remove_dir_all(dir.join("tpm")).unwrap();
    let e = agent(&s, &tpm, "app").await.map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmBound), "{e}");
    assert!(e.to_string().contains("another AK"), "{e}");
    // Neither touched the binding: the first TPM and AK still attest.
    std::fs::remove_dir_all(dir.join("tpm")).unwrap();
    mv(&dir, "tpm.first", "tpm");
    mv(&dir, "tpm-enrollment.first", "tpm-enrollment.json");
    let mut a = agent(&s, &tpm, "app").await.unwrap();
    assert_eq!(a.attest_once().await.unwrap().status, ArStatus::Affirming);
    let still = s.store.tpm_key(&node).await.unwrap().unwrap();
    assert_eq!(
        (&still.ek_key, &still.ak_public),
        (&first.ek_key, &first.ak_public)
    );
    drop(a);

    // The admin re-enrolment: the next enrollment may bring another TPM.
    let path = format!("/v1/nodes/{node}/tpm/reenroll");
    let (code, body) = admin_post(
        &s,
        &path,
        serde_json::json!({"reason": "motherboard replaced", "by": "ops"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["previous_ek"], first.ek_key.clone().unwrap());
    mv(&dir, "tpm", "tpm.first");
    std::fs::remove_file(dir.join("tpm-enrollment.json")).unwrap();
    let mut b = agent(&s, &other, "app").await.unwrap();
    let r = b.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let second = s.store.tpm_key(&node).await.unwrap().unwrap();
    assert_ne!(second.ek_key, first.ek_key);
    let log = s.store.tpm_reenrollments(&node).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].requested_by, "ops");
    assert_eq!(log[0].previous_ek, first.ek_key);
    assert_eq!(log[0].ek_key, second.ek_key);
    assert!(log[0].used_at.is_some(), "used by the activation");
    drop(b);

    // Used up: back to the first TPM needs another.
    mv(&dir, "tpm", "tpm.other");
    mv(&dir, "tpm.first", "tpm");
    std::fs::remove_file(dir.join("tpm-enrollment.json")).unwrap();
    let e = agent(&s, &tpm, "app").await.map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmBound), "{e}");
    s.server.shutdown().await;
}

/// Issue 12 item 8: an EK bound to one node cannot be enrolled for another (a second agent key
/// and join token on the same machine, or a copied EK); revoking the first node frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_one_ek_cannot_be_enrolled_for_two_nodes() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let a = agent(&s, &tpm, "first").await.unwrap();
    let first = a.enrollment().node_id.clone();
    let e = agent(&s, &tpm, "second").await.map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEkInUse), "{e}");
    assert!(e.to_string().contains(&first), "{e}");

    let (code, body) = admin_post(
        &s,
        "/v1/revocations",
        serde_json::json!({"kind": "node", "target": first, "reason": "reinstalled"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let mut b = agent(&s, &tpm, "second").await.unwrap();
    allow_exe(&s, "second").await;
    let r = b.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    s.server.shutdown().await;
}

/// Issue 12 item 8: a node bound to a TPM cannot fall back to `software` evidence (signed by
/// its agent key, no quote: nothing IMA or the PCRs say reaches the verifier) unless its policy
/// allows it with a `tpm_fallback` reference value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_software_evidence_from_a_tpm_bound_node_is_refused() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let mut a = agent(&s, &tpm, "app").await.unwrap();
    allow_exe(&s, "app").await;
    assert_eq!(a.attest_once().await.unwrap().status, ArStatus::Affirming);
    let node = a.enrollment().node_id.clone();

    let c = a.client().clone();
    let software = |a: &mut Agent, nonce: &str| AttestRequest {
        evidence: a.evidence(nonce).unwrap(),
        result_audience: Some("rp".into()),
    };
    let n = c.challenge().await.unwrap().nonce;
    let e = c.attest(&software(&mut a, &n)).await.map(|r| r.status);
    let e = e.expect_err("software evidence from a TPM-bound node");
    assert_eq!(e.kind(), Some(ErrorKind::TpmRequired), "{e}");
    assert!(e.to_string().contains("tpm_fallback"), "{e}");

    // Another node's fallback does not count; this node's (or `*`) does.
    s.refvalue("tpm_fallback", "some-other-node", "software")
        .await;
    let n = c.challenge().await.unwrap().nonce;
    let e = c.attest(&software(&mut a, &n)).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmRequired), "{e}");
    s.refvalue("tpm_fallback", &node, "software").await;
    let n = c.challenge().await.unwrap().nonce;
    let r = c.attest(&software(&mut a, &n)).await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let rec = s
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.evidence_kind, "software");
    assert_eq!(rec.claims["evidence"]["hardware_backed"], false);
    s.server.shutdown().await;
}
