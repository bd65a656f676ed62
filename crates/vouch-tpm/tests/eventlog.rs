//! A real firmware event log (SeaBIOS on QEMU, crypto-agile, SHA-256) with the quote it came
//! with (see tests/data/SOURCES.md): the quote verifies, the log replays to the quoted PCRs,
//! and every tampering is refused or stops counting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::BTreeSet;
use vouch_tpm::{
    Ak, EventLog, HashAlg, PcrValues, QuotePolicy, TpmError, TpmsAttest, verify_quote,
};
use x509_cert::der::{Decode, Encode};

struct Sample {
    ak_spki: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
    log: Vec<u8>,
}

fn sample() -> Sample {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/seabios_qemu_tpm_boot.json"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    // The sample's PEM keeps the base64 on one line, which strict RFC 7468 parsers refuse.
    let pem: String = v["ak_cert"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let cert = x509_cert::Certificate::from_der(&B64.decode(pem).unwrap()).unwrap();
    let mut bank = std::collections::BTreeMap::new();
    for p in v["pcrs"]["pcr_values"].as_array().unwrap() {
        bank.insert(
            p["pcr_index"].as_u64().unwrap() as u8,
            hex::decode(p["pcr_value"].as_str().unwrap()).unwrap(),
        );
    }
    let mut pcrs = PcrValues::default();
    pcrs.0.insert(HashAlg::Sha256, bank);
    Sample {
        ak_spki: cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap(),
        message: B64.decode(v["quote_data"].as_str().unwrap()).unwrap(),
        signature: B64.decode(v["signature"].as_str().unwrap()).unwrap(),
        pcrs,
        log: B64.decode(v["log_data"].as_str().unwrap()).unwrap(),
    }
}

fn all_pcrs() -> BTreeSet<u8> {
    (0..8).collect()
}

#[test]
fn the_binary_file_is_the_logged_base64() {
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/seabios_qemu_binary_bios_measurements"
    ))
    .unwrap();
    assert_eq!(file, sample().log);
}

#[test]
fn the_real_quote_verifies_and_the_log_replays_to_it() {
    let s = sample();
    let nonce = TpmsAttest::parse(&s.message).unwrap().extra_data;
    verify_quote(
        &Ak::from_spki(&s.ak_spki),
        &s.message,
        &s.signature,
        &s.pcrs,
        &nonce,
        &QuotePolicy::default(),
    )
    .unwrap();

    let log = EventLog::parse(&s.log).unwrap();
    let spec = log.spec.as_ref().unwrap();
    assert_eq!(spec.algorithms, vec![(0x000b, 32)]);
    assert_eq!(log.events.len(), 17);
    assert_eq!(log.startup_locality, 0);
    assert_eq!(log.replay().0[&HashAlg::Sha256], s.pcrs.0[&HashAlg::Sha256]);
    let checked = log.check(&s.pcrs).unwrap();
    assert_eq!(checked[&HashAlg::Sha256], all_pcrs());

    let c = log.claims(HashAlg::Sha256, &checked[&HashAlg::Sha256]);
    assert_eq!(c.events, 17);
    assert_eq!(c.events_by_type["EV_SEPARATOR"], 8);
    assert_eq!(c.events_by_type["EV_IPL"], 1);
    assert_eq!(c.secure_boot, None, "SeaBIOS has no UEFI Secure Boot");
    assert_eq!(c.invalid_separators, 0);
    assert_eq!(
        c.actions,
        [
            "Start Option ROM Scan",
            "Calling INT 19h",
            "Booting BCV device 80h (HDD)"
        ]
    );
    assert!(c.boot_applications.is_empty());
}

