//! The real SEV-SNP report in testdata/snp (a Milan VCEK-signed v2 report, see
//! SOURCES.md): it verifies at a time inside the certificates' windows, and is refused after a
//! one-byte change anywhere, with a wrong root, with a certificate of the chain changed, and
//! outside the validity window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_tee::TeeError;
use vouch_tee::snp::{SigningKey, SnpReport, SnpVerifier, check_vek_binding};
use vouch_testkit::read_testdata;

/// The ASK, ARK and ASVK of the sample's bundle, and the ARK alone.
fn chain() -> (Vec<Vec<u8>>, Vec<u8>) {
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let certs = vouch_x509::pem_certificates(&pem);
    assert_eq!(certs.len(), 3);
    let ark = certs
        .iter()
        .find(|c| {
            let p = vouch_x509::parse(c, "x").unwrap();
            p.tbs_certificate.subject == p.tbs_certificate.issuer
        })
        .unwrap()
        .clone();
    (certs, ark)
}

/// 2024-06-01: inside the VCEK (2023-01-24 .. 2030-01-24), ASK and ARK windows.
const NOW: u64 = 1_717_200_000;

#[test]
fn the_real_report_verifies_with_its_claims() {
    let (certs, ark) = chain();
    let v = SnpVerifier::new(&[ark]).unwrap();
    let c = v
        .verify(
            &read_testdata("snp/report_v2.bin"),
            &read_testdata("snp/vcek.der"),
            &certs,
            NOW,
        )
        .unwrap();
    assert_eq!(c.product, "Milan");
    assert!(c.ark.contains("ARK-Milan"), "{}", c.ark);
    let r = &c.report;
    assert_eq!((r.version, r.guest_svn, r.vmpl), (2, 4, 0));
    assert_eq!(r.signing_key, SigningKey::Vcek);
    assert!(!r.policy.debug && !r.policy.migrate_ma && r.policy.smt_allowed);
    assert_eq!((r.policy.abi_major, r.policy.abi_minor), (0, 0x1f));
    assert_eq!(
        r.measurement,
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert!(r.report_data.starts_with("ec6c52d7533cc2c4"));
    assert_eq!(
        (
            r.reported_tcb.bootloader,
            r.reported_tcb.tee,
            r.reported_tcb.snp,
            r.reported_tcb.microcode
        ),
        (3, 0, 8, 115)
    );
    assert_eq!(r.current_tcb.microcode, 0xce);
    assert_eq!(r.current_version, "1.52.4");
    assert!(r.platform_info.smt_enabled);
    // The claims serialise for policies.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["policy"]["debug"], false);
    assert_eq!(json["reported_tcb"]["snp"], 8);
    assert_eq!(json["signing_key"], "vcek");
}

#[test]
fn a_one_byte_change_anywhere_in_the_report_is_refused() {
    let (certs, ark) = chain();
    let v = SnpVerifier::new(&[ark]).unwrap();
    let report = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    for at in 0..report.len() {
        let mut bad = report.clone();
        bad[at] ^= 0x01;
        let e = v.verify(&bad, &vcek, &certs, NOW);
        assert!(e.is_err(), "byte 0x{at:03x} changed, still accepted");
    }
    // Which check catches it depends on where: a field, a reserved byte, or the signature.
    let mut bad = report.clone();
    bad[0x90] ^= 1; // measurement
    assert!(matches!(
        v.verify(&bad, &vcek, &certs, NOW),
        Err(TeeError::Signature(_))
    ));
    let mut bad = report.clone();
    bad[0x4C] = 1; // reserved
    let e = v.verify(&bad, &vcek, &certs, NOW).unwrap_err();
    assert!(e.to_string().contains("reserved byte at 0x04c"), "{e}");
    let mut bad = report.clone();
    bad[0x180] ^= 1; // REPORTED_TCB boot loader: no longer the VCEK's
    let e = v.verify(&bad, &vcek, &certs, NOW).unwrap_err();
    assert!(matches!(e, TeeError::Mismatch(_)), "{e}");
    assert!(v.verify(&report[..1183], &vcek, &certs, NOW).is_err());
}

#[test]
fn a_changed_certificate_or_a_wrong_root_is_refused() {
    let (certs, ark) = chain();
    let report = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    let v = SnpVerifier::new(&[ark]).unwrap();
    // One byte of the VCEK's signed part (its public key): the ASK's signature fails.
    let mut bad = vcek.clone();
    let n = bad.len();
    bad[n / 2] ^= 1;
    assert!(v.verify(&report, &bad, &certs, NOW).is_err());
    // One byte of the ASK's signed part.
    let ask_at = certs
        .iter()
        .position(|c| {
            vouch_x509::parse(c, "x")
                .unwrap()
                .tbs_certificate
                .subject
                .to_string()
                .contains("CN=SEV-Milan")
        })
        .unwrap();
    let mut bad_chain = certs.clone();
    let m = bad_chain[ask_at].len();
    bad_chain[ask_at][m / 2] ^= 1;
    let e = v.verify(&report, &vcek, &bad_chain, NOW).unwrap_err();
    assert!(matches!(e, TeeError::Chain(_)), "{e}");
    // No intermediate at all.
    assert!(v.verify(&report, &vcek, &[], NOW).is_err());
    // Another root: Intel's SGX root CA is self-signed and valid, but not AMD's ARK.
    let intel = SnpVerifier::new(&[read_testdata("tdx/intel_sgx_root_ca.der")]).unwrap();
    let e = intel.verify(&report, &vcek, &certs, NOW).unwrap_err();
    assert!(e.to_string().contains("not a trusted ARK"), "{e}");
    // A non-self-signed "root" is not accepted as a trust anchor.
    assert!(SnpVerifier::new(&[certs[ask_at].clone()]).is_err());
}

#[test]
fn outside_the_validity_window_it_is_refused() {
    let (certs, ark) = chain();
    let v = SnpVerifier::new(&[ark]).unwrap();
    let report = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    // 2023-01-01: before the VCEK's notBefore (2023-01-24).
    let e = v.verify(&report, &vcek, &certs, 1_672_531_200).unwrap_err();
    assert!(e.to_string().contains("not valid before"), "{e}");
    // 2031-01-01: after its notAfter (2030-01-24).
    let e = v.verify(&report, &vcek, &certs, 1_924_992_000).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn the_vcek_must_be_for_the_reported_tcb_and_chip() {
    let report = read_testdata("snp/report_v2.bin");
    let vcek = vouch_x509::parse(&read_testdata("snp/vcek.der"), "VCEK").unwrap();
    let r = SnpReport::parse(&report, false).unwrap();
    check_vek_binding(&vcek, &r).unwrap();
    // The same fields as another report would carry them (parsed from changed bytes).
    let mut other_tcb = report.clone();
    other_tcb[0x187] = 0x74; // microcode 116
    let r = SnpReport::parse(&other_tcb, false).unwrap();
    let e = check_vek_binding(&vcek, &r).unwrap_err();
    assert!(e.to_string().contains("microcode SPL 115"), "{e}");
    let mut other_chip = report.clone();
    other_chip[0x1A0] ^= 1;
    let r = SnpReport::parse(&other_chip, false).unwrap();
    let e = check_vek_binding(&vcek, &r).unwrap_err();
    assert!(e.to_string().contains("another chip"), "{e}");
}

#[test]
fn a_verified_chain_is_remembered_but_never_outside_its_window() {
    let (certs, ark) = chain();
    let v = SnpVerifier::new(&[ark]).unwrap();
    let report = read_testdata("snp/report_v2.bin");
    let vcek = read_testdata("snp/vcek.der");
    v.verify(&report, &vcek, &certs, NOW).unwrap();
    // Cached: still verifies, and still refuses a changed report or an expired VCEK.
    v.verify(&report, &vcek, &certs, NOW + 60).unwrap();
    let mut bad = report.clone();
    bad[0x91] ^= 1;
    assert!(matches!(
        v.verify(&bad, &vcek, &certs, NOW),
        Err(TeeError::Signature(_))
    ));
    assert!(v.verify(&report, &vcek, &certs, 1_924_992_000).is_err());
    // A changed VCEK is another chain: checked, refused.
    let mut other = vcek.clone();
    let n = other.len();
    other[n / 2] ^= 1;
    assert!(v.verify(&report, &other, &certs, NOW).is_err());
}

#[test]
fn the_vcek_comes_from_the_offline_store_when_the_report_comes_alone() {
    let (_, ark) = chain();
    let roots = tempfile::tempdir().unwrap();
    std::fs::write(roots.path().join("ark.der"), &ark).unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut r = vouch_tee::TeeRoots::from_dir(roots.path()).unwrap();
    let report = read_testdata("snp/report_v2.bin");
    let kind = vouch_tee::TeeKind::SevSnp;
    // An empty store: nothing to verify with, and the error says what is missing.
    r.add_store_dir(store.path()).unwrap();
    let e = r.verify(kind, &report, &[], NOW).unwrap_err();
    assert!(
        e.to_string()
            .contains("none in the store for chip c38427a30d4c7af9"),
        "{e}"
    );
    // The operator fetched this chip's VCEK for TCB 3/0/8/115 and the Milan ASK/ARK bundle.
    std::fs::write(store.path().join("vcek.der"), read_testdata("snp/vcek.der")).unwrap();
    std::fs::write(
        store.path().join("milan.pem"),
        read_testdata("snp/milan_ask_ark_asvk.pem"),
    )
    .unwrap();
    let mut r = vouch_tee::TeeRoots::from_dir(roots.path()).unwrap();
    assert_eq!(r.add_snp_cert_dir(store.path()).unwrap(), 1);
    let v = r.verify(kind, &report, &[], NOW).unwrap();
    assert_eq!(v.claims["tcb"]["microcode"], 115);
    // A report at another TCB (one changed REPORTED_TCB byte) finds no VCEK in the store.
    let mut other = report.clone();
    other[0x187] = 0x74;
    let e = r.verify(kind, &other, &[], NOW).unwrap_err();
    assert!(e.to_string().contains("at TCB 7408000000000003"), "{e}");
}

/// A certificate table laid out as the GHCB specification gives it (entries of GUID, offset,
/// length; an all-zero entry; then the certificates), around the sample's real certificates.
fn table(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let head = (entries.len() + 1) * 24;
    let mut t = Vec::new();
    let mut body = Vec::new();
    for (guid, cert) in entries {
        let g: Vec<u8> = hex::decode(guid.replace('-', "")).unwrap();
        t.extend_from_slice(&g);
        t.extend_from_slice(&((head + body.len()) as u32).to_le_bytes());
        t.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        body.extend_from_slice(cert);
    }
    t.extend_from_slice(&[0; 24]);
    t.extend_from_slice(&body);
    t
}

const VCEK_GUID: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
const ASK_GUID: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
const ARK_GUID: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";

#[test]
fn the_hosts_certificate_table_gives_the_vek_chain_that_verifies() {
    use vouch_tee::snp::{SnpCert, cert_table, vek_chain};
    let (certs, ark) = chain();
    let vcek = read_testdata("snp/vcek.der");
    // ARK first, VCEK last: the chain comes back VEK first, ARK left out.
    let t = table(&[(ARK_GUID, &ark), (ASK_GUID, &certs[0]), (VCEK_GUID, &vcek)]);
    let parsed = cert_table(&t).unwrap();
    let kinds: Vec<SnpCert> = parsed.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [SnpCert::Ark, SnpCert::Ask, SnpCert::Vcek]);
    let chain = vek_chain(&parsed);
    assert_eq!(chain, [vcek.clone(), certs[0].clone()]);
    let v = SnpVerifier::new(std::slice::from_ref(&ark)).unwrap();
    v.verify(
        &read_testdata("snp/report_v2.bin"),
        &chain[0],
        &chain[1..],
        NOW,
    )
    .unwrap();

    // No certificates provisioned: empty, not an error.
    assert!(cert_table(&[]).unwrap().is_empty());
    assert!(cert_table(&[0; 4096]).unwrap().is_empty());
    // An unknown GUID is kept as such and left out of the chain.
    let odd = table(&[("00112233-4455-6677-8899-aabbccddeeff", &vcek)]);
    let parsed = cert_table(&odd).unwrap();
    assert!(matches!(parsed[0].0, SnpCert::Other(_)));
    assert!(vek_chain(&parsed).is_empty());

    // Malformed tables are refused with the reason.
    let refused = |b: &[u8]| cert_table(b).unwrap_err().to_string();
    let mut out = t.clone();
    out[16] = 0xff; // first entry's offset far past the end
    out[17] = 0xff;
    assert!(
        refused(&out).contains("outside the blob"),
        "{}",
        refused(&out)
    );
    let mut long = t.clone();
    long[20..24].copy_from_slice(&(t.len() as u32).to_le_bytes());
    assert!(refused(&long).contains("outside the blob"));
    let mut overlap = t.clone();
    overlap[16..20].copy_from_slice(&0u32.to_le_bytes());
    assert!(refused(&overlap).contains("overlaps the table"));
    let mut empty = t.clone();
    empty[20..24].copy_from_slice(&0u32.to_le_bytes());
    assert!(refused(&empty).contains("is empty"));
    // One entry and its 10 bytes, then nothing: no room for the all-zero entry.
    let mut unterminated = hex::decode(VCEK_GUID.replace('-', "")).unwrap();
    unterminated.extend_from_slice(&24u32.to_le_bytes());
    unterminated.extend_from_slice(&10u32.to_le_bytes());
    unterminated.extend_from_slice(&[7; 10]);
    assert!(refused(&unterminated).contains("no terminating entry"));
    assert!(refused(&vec![1; 70_000]).contains("at most"));
}

#[test]
fn a_crl_in_the_store_must_come_from_a_trusted_ark() {
    // No AMD CRL is among the real samples; Intel's real PCK CRL stands in for a CRL from
    // the wrong issuer, and is refused when the store is loaded.
    let (certs, ark) = chain();
    let c: serde_json::Value =
        serde_json::from_slice(&read_testdata("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let intel_crl = hex::decode(c["pck_crl"].as_str().unwrap()).unwrap();
    let mut v = SnpVerifier::new(std::slice::from_ref(&ark)).unwrap();
    let e = v.add_crl(intel_crl.clone()).unwrap_err().to_string();
    assert!(e.contains("not a trusted ARK"), "{e}");
    assert!(v.add_crl(b"not a crl".to_vec()).is_err());
    // Without a CRL the claims say revocation was not checked.
    let claims = v
        .verify(
            &read_testdata("snp/report_v2.bin"),
            &read_testdata("snp/vcek.der"),
            &certs,
            NOW,
        )
        .unwrap();
    assert!(!claims.revocation_checked);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ark.pem"), &ark).unwrap();
    std::fs::write(dir.path().join("milan.crl"), &intel_crl).unwrap();
    let mut roots = vouch_tee::TeeRoots::from_certs(std::slice::from_ref(&ark)).unwrap();
    let e = roots.add_store_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("not a trusted ARK"), "{e}");
}
