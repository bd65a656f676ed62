//! The real DCAP quotes in testdata (an SGX v3 quote from Occlum, TDX v4 quotes from
//! Trustee and from dcap-qvl; see SOURCES.md): each verifies against the Intel SGX Root CA at a
//! time inside its PCK chain's window, and is refused after a one-byte change anywhere, with
//! another root, and outside the window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_tee::TeeError;
use vouch_tee::dcap::{DcapVerifier, QuoteBody};
use vouch_testkit::read_testdata;

fn verifier() -> DcapVerifier {
    DcapVerifier::new(&read_testdata("tdx/intel_sgx_root_ca.der")).unwrap()
}

/// 2025-06-25: inside every sample's PCK certificate (the latest from 2025-02-06).
const NOW: u64 = 1_750_809_600;
const SAMPLES: [&str; 5] = [
    "sgx/occlum_quote_v3.dat",
    "tdx/quote_v4.dat",
    "tdx/dcapqvl_tdx_quote.bin",
    "tdx/trustee_quote_6.dat",
    // A v5 quote with a TD 1.5 body (type 3).
    "tdx/trustee_quote_v5.dat",
];

#[test]
fn every_real_quote_verifies_with_its_claims() {
    let v = verifier();
    let sgx = v.verify(&read_testdata(SAMPLES[0]), NOW).unwrap();
    assert_eq!(sgx.version, 3);
    assert_eq!((sgx.qe_svn, sgx.pce_svn), (8, 13));
    match &sgx.body {
        QuoteBody::Sgx {
            mr_enclave,
            debug,
            report_data,
            ..
        } => {
            assert_eq!(
                mr_enclave,
                "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68"
            );
            assert!(*debug, "Occlum's sample enclave is a debug enclave");
            assert!(report_data.starts_with("74657374")); // "test"
        }
        other => panic!("{other:?}"),
    }
    assert!(sgx.pck_subject.contains("Intel SGX PCK Certificate"));
    // Trustee's TD is a debug TD (TD ATTRIBUTES bit 0); dcap-qvl's is not.
    for (s, mrtd, debug) in [
        (SAMPLES[1], "705ee9381b8633a9", true),
        (SAMPLES[2], "91eb2b44d141d4ec", false),
    ] {
        let c = v.verify(&read_testdata(s), NOW).unwrap();
        assert_eq!(c.version, 4, "{s}");
        match &c.body {
            QuoteBody::Tdx {
                mr_td, debug: d, ..
            } => {
                assert!(mr_td.starts_with(mrtd), "{s}: {mr_td}");
                assert_eq!(*d, debug, "{s}");
            }
            other => panic!("{s}: {other:?}"),
        }
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["body"]["tee"], "tdx");
    }
}

#[test]
fn a_one_byte_change_anywhere_is_refused() {
    let v = verifier();
    for s in SAMPLES {
        let q = read_testdata(s);
        let quote_len = q.len() - q.iter().rev().take_while(|b| **b == 0).count();
        for at in 0..q.len() {
            let mut bad = q.clone();
            bad[at] ^= 0x01;
            assert!(
                v.verify(&bad, NOW).is_err(),
                "{s}: byte {at} of {quote_len} changed, still accepted"
            );
        }
        // The body (MRENCLAVE / MRTD): the attestation key's signature fails.
        let mut bad = q.clone();
        bad[48 + 70] ^= 0x80;
        assert!(
            matches!(v.verify(&bad, NOW), Err(TeeError::Signature(_))),
            "{s}"
        );
        assert!(v.verify(&q[..200], NOW).is_err());
    }
}

#[test]
fn another_root_or_another_time_is_refused() {
    // AMD's ARK is a valid self-signed root, but not Intel's.
    let amd = vouch_x509::pem_certificates(
        &String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap(),
    );
    let other = DcapVerifier::new(&amd[1]).unwrap();
    let v = verifier();
    for s in SAMPLES {
        let q = read_testdata(s);
        let e = other.verify(&q, NOW).unwrap_err();
        assert!(
            e.to_string().contains("trusted Intel SGX Root CA"),
            "{s}: {e}"
        );
        // 2017: before the Platform CA (2018-05-21); 2034: after it (2033-05-21).
        let e = v.verify(&q, 1_483_228_800).unwrap_err();
        assert!(e.to_string().contains("not valid before"), "{s}: {e}");
        let e = v.verify(&q, 2_019_686_400).unwrap_err();
        assert!(e.to_string().contains("expired"), "{s}: {e}");
    }
}

fn collateral(edit: impl FnOnce(&mut serde_json::Value)) -> vouch_tee::dcap::Collateral {
    let mut v: serde_json::Value =
        serde_json::from_slice(&read_testdata("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

#[test]
fn with_collateral_the_tcb_status_is_judged_inside_its_window() {
    let mut v = verifier();
    assert_eq!(
        v.add_collateral(collateral(|_| {})).unwrap(),
        "b0c06f000000"
    );
    let c = v.verify(&read_testdata(SAMPLES[2]), NOW).unwrap();
    assert_eq!(
        (c.fmspc.as_str(), c.tcb_status.as_str()),
        ("b0c06f000000", "UpToDate")
    );
    assert!(c.advisory_ids.is_empty());
    assert!(c.revocation_checked, "the collateral's CRLs were applied");
    // The other samples' platforms have no collateral here: not judged, still verified.
    let other = v.verify(&read_testdata(SAMPLES[1]), NOW).unwrap();
    assert_eq!(other.tcb_status, "not judged (no collateral)");
    assert!(!other.revocation_checked);
    // After the TCB info's and the PCK CRL's nextUpdate (2025-07-19), the collateral is
    // stale: refused, first for the CRL.
    let e = v
        .verify(&read_testdata(SAMPLES[2]), 1_753_000_000)
        .unwrap_err();
    assert!(e.to_string().contains("collateral CRL"), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    // Collateral whose TCB info was edited no longer verifies under Intel's signature.
    let mut forged = verifier();
    forged
        .add_collateral(collateral(|v| {
            let t = v["tcb_info"]
                .as_str()
                .unwrap()
                .replace("UpToDate", "OutOfDate");
            v["tcb_info"] = t.into();
        }))
        .unwrap();
    let e = forged.verify(&read_testdata(SAMPLES[2]), NOW).unwrap_err();
    assert!(e.to_string().contains("collateral appraisal"), "{e}");
    // A QE identity signature with one flipped byte: refused too, when the collateral is
    // loaded (its QE identity counts for every platform's quotes).
    let e = verifier()
        .add_collateral(collateral(|v| {
            let mut s = v["qe_identity_signature"].as_str().unwrap().to_string();
            let c = if s.starts_with('0') { "1" } else { "0" };
            s.replace_range(0..1, c);
            v["qe_identity_signature"] = s.into();
        }))
        .unwrap_err();
    assert!(matches!(e, TeeError::Signature(_)), "{e}");
    // A PCK CRL or root CA CRL with one changed byte in its signed list: refused by name.
    for (field, at) in [("pck_crl", 300), ("root_ca_crl", 120)] {
        let mut v = verifier();
        v.add_collateral(collateral(|v| {
            let mut crl = hex::decode(v[field].as_str().unwrap()).unwrap();
            crl[at] ^= 1;
            v[field] = hex::encode(crl).into();
        }))
        .unwrap();
        let e = v.verify(&read_testdata(SAMPLES[2]), NOW).unwrap_err();
        assert!(e.to_string().contains("collateral CRL"), "{field}: {e}");
    }
}
