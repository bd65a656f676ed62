//! CRLs checked on Intel's real ones, from the DCAP collateral in testdata/tdx (the
//! root CA's CRL, signed by the Intel SGX Root CA, and the PCK Platform CA's, listing 44
//! revoked PCK certificates): each verifies under its issuer inside its window, and is refused
//! under another issuer, outside its window, and after a one-byte change anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_testkit::read_testdata;
use vouch_x509::{parse, pem_certificates, verify_crl};

struct Intel {
    root: Vec<u8>,
    platform_ca: Vec<u8>,
    root_crl: Vec<u8>,
    pck_crl: Vec<u8>,
}

fn intel() -> Intel {
    let c: serde_json::Value =
        serde_json::from_slice(&read_testdata("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let hex = |k: &str| hex::decode(c[k].as_str().unwrap()).unwrap();
    let chain = pem_certificates(c["pck_crl_issuer_chain"].as_str().unwrap());
    Intel {
        root: read_testdata("tdx/intel_sgx_root_ca.der"),
        platform_ca: chain[0].clone(),
        root_crl: hex("root_ca_crl"),
        pck_crl: hex("pck_crl"),
    }
}

/// 2025-06-25, inside both CRLs' windows (PCK CRL 2025-06-19 10:00:35 .. 2025-07-19 10:00:35).
const NOW: u64 = 1_750_809_600;
const PCK_CRL_THIS_UPDATE: u64 = 1_750_327_235;
const PCK_CRL_NEXT_UPDATE: u64 = 1_752_919_235;

#[test]
fn intels_real_crls_verify_and_list_their_serials() {
    let i = intel();
    let root = parse(&i.root, "root").unwrap();
    let platform = parse(&i.platform_ca, "platform CA").unwrap();
    let r = verify_crl(&i.root_crl, &root, NOW).unwrap();
    assert!(r.is_empty(), "the root CA revokes no platform CA");
    r.check(&platform).unwrap();

    let p = verify_crl(&i.pck_crl, &platform, NOW).unwrap();
    assert_eq!(p.len(), 44);
    assert_eq!(
        (p.this_update, p.next_update),
        (PCK_CRL_THIS_UPDATE, PCK_CRL_NEXT_UPDATE)
    );
    assert!(
        p.issuer.contains("Intel SGX PCK Platform CA"),
        "{}",
        p.issuer
    );
    assert!(p.lists(&hex::decode("6fc34e5023e728923435d61aa4b83c618166ad35").unwrap()));
    assert!(!p.lists(&hex::decode("6fc34e5023e728923435d61aa4b83c618166ad36").unwrap()));
    // The PCK certificate of the real TDX quote (UpToDate) is not on it.
    let quote = read_testdata("tdx/dcapqvl_tdx_quote.bin");
    let at = quote.windows(5).position(|w| w == b"-----").unwrap();
    let pck = pem_certificates(&String::from_utf8_lossy(&quote[at..]));
    assert_eq!(pck.len(), 3, "PCK, platform CA, root in the quote");
    let leaf = parse(&pck[0], "PCK").unwrap();
    assert_eq!(
        leaf.tbs_certificate.issuer,
        platform.tbs_certificate.subject
    );
    p.check(&leaf).unwrap();
}

#[test]
fn another_issuer_another_time_or_one_changed_byte_is_refused() {
    let i = intel();
    let root = parse(&i.root, "root").unwrap();
    let platform = parse(&i.platform_ca, "platform CA").unwrap();
    // The PCK CRL is not the root's.
    let e = verify_crl(&i.pck_crl, &root, NOW).unwrap_err();
    assert!(e.contains("not by"), "{e}");
    // Outside its window, on both sides.
    let e = verify_crl(&i.pck_crl, &platform, PCK_CRL_NEXT_UPDATE).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    let e = verify_crl(&i.pck_crl, &platform, PCK_CRL_THIS_UPDATE - 1).unwrap_err();
    assert!(e.contains("not valid before"), "{e}");
    verify_crl(&i.pck_crl, &platform, PCK_CRL_NEXT_UPDATE - 1).unwrap();
    // Every single-bit change at every offset: never accepted.
    for crl in [&i.root_crl, &i.pck_crl] {
        let issuer = if crl == &i.root_crl { &root } else { &platform };
        for at in 0..crl.len() {
            let mut bad = crl.clone();
            bad[at] ^= 0x01;
            assert!(
                verify_crl(&bad, issuer, NOW).is_err(),
                "byte {at} of a {}-byte CRL changed and still accepted",
                crl.len()
            );
        }
    }
    // Trailing bytes and oversize input.
    let mut long = i.pck_crl.clone();
    long.push(0);
    assert!(verify_crl(&long, &platform, NOW).is_err());
    let e = verify_crl(&vec![0x30; 5 * 1024 * 1024], &platform, NOW).unwrap_err();
    assert!(e.contains("at most"), "{e}");
}
