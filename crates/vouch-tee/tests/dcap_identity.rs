//! Issue 12 item 3: a DCAP quote is accepted only from Intel's quoting enclave (and, for TDX,
//! Intel's TDX module), with or without collateral.
//!
//! The attack: the PCK key of a genuine platform signs the report of any enclave launched with
//! PROVISIONKEY, and the platform owner (a TD's host) decides which enclaves launch. A QE of
//! its own then has its attestation key certified like Intel's, and every signature of its
//! quotes verifies. To test that, the real quotes of testdata are re-signed by a test platform
//! made here (its own root, platform CA and PCK key, and a fresh attestation key), standing
//! for that genuine platform: unchanged, each still verifies under the test root, so the only
//! thing that refuses a changed one is the identity check. (Flipping a byte of the real
//! quotes' QE report is refused too, by the PCK signature: tests/dcap.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use vouch_tee::dcap::{DcapVerifier, IdentitySource, QeId, SignedQeIdentity};
use vouch_tee::{TeeError, TeeKind, TeeRoots};
use vouch_testkit::read_testdata;

/// 2025-06-25: inside every sample's PCK certificate and the collateral's window.
const NOW: u64 = 1_750_809_600;
const SGX: &str = "sgx/occlum_quote_v3.dat";
const TDX: [&str; 2] = ["tdx/quote_v4.dat", "tdx/dcapqvl_tdx_quote.bin"];
const SAMPLES: [&str; 3] = [SGX, TDX[0], TDX[1]];

/// Offsets inside a QE report (an SGX enclave report).
const MISCSELECT: usize = 16;
const ATTRIBUTES: usize = 48;
const MRSIGNER: usize = 128;
const ISVPRODID: usize = 256;
/// Offsets inside a TD report.
const MRSIGNERSEAM: usize = 64;
const SEAMATTRIBUTES: usize = 112;

/// A platform of our own: root CA, platform CA and PCK key, all ECDSA P-256.
struct TestPlatform {
    root: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    chain_pem: String,
    pck: EcdsaKeyPair,
}

fn ca(name: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p
}

/// The SGX extension (1.2.840.113741.1.13.1) of the PCK certificate in tdx/quote_v4.dat.
fn real_sgx_extension() -> Vec<u8> {
    let q = read_testdata("tdx/quote_v4.dat");
    let text = String::from_utf8_lossy(&q);
    let at = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let pck = vouch_x509::pem_certificates(&text[at..]).remove(0);
    let c = vouch_x509::parse(&pck, "PCK").unwrap();
    vouch_x509::extension(&c, "1.2.840.113741.1.13.1")
        .unwrap()
        .to_vec()
}

