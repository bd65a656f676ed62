//! `azure_imds` on two real IMDS attested documents (testdata/cloud/azure, see SOURCES.md):
//! one from Azure's public cloud (South Central US, 2022-04-19, signed by a
//! `metadata.azure.com` certificate of Microsoft RSA TLS CA 01 under the Baltimore
//! CyberTrust Root) and one from Azure Government (2023-03-08, `metadata.azure.us`,
//! Microsoft Azure TLS Issuing CA 05 under DigiCert Global Root G2). Each verifies at a time
//! inside its six-hour window and yields its selectors; a flipped byte in the content or the
//! signature, a root set without its root, an expired document, a nonce it was not fetched
//! with, a signer domain not configured and a subscription not allowed are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::PathBuf;
use vouch_nodeattest::{
    AzureImdsAttestor, AzureImdsConfig, NodeAttestError, NodeAttestation, NodeAttestor,
    NodeIdentity, imds_nonce,
};
use vouch_testkit::{read_testdata, testdata};

/// 2022-04-19 03:00 UTC (created 01:27:21, expires 07:27:21).
const NOW_PUBLIC: u64 = 1_650_337_200;
/// 2023-03-08 18:00 UTC (created 17:09:33, expires 23:09:33).
const NOW_GOV: u64 = 1_678_298_400;

const PUBLIC: &str = "cloud/azure/attested_southcentralus_2022.b64";
const GOV: &str = "cloud/azure/attested_usgovvirginia_2023.b64";

fn b64(p: &str) -> String {
    String::from_utf8(read_testdata(p))
        .unwrap()
        .trim()
        .to_string()
}

/// The IMDS response body carrying a signature.
fn response(sig_b64: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"encoding": "pkcs7", "signature": sig_b64})).unwrap()
}

fn config(dir: PathBuf) -> AzureImdsConfig {
    AzureImdsConfig {
        certificates_dir: dir,
        allowed_subscriptions: vec![],
        // These documents were fetched with someone else's nonces.
        require_nonce: false,
        signer_domains: vouch_nodeattest::azure_imds::DEFAULT_SIGNER_DOMAINS
            .iter()
            .map(|d| d.to_string())
            .collect(),
        max_clock_skew_secs: 300,
    }
}

fn attestor() -> AzureImdsAttestor {
    AzureImdsAttestor::from_config(config(testdata("cloud/azure/certs"))).unwrap()
}

fn attest(
    a: &AzureImdsAttestor,
    data: &[u8],
    nonce: &str,
    now: u64,
) -> Result<NodeIdentity, NodeAttestError> {
    a.attest(
        &NodeAttestation {
            data,
            nonce,
            audience: "vouch",
        },
        now,
    )
}

#[test]
fn the_real_public_cloud_document_verifies_with_its_selectors() {
    let id = attest(&attestor(), &response(&b64(PUBLIC)), "n", NOW_PUBLIC).unwrap();
    assert_eq!(
        id.key,
        "azure_imds:5f130ffc-0a3e-4795-b691-4f56a12a5547:bd8e7443-24a0-41f3-b949-8baf4fd1c573"
    );
    for s in [
        "azure_imds:subscription:5f130ffc-0a3e-4795-b691-4f56a12a5547",
        "azure_imds:vm_id:bd8e7443-24a0-41f3-b949-8baf4fd1c573",
        "azure_imds:sku:20_04-lts-gen2",
    ] {
        assert!(
            id.selectors.iter().any(|x| x == s),
            "{s} in {:?}",
            id.selectors
        );
    }
    // Empty plan fields make no selectors.
    assert!(
        !id.selectors.iter().any(|s| s.contains("plan")),
        "{:?}",
        id.selectors
    );
    assert!(!id.reattestable);
}

#[test]
fn the_real_government_cloud_document_verifies() {
    let id = attest(&attestor(), &response(&b64(GOV)), "n", NOW_GOV).unwrap();
    assert_eq!(
        id.key,
        "azure_imds:0afbfffa-5df9-4a3b-987e-fe7577624272:990878d4-068a-4ac4-9ee9-1231d2218ef2"
    );
    assert!(id.selectors.iter().any(|s| s == "azure_imds:sku:18.04-LTS"));
}

fn flipped(p: &str, find: &[u8], offset: usize) -> Vec<u8> {
    let e = base64::engine::general_purpose::STANDARD;
    let mut der = e.decode(b64(p)).unwrap();
    let at = der.windows(find.len()).position(|w| w == find).unwrap() + offset;
    der[at] ^= 0x01;
    response(&e.encode(der))
}

