//! Evidence in the formats tools write (issue 18 item 3), every one a real sample from
//! testdata (see SOURCES.md): decoded, then verified against the vendor roots; and what is not
//! what was asked refused with what it looks like.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_tee::input::{Looks, decode, decode_certs, identify};
use vouch_tee::{TeeKind, TeeRoots};
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
    certs.push(pem("nitro/aws_nitro_root.pem").remove(0));
    TeeRoots::from_certs(&certs).unwrap()
}

/// 2025-06-25: inside the Veraison sample's VCEK (from 2025-04-20) and the PCK chains.
const NOW: u64 = 1_750_809_600;

fn tsm_json() -> serde_json::Value {
    serde_json::from_slice(&read_testdata("snp/veraison_tsm_report.json")).unwrap()
}

#[test]
fn the_configfs_tsm_json_with_its_certificate_table_verifies() {
    // Veraison's configfs-tsm report: URL-safe base64 outblob (a Genoa SEV-SNP v3 report) and
    // auxblob (the certificate table, whose entries are PEM certificates: ARK, ASK, VCEK).
    let d = decode(
        TeeKind::SevSnp,
        &read_testdata("snp/veraison_tsm_report.json"),
    )
    .unwrap();
    assert_eq!(d.encoding, "configfs-tsm json");
    assert_eq!(d.report.len(), 1184);
    assert_eq!(
        d.certs.len(),
        2,
        "the VCEK and the ASK (the ARK is the verifier's)"
    );
    let v = roots()
        .verify(TeeKind::SevSnp, &d.report, &d.certs, NOW)
        .unwrap();
    assert_eq!(v.claims["details"]["product"], "Genoa");
    assert_eq!(v.claims["details"]["version"], 3);
    assert_eq!(v.claims["details"]["cpuid"]["model"], 0x11);
    // The same outblob alone, as URL-safe base64 text without padding, is the same report.
    let outblob = tsm_json()["outblob"].as_str().unwrap().to_string();
    assert!(outblob.contains(['-', '_']) && !outblob.ends_with('='));
    let alone = decode(TeeKind::SevSnp, outblob.as_bytes()).unwrap();
    assert_eq!(
        (alone.report, alone.encoding),
        (d.report.clone(), "base64url")
    );
    // Report then table (the extended report tools write) carries the same certificates.
    let aux = vouch_tee::input::base64_any(tsm_json()["auxblob"].as_str().unwrap())
        .unwrap()
        .0;
    assert_eq!(identify(&aux), Looks::CertTable);
    let ext = decode(TeeKind::SevSnp, &[d.report.clone(), aux.clone()].concat()).unwrap();
    assert_eq!(ext.encoding, "extended report");
    assert_eq!(ext.certs, d.certs);
    // The table alone as a --certs file.
    assert_eq!(decode_certs(&aux).unwrap(), d.certs);
    // The table's VCEK entry pointing one byte past the blob: refused, not read.
    let mut bad = aux.clone();
    let at = 2 * 24 + 20; // third entry's length
    let len = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
    bad[at..at + 4].copy_from_slice(&(len + 10_000).to_le_bytes());
    let e = decode(TeeKind::SevSnp, &[d.report.clone(), bad].concat()).unwrap_err();
    assert!(e.to_string().contains("outside the blob"), "{e}");
}

#[test]
fn hex_and_base64_text_and_json_quotes_are_decoded_and_verify() {
    let roots = roots();
    // virtee/sev's Milan report as upper-case hex text.
    let d = decode(
        TeeKind::SevSnp,
        &read_testdata("snp/virtee_report_milan.hex"),
    )
    .unwrap();
    assert_eq!((d.encoding, d.report.len()), ("hex", 1184));
    let mut certs = vec![read_testdata("snp/virtee_vcek_milan.der")];
    certs.extend(pem("snp/milan_ask_ark_asvk.pem"));
    roots
        .verify(TeeKind::SevSnp, &d.report, &certs, NOW)
        .unwrap();
    // An Azure TDX VM's quote as standard base64 text.
    let d = decode(TeeKind::Tdx, &read_testdata("tdx/azure_quote_v4.b64")).unwrap();
    assert_eq!(d.encoding, "base64");
    let c = roots.verify(TeeKind::Tdx, &d.report, &[], NOW).unwrap();
    assert_eq!(c.claims["details"]["version"], 4);
    // A Google Cloud TDX VM's quote inside JSON.
    let d = decode(TeeKind::Tdx, &read_testdata("tdx/gcp_quote_v4.json")).unwrap();
    assert_eq!(d.encoding, "json");
    roots.verify(TeeKind::Tdx, &d.report, &[], NOW).unwrap();
    // Raw bytes stay raw; the Nitro document's base64 is decoded.
    let raw = read_testdata("tdx/trustee_quote_v5.dat");
    let d = decode(TeeKind::Tdx, &raw).unwrap();
    assert_eq!((d.encoding, d.report), ("raw", raw));
    let d = decode(TeeKind::Nitro, &read_testdata("nitro/attestation_doc.b64")).unwrap();
    assert_eq!(identify(&d.report), Looks::Cose);
}