impl TestPlatform {
    fn new() -> Self {
        let root = rcgen::CertifiedIssuer::self_signed(
            ca("Test SGX Root CA"),
            rcgen::KeyPair::generate().unwrap(),
        )
        .unwrap();
        let platform = rcgen::CertifiedIssuer::signed_by(
            ca("Test SGX PCK Platform CA"),
            rcgen::KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let pck_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "Test SGX PCK Certificate");
        // A PCK certificate carries Intel's SGX extension (FMSPC, the TCB it certifies: its
        // PCESVN is a v4/v5 quote's pce_svn claim): a real PCK certificate's, copied.
        leaf.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 2, 840, 113_741, 1, 13, 1],
                real_sgx_extension(),
            ));
        let leaf = leaf.signed_by(&pck_key, &platform).unwrap();
        let pck =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pck_key.serialize_der())
                .unwrap();
        Self {
            chain_pem: format!("{}{}{}", leaf.pem(), platform.pem(), root.pem()),
            root,
            pck,
        }
    }

    fn root_der(&self) -> Vec<u8> {
        self.root.der().to_vec()
    }

    fn verifier(&self) -> DcapVerifier {
        DcapVerifier::new(&self.root_der()).unwrap()
    }

    /// `quote` (v3 or v4) re-signed by this platform after `body` and `qe` changed the enclave
    /// or TD report and the QE report: a fresh attestation key signs the header and body, the
    /// QE report binds that key and is signed by the PCK key, and the certification data
    /// carries this platform's chain.
    fn forge(
        &self,
        quote: &[u8],
        body: impl FnOnce(&mut [u8]),
        qe: impl FnOnce(&mut [u8]),
    ) -> Vec<u8> {
        let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        let version = u16_at(quote, 0);
        let sgx = version == 3 || quote[4..8] == [0, 0, 0, 0];
        let signed = 48 + if sgx { 384 } else { 584 };
        let sig_data = &quote[signed + 4..];
        let at = 128 + if version == 3 { 0 } else { 6 };
        let mut qe_report = sig_data[at..at + 384].to_vec();
        let auth_len = u16_at(sig_data, at + 448);
        let auth = &sig_data[at + 450..at + 450 + auth_len];

        let rng = SystemRandom::new();
        let mut header_body = quote[..signed].to_vec();
        body(&mut header_body[48..]);
        let att = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let att_pub = &att.public_key().as_ref()[1..];
        let quote_sig = att.sign(&rng, &header_body).unwrap();
        qe(&mut qe_report);
        let bound = digest(&SHA256, &[att_pub, auth].concat());
        qe_report[320..352].copy_from_slice(bound.as_ref());
        qe_report[352..].fill(0);
        let qe_sig = self.pck.sign(&rng, &qe_report).unwrap();

        let chain = self.chain_pem.as_bytes();
        let mut qe_part = [&qe_report[..], qe_sig.as_ref()].concat();
        qe_part.extend((auth_len as u16).to_le_bytes());
        qe_part.extend(auth);
        qe_part.extend(5u16.to_le_bytes());
        qe_part.extend((chain.len() as u32).to_le_bytes());
        qe_part.extend(chain);
        let mut sig = [quote_sig.as_ref(), att_pub].concat();
        if version == 3 {
            sig.extend(qe_part);
        } else {
            sig.extend(6u16.to_le_bytes());
            sig.extend((qe_part.len() as u32).to_le_bytes());
            sig.extend(qe_part);
        }
        let mut out = header_body;
        out.extend((sig.len() as u32).to_le_bytes());
        out.extend(sig);
        out
    }

    /// A QE identity signed by a "TCB signing" key this platform's root certified, in the
    /// store's form.
    fn sign_qe_identity(&self, identity: &Value) -> SignedQeIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Test SGX TCB Signing");
        let cert = p.signed_by(&key, &self.root).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .unwrap();
        let text = identity.to_string();
        let sig = signer.sign(&SystemRandom::new(), text.as_bytes()).unwrap();
        serde_json::from_value(json!({
            "qe_identity": text,
            "qe_identity_signature": hex::encode(sig.as_ref()),
            "qe_identity_issuer_chain": format!("{}{}", cert.pem(), self.root.pem()),
        }))
        .unwrap()
    }
}