#[test]
fn one_flipped_byte_in_the_content_is_refused() {
    // A character of the vmId inside the signed content.
    let d = flipped(PUBLIC, b"bd8e7443", 2);
    let e = attest(&attestor(), &d, "n", NOW_PUBLIC).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn one_flipped_byte_in_the_signature_is_refused() {
    let e = base64::engine::general_purpose::STANDARD;
    let mut der = e.decode(b64(GOV)).unwrap();
    let n = der.len();
    der[n - 7] ^= 0x01; // inside the 256-byte RSA signature that ends the structure
    let err = attest(&attestor(), &response(&e.encode(der)), "n", NOW_GOV).unwrap_err();
    assert!(matches!(err, NodeAttestError::Signature { .. }), "{err}");
}

#[test]
fn a_certificate_set_without_the_documents_root_is_refused() {
    // Only the government chain's intermediate and root: the public document's chain
    // (Microsoft RSA TLS CA 01, Baltimore) is missing.
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "microsoft_azure_tls_issuing_ca_05_xsign.pem",
        "digicert_global_root_g2.pem",
    ] {
        std::fs::write(
            dir.path().join(f),
            read_testdata(&format!("cloud/azure/certs/{f}")),
        )
        .unwrap();
    }
    let a = AzureImdsAttestor::from_config(config(dir.path().to_path_buf())).unwrap();
    let e = attest(&a, &response(&b64(PUBLIC)), "n", NOW_PUBLIC).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    assert!(attest(&a, &response(&b64(GOV)), "n", NOW_GOV).is_ok());
    // Certificates reached through symbolic links count (as in /etc/ssl/certs).
    let linked = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        testdata("cloud/azure/certs"),
        linked.path().join("microsoft"),
    )
    .unwrap();
    let a = AzureImdsAttestor::from_config(config(linked.path().to_path_buf())).unwrap();
    assert!(attest(&a, &response(&b64(PUBLIC)), "n", NOW_PUBLIC).is_ok());
    // The root without the intermediate: no chain either.
    std::fs::remove_file(
        dir.path()
            .join("microsoft_azure_tls_issuing_ca_05_xsign.pem"),
    )
    .unwrap();
    let a = AzureImdsAttestor::from_config(config(dir.path().to_path_buf())).unwrap();
    let e = attest(&a, &response(&b64(GOV)), "n", NOW_GOV).unwrap_err();
    assert!(
        e.to_string().contains("no configured certificate issued"),
        "{e}"
    );
}

#[test]
fn an_expired_document_is_refused() {
    // expiresOn 07:27:21 + 300 s skew; at 08:00 it is refused (the certificates are still
    // valid then).
    let e = attest(&attestor(), &response(&b64(PUBLIC)), "n", 1_650_355_200).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Years later the signing certificate itself has expired.
    let e = attest(&attestor(), &response(&b64(PUBLIC)), "n", 1_772_323_200).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn a_document_fetched_with_another_nonce_is_refused() {
    let mut c = config(testdata("cloud/azure/certs"));
    c.require_nonce = true;
    let a = AzureImdsAttestor::from_config(c).unwrap();
    let e = attest(&a, &response(&b64(PUBLIC)), "our-nonce", NOW_PUBLIC).unwrap_err();
    assert!(e.to_string().contains(&imds_nonce("our-nonce")), "{e}");
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
}

#[test]
fn the_imds_nonce_is_ten_digits_and_stable() {
    let n = imds_nonce("abc");
    assert_eq!(n.len(), 10);
    assert!(n.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(n, imds_nonce("abc"));
    assert_ne!(n, imds_nonce("abd"));
}

#[test]
fn a_signer_outside_the_configured_domains_is_refused() {
    let mut c = config(testdata("cloud/azure/certs"));
    c.signer_domains = vec!["metadata.azure.com".into()];
    let a = AzureImdsAttestor::from_config(c).unwrap();
    assert!(attest(&a, &response(&b64(PUBLIC)), "n", NOW_PUBLIC).is_ok());
    let e = attest(&a, &response(&b64(GOV)), "n", NOW_GOV).unwrap_err();
    assert!(e.to_string().contains("is not for"), "{e}");
}

#[test]
fn a_subscription_not_allowed_is_refused() {
    let mut c = config(testdata("cloud/azure/certs"));
    c.allowed_subscriptions = vec!["0afbfffa-5df9-4a3b-987e-fe7577624272".into()];
    let a = AzureImdsAttestor::from_config(c).unwrap();
    let e = attest(&a, &response(&b64(PUBLIC)), "n", NOW_PUBLIC).unwrap_err();
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
    assert!(attest(&a, &response(&b64(GOV)), "n", NOW_GOV).is_ok());
}

#[test]
fn malformed_responses_are_refused_with_a_reason() {
    for bad in [
        &b"nope"[..],
        br#"{"encoding":"json","signature":"AAAA"}"#,
        br#"{"encoding":"pkcs7","signature":"!!"}"#,
        br#"{"encoding":"pkcs7","signature":"MIIL"}"#,
    ] {
        let e = attest(&attestor(), bad, "n", NOW_PUBLIC).unwrap_err();
        assert!(matches!(e, NodeAttestError::Malformed { .. }), "{e}");
    }
    assert!(serde_json::from_str::<AzureImdsConfig>(r#"{"certificates_dir":"/x","z":1}"#).is_err());
    let c: AzureImdsConfig = serde_json::from_str(r#"{"certificates_dir":"/x"}"#).unwrap();
    assert!(c.require_nonce && c.signer_domains.len() == 4);
}

/// Every single-bit change anywhere in either real PKCS#7 (content, the carried signing
/// certificate, signer identifiers, algorithms, lengths, the signature) is refused: none is
/// accepted, none panics.
#[test]
fn no_single_bit_flip_anywhere_is_accepted() {
    let e = base64::engine::general_purpose::STANDARD;
    let a = attestor();
    for (p, now) in [(PUBLIC, NOW_PUBLIC), (GOV, NOW_GOV)] {
        let der = e.decode(b64(p)).unwrap();
        for n in 0..der.len() {
            assert!(
                attest(&a, &response(&e.encode(&der[..n])), "n", now).is_err(),
                "{p}: truncation to {n} accepted"
            );
        }
        for i in 0..der.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = der.clone();
                d[i] ^= bit;
                assert!(
                    attest(&a, &response(&e.encode(&d)), "n", now).is_err(),
                    "{p}: byte {i} bit {bit:#x} accepted"
                );
            }
        }
    }
}