fn refused(kind: TeeKind, input: &[u8]) -> String {
    decode(kind, input).unwrap_err().to_string()
}

#[test]
fn what_is_not_the_kind_asked_is_named() {
    let hcl = read_testdata("azure/snp/hcl-report.bin");
    let e = refused(TeeKind::SevSnp, &hcl);
    assert!(
        e.contains("an Azure HCL report (an SEV-SNP report inside)")
            && e.contains("use --kind az-snp-vtpm"),
        "{e}"
    );
    let e = refused(TeeKind::Tdx, &read_testdata("azure/tdx/hcl-report.bin"));
    assert!(e.contains("use --kind az-tdx-vtpm"), "{e}");
    let e = refused(TeeKind::SevSnp, &read_testdata("tdx/quote_v4.dat"));
    assert!(
        e.contains("a TDX quote (version 4)")
            && e.contains("given as --kind sev-snp: use --kind tdx"),
        "{e}"
    );
    let e = refused(TeeKind::Tdx, &read_testdata("sgx/occlum_quote_v3.dat"));
    assert!(
        e.contains("an SGX quote (version 3)") && e.contains("--kind sgx"),
        "{e}"
    );
    let e = refused(TeeKind::Tdx, &read_testdata("snp/report_v2.bin"));
    assert!(
        e.contains("an SEV-SNP report (version 2)") && e.contains("--kind sev-snp"),
        "{e}"
    );
    // Trustee's Azure evidence JSON and a configfs-tsm report from the other provider.
    let e = refused(
        TeeKind::SevSnp,
        &read_testdata("azure/snp/evidence-v1.json"),
    );
    assert!(e.contains("use --kind az-snp-vtpm"), "{e}");
    let e = refused(TeeKind::Tdx, &read_testdata("snp/veraison_tsm_report.json"));
    assert!(e.contains("provider \"sev_guest\""), "{e}");
    // Sizes: a report cut short, a certificate given as the report, text of no known kind.
    let short = &read_testdata("snp/report_v2.bin")[..1000];
    let e = refused(TeeKind::SevSnp, short);
    assert!(
        e.contains("1184 bytes") && e.contains("these 1000 bytes"),
        "{e}"
    );
    let e = refused(TeeKind::SevSnp, &read_testdata("snp/gcp_vcek.pem"));
    assert!(e.contains("PEM"), "{e}");
    let e = refused(TeeKind::SevSnp, &read_testdata("snp/vcek.der"));
    assert!(e.contains("a DER structure"), "{e}");
    let e = refused(TeeKind::SevSnp, b"not evidence at all");
    assert!(e.contains("neither hex, base64 nor JSON"), "{e}");
    let e = refused(TeeKind::SevSnp, &vec![b'A'; 300 * 1024]);
    assert!(e.contains("at most"), "{e}");
    // A hex report with one digit changed decodes, but the signature no longer verifies.
    let mut hex = read_testdata("snp/virtee_report_milan.hex");
    hex[200] = if hex[200] == b'0' { b'1' } else { b'0' };
    let d = decode(TeeKind::SevSnp, &hex).unwrap();
    let mut certs = vec![read_testdata("snp/virtee_vcek_milan.der")];
    certs.extend(pem("snp/milan_ask_ark_asvk.pem"));
    assert!(
        roots()
            .verify(TeeKind::SevSnp, &d.report, &certs, NOW)
            .is_err()
    );
}