/// Byte offset of event `n` (1-based after the header) and its digest.
fn event_offsets(log: &[u8]) -> Vec<usize> {
    let mut at = 32 + u32::from_le_bytes(log[28..32].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    while at < log.len() {
        out.push(at);
        // pcr, type, count, (alg u16, 32 bytes), size, data
        let size = u32::from_le_bytes(log[at + 46..at + 50].try_into().unwrap()) as usize;
        at += 50 + size;
    }
    out
}

#[test]
fn a_flipped_digest_byte_does_not_replay() {
    let s = sample();
    let offs = event_offsets(&s.log);
    assert_eq!(offs.len(), 17);
    for (i, at) in offs.iter().enumerate() {
        let mut log = s.log.clone();
        log[at + 14] ^= 0x01; // first byte of the SHA-256 digest
        let parsed = EventLog::parse(&log).unwrap();
        let err = parsed.check(&s.pcrs).unwrap_err();
        assert!(
            matches!(err, TpmError::EventLogReplay { .. }),
            "event {i}: {err}"
        );
    }
}

#[test]
fn a_dropped_or_added_event_does_not_replay() {
    let s = sample();
    let offs = event_offsets(&s.log);
    // Drop the last event (the MBR partition table, PCR 5).
    let dropped = EventLog::parse(&s.log[..*offs.last().unwrap()]).unwrap();
    let err = dropped.check(&s.pcrs).unwrap_err();
    assert!(
        matches!(err, TpmError::EventLogReplay { pcr: 5, .. }),
        "{err}"
    );
    // Repeat it.
    let mut doubled = s.log.clone();
    doubled.extend_from_slice(&s.log[*offs.last().unwrap()..]);
    let err = EventLog::parse(&doubled)
        .unwrap()
        .check(&s.pcrs)
        .unwrap_err();
    assert!(
        matches!(err, TpmError::EventLogReplay { pcr: 5, .. }),
        "{err}"
    );
}

#[test]
fn a_quoted_pcr_that_differs_is_refused() {
    let s = sample();
    let log = EventLog::parse(&s.log).unwrap();
    let mut pcrs = s.pcrs.clone();
    pcrs.0
        .get_mut(&HashAlg::Sha256)
        .unwrap()
        .get_mut(&4)
        .unwrap()[31] ^= 1;
    let err = log.check(&pcrs).unwrap_err();
    assert!(
        matches!(err, TpmError::EventLogReplay { pcr: 4, .. }),
        "{err}"
    );
    // A log for another bank than the quote's cannot vouch for it.
    let mut sha1 = PcrValues::default();
    sha1.0.insert(HashAlg::Sha1, [(0u8, vec![0u8; 20])].into());
    assert!(log.check(&sha1).is_err());
}

#[test]
fn altered_event_data_stops_counting_as_a_claim() {
    let s = sample();
    let mut log = s.log.clone();
    let at = log
        .windows(b"Calling INT 19h".len())
        .position(|w| w == b"Calling INT 19h")
        .unwrap();
    log[at] = b'X';
    let parsed = EventLog::parse(&log).unwrap();
    // The data is not what the quote covers, so the replay still matches…
    let checked = parsed.check(&s.pcrs).unwrap();
    // …but a string whose digest is not its hash is not taken as a claim.
    let c = parsed.claims(HashAlg::Sha256, &checked[&HashAlg::Sha256]);
    assert!(!c.actions.iter().any(|a| a.contains("INT 19h")), "{c:?}");
    assert_eq!(c.actions.len(), 2);
}

#[test]
fn claims_come_only_from_verified_pcrs() {
    let s = sample();
    let log = EventLog::parse(&s.log).unwrap();
    let only0: BTreeSet<u8> = [0].into();
    let c = log.claims(HashAlg::Sha256, &only0);
    assert_eq!(c.events, 1);
    assert!(c.actions.is_empty());
}

#[test]
fn malformed_logs_are_refused_with_a_reason() {
    let s = sample();
    let offs = event_offsets(&s.log);
    let first = offs[0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", s.log[..s.log.len() - 3].to_vec()),
        ("pcr 24", {
            let mut l = s.log.clone();
            l[first..first + 4].copy_from_slice(&24u32.to_le_bytes());
            l
        }),
        ("undeclared algorithm", {
            let mut l = s.log.clone();
            l[first + 12..first + 14].copy_from_slice(&0x000cu16.to_le_bytes());
            l
        }),
        ("two digests", {
            let mut l = s.log.clone();
            l[first + 8..first + 12].copy_from_slice(&2u32.to_le_bytes());
            l
        }),
        ("huge event", {
            let mut l = s.log.clone();
            l[first + 46..first + 50].copy_from_slice(&u32::MAX.to_le_bytes());
            l
        }),
        ("wrong sha256 size in the header", {
            let mut l = s.log.clone();
            // digestSize of the one algorithm: header event data starts at 32.
            l[32 + 30..32 + 32].copy_from_slice(&20u16.to_le_bytes());
            l
        }),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let err = EventLog::parse(&bytes).unwrap_err();
        assert!(!err.to_string().is_empty(), "{what}");
    }
}

#[test]
fn the_parser_is_bounded() {
    let big = vec![0u8; vouch_tpm::MAX_EVENT_LOG + 1];
    assert!(matches!(
        EventLog::parse(&big),
        Err(TpmError::TooLarge { .. })
    ));
}

/// The OVMF (UEFI) crypto-agile log with four banks and the legacy SeaBIOS TPM 1.2 log, with
/// the PCRs the running kernel read and a quote over the same boot (tests/data/SOURCES.md).
fn firmware_logs() -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/qemu_firmware_logs.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn banks(v: &serde_json::Value, pcrs: &[u8]) -> PcrValues {
    let mut out = PcrValues::default();
    for (name, values) in v.as_object().unwrap() {
        let bank = HashAlg::parse(name).unwrap();
        let b = out.0.entry(bank).or_default();
        for i in pcrs {
            b.insert(
                *i,
                hex::decode(values[*i as usize].as_str().unwrap()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn a_real_uefi_log_replays_in_all_four_banks_and_yields_secure_boot_claims() {
    let v = firmware_logs();
    let log = EventLog::parse(&data("ovmf_binary_bios_measurements")).unwrap();
    assert_eq!(log.events.len(), 31);
    assert_eq!(
        log.banks(),
        [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512
        ]
    );
    // Every register the log touches, in every bank, as the kernel read it from the TPM.
    let quoted = banks(&v["ovmf"]["pcrs"], &[0, 1, 2, 3, 4, 5, 6, 7, 9]);
    let checked = log.check(&quoted).unwrap();
    assert_eq!(checked.len(), 4);
    assert!(checked.values().all(|s| s.len() == 9));

    let c = log.claims(HashAlg::Sha256, &checked[&HashAlg::Sha256]);
    // Secure Boot was built in but no keys were enrolled: the measured variable says 0.
    assert_eq!(c.secure_boot, Some(false));
    for var in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
        assert!(c.secure_boot_variables.contains_key(var), "{var}: {c:?}");
    }
    assert_eq!(
        c.boot_applications.len(),
        1,
        "the kernel given with -kernel"
    );
    assert_eq!(
        c.boot_loader.as_deref(),
        Some(c.boot_applications[0].as_str())
    );
    assert_eq!(c.kernel, None);
    assert_eq!(
        c.actions,
        [
            "Calling EFI Application from Boot Option",
            "Exit Boot Services Invocation",
            "Exit Boot Services Returned with Success"
        ]
    );
    assert_eq!(c.invalid_separators, 0);
    assert_eq!(c.events_by_type["EV_EFI_VARIABLE_DRIVER_CONFIG"], 5);

    // A SecureBoot variable event rewritten to say 1 does not replay (its data is what the
    // firmware measured), so it cannot make a claim.
    let mut forged = data("ovmf_binary_bios_measurements");
    let name = "SecureBoot"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect::<Vec<u8>>();
    let at = forged
        .windows(name.len())
        .position(|w| w == name.as_slice())
        .unwrap()
        + name.len();
    assert_eq!(forged[at], 0);
    forged[at] = 1;
    let parsed = EventLog::parse(&forged).unwrap();
    let checked = parsed.check(&quoted).unwrap();
    let c = parsed.claims(HashAlg::Sha256, &checked[&HashAlg::Sha256]);
    assert_eq!(c.secure_boot, None, "unmeasured data is not a claim");
    assert!(!c.secure_boot_variables.contains_key("SecureBoot"));
}

#[test]
fn the_ecdsa_quote_over_the_uefi_boot_verifies() {
    let v = firmware_logs();
    let q = &v["ovmf"]["quote"];
    let pem: String = q["ak_spki_pem"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let spki = B64.decode(pem).unwrap();
    let pcrs = {
        let mut p = PcrValues::default();
        let all = banks(&v["ovmf"]["pcrs"], &[0, 1, 2, 3, 4, 5, 6, 7]);
        p.0.insert(HashAlg::Sha256, all.0[&HashAlg::Sha256].clone());
        p
    };
    let attest = hex::decode(q["attest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(q["signature"].as_str().unwrap()).unwrap();
    let nonce = hex::decode(q["qualifying_data"].as_str().unwrap()).unwrap();
    let c = verify_quote(
        &Ak::from_spki(&spki),
        &attest,
        &sig,
        &pcrs,
        &nonce,
        &QuotePolicy::default(),
    )
    .unwrap();
    assert_eq!(c.signature, "ecdsa-sha256");
    // The quoted PCRs are the ones the event log replays to.
    let log = EventLog::parse(&data("ovmf_binary_bios_measurements")).unwrap();
    log.check(&pcrs).unwrap();
    // One flipped byte of the signature, or a PCR value that the quote did not sign: refused.
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert!(
        verify_quote(
            &Ak::from_spki(&spki),
            &attest,
            &bad,
            &pcrs,
            &nonce,
            &QuotePolicy::default()
        )
        .is_err()
    );
}

#[test]
fn a_real_legacy_sha1_log_replays() {
    let v = firmware_logs();
    let log = EventLog::parse(&data("seabios_tpm12_binary_bios_measurements")).unwrap();
    assert!(log.spec.is_none(), "TPM 1.2 format, no Spec ID header");
    assert_eq!(log.events.len(), 15);
    let quoted = banks(&v["seabios_tpm12"]["pcrs"], &[0, 1, 2, 3, 4, 5, 6, 7]);
    let checked = log.check(&quoted).unwrap();
    assert_eq!(checked[&HashAlg::Sha1].len(), 8);
    let c = log.claims(HashAlg::Sha1, &checked[&HashAlg::Sha1]);
    assert_eq!(c.actions, ["Start Option ROM Scan", "Calling INT 19h"]);
    // The first event's digest flipped: the replay no longer matches PCR 1.
    let mut bad = data("seabios_tpm12_binary_bios_measurements");
    bad[8] ^= 1;
    let err = EventLog::parse(&bad).unwrap().check(&quoted).unwrap_err();
    assert!(
        matches!(err, TpmError::EventLogReplay { pcr: 1, .. }),
        "{err}"
    );
}
