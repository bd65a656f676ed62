//! A certificate's outer signatureAlgorithm is outside what its issuer signed: one edited to
//! differ from the signed TBSCertificate's signature field (RFC 5280 §4.1.1.2) is refused, on
//! Intel's real PCK Platform CA certificate and AMD's real ASK (RSASSA-PSS parameters).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_testkit::read_testdata;
use vouch_x509::{parse, pem_certificates, verify_signed_by};
use x509_cert::der::asn1::Any;
use x509_cert::der::{Decode as _, Encode as _};

/// `der` with its outer signatureAlgorithm replaced by `edit`'s, re-encoded (the signed part
/// and the signature untouched).
fn with_outer_alg(
    der: &[u8],
    edit: impl FnOnce(&mut x509_cert::spki::AlgorithmIdentifierOwned),
) -> Vec<u8> {
    let mut c = x509_cert::Certificate::from_der(der).unwrap();
    edit(&mut c.signature_algorithm);
    c.to_der().unwrap()
}

fn check(
    child_der: &[u8],
    issuer_der: &[u8],
    edit: impl FnOnce(&mut x509_cert::spki::AlgorithmIdentifierOwned),
) {
    let issuer = parse(issuer_der, "issuer").unwrap();
    let child = parse(child_der, "child").unwrap();
    verify_signed_by(child_der, &child, &issuer).unwrap();
    let edited = with_outer_alg(child_der, edit);
    assert_ne!(edited, child_der);
    let c = parse(&edited, "edited").unwrap();
    let e = verify_signed_by(&edited, &c, &issuer).unwrap_err();
    assert!(e.contains("signatureAlgorithm differs"), "{e}");
}

#[test]
fn an_ecdsa_certificate_whose_outer_algorithm_gained_parameters_is_refused() {
    let c: serde_json::Value =
        serde_json::from_slice(&read_testdata("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let chain = pem_certificates(c["pck_crl_issuer_chain"].as_str().unwrap());
    let root = read_testdata("tdx/intel_sgx_root_ca.der");
    // ecdsa-with-SHA256 has no parameters; a NULL added outside the signed part.
    check(&chain[0], &root, |a| a.parameters = Some(Any::null()));
}

#[test]
fn an_rsassa_pss_certificate_whose_outer_parameters_were_dropped_is_refused() {
    let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
    let certs = pem_certificates(&pem);
    // The bundle holds the ASK and the ARK that signed it (and the ARK itself).
    let ark = certs
        .iter()
        .find(|d| {
            let c = parse(d, "c").unwrap();
            c.tbs_certificate.issuer == c.tbs_certificate.subject
        })
        .unwrap();
    let ask = certs
        .iter()
        .find(|d| {
            let c = parse(d, "c").unwrap();
            c.tbs_certificate.issuer != c.tbs_certificate.subject
        })
        .unwrap();
    check(ask, ark, |a| a.parameters = None);
}