fn identity_error(r: Result<vouch_tee::dcap::QuoteClaims, TeeError>, what: &str) -> String {
    match r {
        Err(e @ TeeError::Identity(_)) => e.to_string(),
        Err(e) => panic!("{what}: refused, but not for the identity: {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[test]
fn issue_12_a_quote_whose_qe_is_not_intels_is_refused_without_collateral() {
    let p = TestPlatform::new();
    let v = p.verifier();
    for s in SAMPLES {
        let q = read_testdata(s);
        let (qe_id, mrsigner) = if s == SGX {
            (
                QeId::Qe,
                "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff",
            )
        } else {
            (
                QeId::TdQe,
                "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
            )
        };
        // The harness: re-signed unchanged, the quote verifies under the test root, checked
        // against Intel's built-in identity of its QE (no store, no collateral).
        let c = v.verify(&p.forge(&q, |_| {}, |_| {}), NOW).unwrap();
        assert_eq!(c.qe_mr_signer, mrsigner, "{s}");
        assert_eq!(c.qe_identity.id, qe_id, "{s}");
        assert_eq!(c.qe_identity.source, IdentitySource::BuiltIn, "{s}");
        assert_eq!(c.tcb_status, "not judged (no collateral)");
        // One byte of the QE report's MRSIGNER flipped: another signer's enclave.
        let e = identity_error(
            v.verify(&p.forge(&q, |_| {}, |qe| qe[MRSIGNER + 7] ^= 1), NOW),
            s,
        );
        assert!(e.contains("MRSIGNER") && e.contains(mrsigner), "{s}: {e}");
        assert!(
            e.contains("not made by Intel's quoting enclave"),
            "{s}: {e}"
        );
        // Intel's signer, another product (the other QE's ISVPRODID).
        let e = identity_error(
            v.verify(
                &p.forge(
                    &q,
                    |_| {},
                    |qe| qe[ISVPRODID] = if s == SGX { 2 } else { 1 },
                ),
                NOW,
            ),
            s,
        );
        assert!(e.contains("ISVPRODID"), "{s}: {e}");
        // A debug build of the QE (ATTRIBUTES.DEBUG): its memory is the host's to read.
        let e = identity_error(
            v.verify(&p.forge(&q, |_| {}, |qe| qe[ATTRIBUTES] |= 2), NOW),
            s,
        );
        assert!(e.contains("debug quoting enclave"), "{s}: {e}");
        // MODE64BIT is outside the mask: still Intel's QE.
        v.verify(&p.forge(&q, |_| {}, |qe| qe[ATTRIBUTES] ^= 4), NOW)
            .unwrap();
        // MISCSELECT must be 0.
        let e = identity_error(
            v.verify(&p.forge(&q, |_| {}, |qe| qe[MISCSELECT] = 1), NOW),
            s,
        );
        assert!(e.contains("MISCSELECT"), "{s}: {e}");
    }
    // The TDX QE's identity is not the SGX QE's: an SGX QE report in a TDX quote is refused.
    let sgx_qe = {
        let q = read_testdata(SGX);
        q[436 + 128..436 + 128 + 384].to_vec()
    };
    let e = identity_error(
        v.verify(
            &p.forge(
                &read_testdata(TDX[0]),
                |_| {},
                |qe| qe.copy_from_slice(&sgx_qe),
            ),
            NOW,
        ),
        "an SGX QE in a TDX quote",
    );
    assert!(e.contains("TD_QE"), "{e}");
}

#[test]
fn issue_12_a_td_report_from_another_tdx_module_is_refused() {
    let p = TestPlatform::new();
    let v = p.verifier();
    for s in TDX {
        let q = read_testdata(s);
        let c = v.verify(&p.forge(&q, |_| {}, |_| {}), NOW).unwrap();
        assert_eq!(c.tdx_module_identity, Some(IdentitySource::BuiltIn));
        let e = identity_error(
            v.verify(&p.forge(&q, |b| b[MRSIGNERSEAM + 47] ^= 1, |_| {}), NOW),
            s,
        );
        assert!(e.contains("MRSIGNERSEAM"), "{s}: {e}");
        let e = identity_error(
            v.verify(&p.forge(&q, |b| b[SEAMATTRIBUTES] |= 1, |_| {}), NOW),
            s,
        );
        assert!(e.contains("SEAMATTRIBUTES"), "{s}: {e}");
    }
    // SGX quotes have no TDX module.
    let c = v
        .verify(&p.forge(&read_testdata(SGX), |_| {}, |_| {}), NOW)
        .unwrap();
    assert_eq!(c.tdx_module_identity, None);
}

#[test]
fn issue_12_the_stores_qe_identity_is_the_one_compared() {
    let p = TestPlatform::new();
    let q = read_testdata(SGX);
    let other = "11".repeat(32);
    let identity = |mrsigner: &str, issued: &str| {
        json!({"id": "QE", "version": 2, "issueDate": issued,
               "nextUpdate": "2035-01-01T00:00:00Z", "tcbEvaluationDataNumber": 17,
               "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
               "attributes": "11000000000000000000000000000000",
               "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
               "mrsigner": mrsigner, "isvprodid": 1, "tcbLevels": []})
    };
    let mut v = p.verifier();
    let id = v
        .add_qe_identity(&p.sign_qe_identity(&identity(&other, "2030-01-01T00:00:00Z")))
        .unwrap();
    assert_eq!(id, QeId::Qe);
    // Now Intel's own QE is refused, and a QE signed by `other` accepted: the store decides.
    let e = identity_error(v.verify(&p.forge(&q, |_| {}, |_| {}), NOW), "Intel's QE");
    assert!(
        e.contains("issued 2030-01-01T00:00:00Z, from the store"),
        "{e}"
    );
    let c = v
        .verify(
            &p.forge(
                &q,
                |_| {},
                |qe| qe[MRSIGNER..MRSIGNER + 32].copy_from_slice(&hex::decode(&other).unwrap()),
            ),
            NOW,
        )
        .unwrap();
    assert_eq!(
        c.qe_identity.source,
        IdentitySource::Store {
            issue_date: "2030-01-01T00:00:00Z".into()
        }
    );
    // An older identity does not replace a newer one; a newer one does.
    let intel = "8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF";
    v.add_qe_identity(&p.sign_qe_identity(&identity(intel, "2029-01-01T00:00:00Z")))
        .unwrap();
    identity_error(v.verify(&p.forge(&q, |_| {}, |_| {}), NOW), "older");
    v.add_qe_identity(&p.sign_qe_identity(&identity(intel, "2031-01-01T00:00:00Z")))
        .unwrap();
    v.verify(&p.forge(&q, |_| {}, |_| {}), NOW).unwrap();
    // The TD QE is untouched by a QE identity: TDX quotes still use the built-in TD_QE.
    let c = v
        .verify(&p.forge(&read_testdata(TDX[0]), |_| {}, |_| {}), NOW)
        .unwrap();
    assert_eq!(c.qe_identity.source, IdentitySource::BuiltIn);

    // Identities not signed under the trusted root are refused when loaded.
    let mut signed = json!({});
    let s = p.sign_qe_identity(&identity(&other, "2032-01-01T00:00:00Z"));
    let mut real = DcapVerifier::new(&read_testdata("tdx/intel_sgx_root_ca.der")).unwrap();
    let e = real.add_qe_identity(&s).unwrap_err();
    assert!(e.to_string().contains("trusted Intel SGX Root CA"), "{e}");
    // Intel's real identity with its MRSIGNER edited: Intel's signature no longer verifies.
    let c: Value =
        serde_json::from_slice(&read_testdata("sgx/dcapqvl_sgx_quote_collateral.json")).unwrap();
    signed["qe_identity_issuer_chain"] = c["qe_identity_issuer_chain"].clone();
    signed["qe_identity_signature"] = c["qe_identity_signature"].clone();
    signed["qe_identity"] = c["qe_identity"]
        .as_str()
        .unwrap()
        .replace("8C4F5775", "8C4F5776")
        .into();
    let e = real
        .add_qe_identity(&serde_json::from_value(signed).unwrap())
        .unwrap_err();
    assert!(matches!(e, TeeError::Signature(_)), "{e}");
}

/// The offline store through `TeeRoots`: Intel's real QE identities, alone in a file or
/// inside collateral, are what the real quotes are checked against.
#[test]
fn issue_12_intels_qe_identities_from_the_store_pass_the_real_quotes() {
    let mut roots = TeeRoots::from_certs(&[read_testdata("tdx/intel_sgx_root_ca.der")]).unwrap();
    let store = tempfile::tempdir().unwrap();
    // The SGX QE identity alone (the three fields of a collateral file), the TDX collateral.
    let c: Value =
        serde_json::from_slice(&read_testdata("sgx/dcapqvl_sgx_quote_collateral.json")).unwrap();
    let alone = json!({
        "qe_identity": c["qe_identity"], "qe_identity_signature": c["qe_identity_signature"],
        "qe_identity_issuer_chain": c["qe_identity_issuer_chain"],
    });
    std::fs::write(store.path().join("qe_identity.json"), alone.to_string()).unwrap();
    std::fs::copy(
        vouch_testkit::testdata("tdx/dcapqvl_tdx_quote_collateral.json"),
        store.path().join("b0c06f000000.json"),
    )
    .unwrap();
    assert_eq!(roots.add_store_dir(store.path()).unwrap(), ["b0c06f000000"]);
    let verify = |kind, s| {
        roots
            .verify(kind, &read_testdata(s), &[], NOW)
            .unwrap()
            .claims
    };
    let sgx = verify(TeeKind::Sgx, SGX);
    assert_eq!(
        sgx["details"]["qe_identity"],
        json!({"id": "QE", "source": "store", "issue_date": "2025-06-19T10:01:18Z"})
    );
    // quote_v4.dat is another platform: no collateral, but the TD_QE identity of the store.
    let td = verify(TeeKind::Tdx, TDX[0]);
    assert_eq!(
        td["details"]["qe_identity"],
        json!({"id": "TD_QE", "source": "store", "issue_date": "2025-06-19T10:32:27Z"})
    );
    assert_eq!(
        td["details"]["tdx_module_identity"],
        json!({"source": "built_in"})
    );
    assert_eq!(td["tcb"]["status"], "not judged (no collateral)");
    // dcap-qvl's quote: its platform's collateral gives the TDX module identity too.
    let td = verify(TeeKind::Tdx, TDX[1]);
    assert_eq!(
        td["details"]["tdx_module_identity"],
        json!({"source": "collateral", "fmspc": "b0c06f000000"})
    );
    assert_eq!(td["details"]["body"]["mr_signer_seam"], "00".repeat(48));
    assert_eq!(td["tcb"]["status"], "UpToDate");

    // A file that is neither collateral nor a QE identity is named.
    std::fs::write(store.path().join("notes.json"), "{}").unwrap();
    let e = TeeRoots::from_certs(&[read_testdata("tdx/intel_sgx_root_ca.der")])
        .unwrap()
        .add_store_dir(store.path())
        .unwrap_err();
    assert!(e.to_string().contains("notes.json"), "{e}");
}

/// The TDX module identity of the platform's collateral is what the TD report is compared
/// with: the collateral's TCB info edited to another module signer refuses the real quote
/// (before dcap-qvl would refuse the edit itself for Intel's signature).
#[test]
fn issue_12_the_collaterals_tdx_module_identity_is_the_one_compared() {
    let mut v = DcapVerifier::new(&read_testdata("tdx/intel_sgx_root_ca.der")).unwrap();
    let mut c: Value =
        serde_json::from_slice(&read_testdata("tdx/dcapqvl_tdx_quote_collateral.json")).unwrap();
    let info = c["tcb_info"].as_str().unwrap().replace(
        &format!("\"mrsigner\":\"{}\"", "0".repeat(96)),
        &format!("\"mrsigner\":\"{}\"", "1".repeat(96)),
    );
    assert_ne!(info, c["tcb_info"].as_str().unwrap());
    c["tcb_info"] = info.into();
    v.add_collateral(serde_json::from_value(c).unwrap())
        .unwrap();
    let e = identity_error(
        v.verify(&read_testdata(TDX[1]), NOW),
        "another module signer in the collateral",
    );
    assert!(
        e.contains("MRSIGNERSEAM") && e.contains("FMSPC b0c06f000000"),
        "{e}"
    );
}
