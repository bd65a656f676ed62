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
