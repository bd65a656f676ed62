//! Every TEE claim, version by version, against a value computed here independently from the
//! raw bytes at the offsets the vendors' specifications give (AMD SEV-SNP ABI specification,
//! ATTESTATION_REPORT, report versions 2, 3 and 5; Intel SGX/TDX DCAP quote formats, quote
//! versions 3, 4 and 5 with body types 1, 2 and 3). The whole claims object is compared, so a
//! claim the library adds without this test knowing it, or leaves at a default, fails.
//!
//! Samples (real, see testdata/SOURCES.md): SNP v2 (Trustee, Milan VCEK), v2 in hex (virtee/sev,
//! Milan), v2 of a debug guest (go-sev-guest), v3 of a Genoa (Veraison's configfs-tsm JSON), v3 (Trustee, Milan VLEK), v5 (teekit, a Google Cloud confidential VM); SGX quote v3
//! (Occlum), TDX quote v4 (Trustee, dcap-qvl, Trustee's second), TDX quote v5 with a TD 1.5
//! body (Trustee).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use serde_json::{Value, json};
use vouch_tee::{TeeKind, TeeRoots};
use vouch_testkit::read_testdata;

fn h(b: &[u8]) -> String {
    hex::encode(b)
}
fn u16le(b: &[u8], at: usize) -> u64 {
    u64::from(b[at]) | (u64::from(b[at + 1]) << 8)
}
fn u32le(b: &[u8], at: usize) -> u64 {
    (0..4).map(|i| u64::from(b[at + i]) << (8 * i)).sum()
}
fn u64le(b: &[u8], at: usize) -> u64 {
    (0..8).map(|i| u64::from(b[at + i]) << (8 * i)).sum()
}
fn bit(v: u64, n: u32) -> bool {
    (v >> n) & 1 == 1
}

fn roots() -> TeeRoots {
    let mut certs = vec![read_testdata("tdx/intel_sgx_root_ca.der")];
    for p in ["snp/milan_ask_ark_asvk.pem", "snp/genoa_ask_ark.pem"] {
        certs.extend(pem(p).into_iter().filter(|d| {
            let c = vouch_x509::parse(d, "x").unwrap();
            c.tbs_certificate.subject == c.tbs_certificate.issuer
        }));
    }
    TeeRoots::from_certs(&certs).unwrap()
}

fn pem(p: &str) -> Vec<Vec<u8>> {
    vouch_x509::pem_certificates(&String::from_utf8(read_testdata(p)).unwrap())
}

/// A TCB_VERSION (pre-Turin layout: boot loader, TEE, 4 reserved, SNP, microcode).
fn tcb(b: &[u8], at: usize) -> Value {
    json!({"bootloader": b[at], "tee": b[at + 1], "snp": b[at + 6], "microcode": b[at + 7]})
}

/// The SEV-SNP report's claims, from the ABI specification's table of ATTESTATION_REPORT.
fn snp_expected(b: &[u8]) -> Value {
    let version = u32le(b, 0x00);
    let policy = u64le(b, 0x08);
    let plat = u64le(b, 0x40);
    let key = u32le(b, 0x48);
    let ver = |at: usize| format!("{}.{}.{}", b[at + 2], b[at + 1], b[at]);
    json!({
        "version": version,
        "guest_svn": u32le(b, 0x04),
        "policy": {
            "abi_minor": policy & 0xff, "abi_major": (policy >> 8) & 0xff,
            "smt_allowed": bit(policy, 16), "migrate_ma": bit(policy, 18),
            "debug": bit(policy, 19), "single_socket": bit(policy, 20),
            "cxl_allowed": bit(policy, 21), "mem_aes_256_xts": bit(policy, 22),
            "rapl_dis": bit(policy, 23), "ciphertext_hiding": bit(policy, 24),
            "page_swap_disable": bit(policy, 25), "raw": format!("{policy:016x}"),
        },
        "family_id": h(&b[0x10..0x20]),
        "image_id": h(&b[0x20..0x30]),
        "vmpl": u32le(b, 0x30),
        "current_tcb": tcb(b, 0x38),
        "platform_info": {
            "smt_enabled": bit(plat, 0), "tsme_enabled": bit(plat, 1), "ecc_enabled": bit(plat, 2),
            "rapl_disabled": bit(plat, 3), "ciphertext_hiding": bit(plat, 4),
            "alias_check_complete": bit(plat, 5), "tio_enabled": bit(plat, 7),
            "raw": format!("{plat:016x}"),
        },
        "signing_key": match (key >> 2) & 7 { 0 => "vcek", 1 => "vlek", _ => "?" },
        "author_key_en": bit(key, 0),
        "mask_chip_key": bit(key, 1),
        "chip_id_masked": b[0x1A0..0x1E0].iter().all(|x| *x == 0),
        "report_data": h(&b[0x50..0x90]),
        "measurement": h(&b[0x90..0xC0]),
        "host_data": h(&b[0xC0..0xE0]),
        "id_key_digest": h(&b[0xE0..0x110]),
        "author_key_digest": h(&b[0x110..0x140]),
        "report_id": h(&b[0x140..0x160]),
        "report_id_ma": h(&b[0x160..0x180]),
        "reported_tcb": tcb(b, 0x180),
        "cpuid": if version >= 3 {
            json!({"family": b[0x188], "model": b[0x189], "stepping": b[0x18A]})
        } else {
            Value::Null
        },
        "chip_id": h(&b[0x1A0..0x1E0]),
        "committed_tcb": tcb(b, 0x1E0),
        "current_version": ver(0x1E8),
        "committed_version": ver(0x1EC),
        "launch_tcb": tcb(b, 0x1F0),
        "launch_mit_vector": if version >= 5 { json!(format!("{:016x}", u64le(b, 0x1F8))) } else { Value::Null },
        "current_mit_vector": if version >= 5 { json!(format!("{:016x}", u64le(b, 0x200))) } else { Value::Null },
    })
}

struct Snp {
    report: Vec<u8>,
    certs: Vec<Vec<u8>>,
    now: u64,
    version: u64,
    product: &'static str,
}

fn snp_samples() -> Vec<(&'static str, Snp)> {
    let milan = pem("snp/milan_ask_ark_asvk.pem");
    let with = |vek: Vec<u8>| {
        let mut c = vec![vek];
        c.extend(milan.clone());
        c
    };
    let virtee_hex = String::from_utf8(read_testdata("snp/virtee_report_milan.hex")).unwrap();
    vec![
        (
            "snp/report_v2.bin",
            Snp {
                report: read_testdata("snp/report_v2.bin"),
                certs: with(read_testdata("snp/vcek.der")),
                now: 1_717_200_000,
                version: 2,
                product: "Milan",
            },
        ),
        (
            "snp/virtee_report_milan.hex",
            Snp {
                report: hex::decode(virtee_hex.trim()).unwrap(),
                certs: with(read_testdata("snp/virtee_vcek_milan.der")),
                now: 1_717_200_000,
                version: 2,
                product: "Milan",
            },
        ),
        (
            "snp/gosevguest_report_v2.bin",
            Snp {
                report: read_testdata("snp/gosevguest_report_v2.bin"),
                certs: with(read_testdata("snp/gosevguest_vcek.der")),
                now: 1_717_200_000,
                version: 2,
                product: "Milan",
            },
        ),
        (
            "snp/vlek_report_v3.bin",
            Snp {
                report: read_testdata("snp/vlek_report_v3.bin"),
                certs: with(read_testdata("snp/vlek.der")),
                // 2025-06-01: inside the VLEK's one-year window (2024-12-10 .. 2025-12-10).
                now: 1_748_736_000,
                version: 3,
                product: "Milan",
            },
        ),
        (
            // A Genoa (CPUID 0x19/0x11) report v3, from Veraison's configfs-tsm JSON.
            "snp/veraison_tsm_report.json",
            {
                let d = vouch_tee::input::decode(
                    TeeKind::SevSnp,
                    &read_testdata("snp/veraison_tsm_report.json"),
                )
                .unwrap();
                Snp {
                    report: d.report,
                    certs: d.certs,
                    now: 1_750_809_600,
                    version: 3,
                    product: "Genoa",
                }
            },
        ),
        (
            "snp/gcp_report_v5.bin",
            Snp {
                report: read_testdata("snp/gcp_report_v5.bin"),
                certs: {
                    let mut c = pem("snp/gcp_vcek.pem");
                    c.extend(pem("snp/gcp_ask_ark.pem"));
                    c
                },
                // 2026-01-01: the VCEK was issued 2025-12-05.
                now: 1_767_225_600,
                version: 5,
                product: "Milan",
            },
        ),
    ]
}

#[test]
fn every_snp_claim_is_the_specs_field_for_its_report_version() {
    let roots = roots();
    let mut versions = Vec::new();
    for (name, s) in snp_samples() {
        let v = roots
            .verify(TeeKind::SevSnp, &s.report, &s.certs, s.now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = &s.report;
        assert_eq!(u32le(b, 0), s.version, "{name}");
        versions.push(s.version);
        let mut expected = snp_expected(b);
        let o = expected.as_object_mut().unwrap();
        o.insert("product".into(), s.product.into());
        o.insert(
            "ark".into(),
            format!(
                "CN=ARK-{},O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering",
                s.product
            )
            .into(),
        );
        o.insert("revocation_checked".into(), false.into());
        assert_eq!(v.claims["details"], expected, "{name}");
        // The top-level claims policies read, from the same fields.
        let top = json!({
            "kind": "sev-snp",
            "measurement": h(&b[0x90..0xC0]),
            "signer": h(&b[0xE0..0x110]),
            "debug": bit(u64le(b, 0x08), 19),
            "migratable": bit(u64le(b, 0x08), 18),
            "tcb": tcb(b, 0x180),
            "report_data": h(&b[0x50..0x90]),
            "revocation_checked": false,
            "details": expected,
        });
        assert_eq!(v.claims, top, "{name}");
        assert_eq!(v.report_data, b[0x50..0x90].to_vec(), "{name}");
    }
    versions.dedup();
    assert_eq!(versions, [2, 3, 5]);
}

#[test]
fn a_version_3_report_is_refused_with_a_vek_of_another_product_line() {
    // The VLEK report says (CPUID 0x19/0x01) it ran on a Milan; a Genoa VCEK for it is refused
    // before any signature is checked, by the report's own CPUID.
    let s = snp_samples().remove(3).1;
    let mut certs = pem("snp/genoa_ask_ark.pem");
    certs.insert(0, pem("azure/snp/vcek-genoa.pem").remove(0));
    let e = roots()
        .verify(TeeKind::SevSnp, &s.report, &certs, s.now)
        .unwrap_err();
    assert!(e.to_string().contains("Milan CPU"), "{e}");
}

/// Where the parts of a DCAP quote are, read here from the bytes (Intel's quote format:
/// header 48 bytes; v5 a body descriptor of type (u16) and size (u32); the body; then the
/// signature data: length, ECDSA signature 64, attestation key 64, and (v3) the QE report
/// directly or (v4/v5) certification data type 6 holding it).
struct Quote<'a> {
    b: &'a [u8],
    version: u64,
    body_type: u64,
    body: &'a [u8],
    qe_report: &'a [u8],
    pck_der: Vec<u8>,
}

fn quote(b: &[u8]) -> Quote<'_> {
    let version = u16le(b, 0);
    let tee = u32le(b, 4);
    let (body_type, body_at, body_len) = match version {
        5 => (u16le(b, 48), 54, u32le(b, 50) as usize),
        _ if tee == 0 => (1, 48, 384),
        _ => (2, 48, 584),
    };
    let sig_at = body_at + body_len + 4;
    let qe_at = if version == 3 {
        sig_at + 128
    } else {
        assert_eq!(u16le(b, sig_at + 128), 6);
        sig_at + 128 + 6
    };
    let qe_report = &b[qe_at..qe_at + 384];
    let text = String::from_utf8_lossy(&b[qe_at..]);
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap() + 27;
    let end = text[start..].find("-----END").unwrap() + start;
    let b64: String = text[start..end].split_whitespace().collect();
    let pck_der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Quote {
        b,
        version,
        body_type,
        body: &b[body_at..body_at + body_len],
        qe_report,
        pck_der,
    }
}

/// The value after an OID (DER, its full encoding given) in the PCK certificate's SGX
/// extension: INTEGER or OCTET STRING contents.
fn after_oid<'a>(der: &'a [u8], oid: &[u8]) -> &'a [u8] {
    let at = der.windows(oid.len()).position(|w| w == oid).unwrap() + oid.len();
    let len = der[at + 1] as usize;
    &der[at + 2..at + 2 + len]
}

const SGX_EXT: [u8; 11] = [
    0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01,
];

fn sgx_oid(tail: &[u8]) -> Vec<u8> {
    let mut o = SGX_EXT.to_vec();
    o[1] += u8::try_from(tail.len() - 1).unwrap();
    o.extend_from_slice(tail);
    o
}

fn dcap_expected(q: &Quote<'_>) -> Value {
    let (b, body, qe) = (q.b, q.body, q.qe_report);
    let pcesvn = after_oid(&q.pck_der, &sgx_oid(&[0x02, 0x11]))
        .iter()
        .fold(0u64, |a, x| (a << 8) | u64::from(*x));
    let cpusvn = h(after_oid(&q.pck_der, &sgx_oid(&[0x02, 0x12])));
    let pceid = h(after_oid(&q.pck_der, &sgx_oid(&[0x03])));
    let fmspc = h(after_oid(&q.pck_der, &sgx_oid(&[0x04])));
    let (qe_svn, pce_svn) = if q.version == 3 {
        (u16le(b, 8), u16le(b, 10))
    } else {
        // v4/v5: the header's bytes 8..12 are reserved (zero in every sample).
        assert_eq!(&b[8..12], &[0, 0, 0, 0]);
        (u16le(qe, 258), pcesvn)
    };
    let body_claims = if q.body_type == 1 {
        json!({
            "tee": "sgx",
            "cpu_svn": h(&body[0..16]), "misc_select": u32le(body, 16),
            "isv_ext_prod_id": h(&body[32..48]), "attributes": h(&body[48..64]),
            "debug": bit(u64le(body, 48), 1),
            "mr_enclave": h(&body[64..96]), "mr_signer": h(&body[128..160]),
            "config_id": h(&body[192..256]), "isv_prod_id": u16le(body, 256),
            "isv_svn": u16le(body, 258), "config_svn": u16le(body, 260),
            "isv_family_id": h(&body[304..320]), "report_data": h(&body[320..384]),
        })
    } else {
        let attrs = u64le(body, 120);
        let mut t = json!({
            "tee": "tdx",
            "tee_tcb_svn": h(&body[0..16]), "mr_seam": h(&body[16..64]),
            "mr_signer_seam": h(&body[64..112]), "seam_attributes": h(&body[112..120]),
            "td_attributes": h(&body[120..128]), "debug": bit(attrs, 0),
            "migratable": bit(attrs, 29), "xfam": h(&body[128..136]),
            "mr_td": h(&body[136..184]), "mr_config_id": h(&body[184..232]),
            "mr_owner": h(&body[232..280]), "mr_owner_config": h(&body[280..328]),
            "rtmr": [h(&body[328..376]), h(&body[376..424]), h(&body[424..472]), h(&body[472..520])],
            "report_data": h(&body[520..584]),
        });
        if q.body_type == 3 {
            t["tee_tcb_svn2"] = h(&body[584..600]).into();
            t["mr_service_td"] = h(&body[600..648]).into();
        }
        t
    };
    let tdx = q.body_type != 1;
    json!({
        "version": q.version,
        "body_type": q.body_type,
        "qe_svn": qe_svn,
        "pce_svn": pce_svn,
        "pck_cpu_svn": cpusvn,
        "pce_id": pceid,
        "qe_vendor_id": h(&b[12..28]),
        "user_data": h(&b[28..48]),
        "qe_cpu_svn": h(&qe[0..16]),
        "qe_isv_prod_id": u16le(qe, 256),
        "body": body_claims,
        "qe_mr_signer": h(&qe[128..160]),
        "qe_identity": {"id": if tdx { "TD_QE" } else { "QE" }, "source": "built_in"},
        "tdx_module_identity": if tdx { json!({"source": "built_in"}) } else { Value::Null },
        "pck_subject": "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX PCK Certificate",
        "fmspc": fmspc,
        "tcb_status": "not judged (no collateral)",
        "advisory_ids": [],
        "revocation_checked": false,
    })
}

#[test]
fn every_dcap_claim_is_the_specs_field_for_its_quote_version_and_body_type() {
    let roots = roots();
    let now = 1_750_809_600;
    let mut seen = Vec::new();
    for (name, kind) in [
        ("sgx/occlum_quote_v3.dat", TeeKind::Sgx),
        ("tdx/quote_v4.dat", TeeKind::Tdx),
        ("tdx/dcapqvl_tdx_quote.bin", TeeKind::Tdx),
        ("tdx/trustee_quote_6.dat", TeeKind::Tdx),
        ("tdx/trustee_quote_v5.dat", TeeKind::Tdx),
        // Cloud TDX VMs' quotes: Azure's (base64 text) and Google Cloud's (in JSON).
        ("tdx/azure_quote_v4.b64", TeeKind::Tdx),
        ("tdx/gcp_quote_v4.json", TeeKind::Tdx),
        // More platforms (teekit's collection): SGX v3 quotes of two other enclaves, TDX v4
        // quotes from Edgeless, tdx-quote-parser, zkdcap, and dstack's tappd as hex text.
        ("sgx/teekit_sgx_chinenyeokafor_v3.dat", TeeKind::Sgx),
        ("sgx/teekit_sgx_tlsn_v3.dat", TeeKind::Sgx),
        ("tdx/teekit_edgeless_v4.dat", TeeKind::Tdx),
        ("tdx/teekit_moemahhouk_v4.dat", TeeKind::Tdx),
        ("tdx/teekit_zkdcap_v4.dat", TeeKind::Tdx),
        ("tdx/teekit_tappd_v4.hex", TeeKind::Tdx),
    ] {
        let raw = vouch_tee::input::decode(kind, &read_testdata(name))
            .unwrap()
            .report;
        let q = quote(&raw);
        seen.push((q.version, q.body_type));
        let v = roots
            .verify(kind, &raw, &[], now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = dcap_expected(&q);
        assert_eq!(v.claims["details"], expected, "{name}");
        let body = &expected["body"];
        let tcb = if kind == TeeKind::Sgx {
            json!({"isv_svn": body["isv_svn"], "cpu_svn": body["cpu_svn"],
                   "qe_svn": expected["qe_svn"], "pce_svn": expected["pce_svn"],
                   "status": "not judged (no collateral)"})
        } else {
            json!({"tee_tcb_svn": body["tee_tcb_svn"], "tee_tcb_svn2": body.get("tee_tcb_svn2"),
                   "qe_svn": expected["qe_svn"], "pce_svn": expected["pce_svn"],
                   "status": "not judged (no collateral)"})
        };
        assert_eq!(v.claims["tcb"], tcb, "{name}");
        let (m, s) = if kind == TeeKind::Sgx {
            ("mr_enclave", "mr_signer")
        } else {
            ("mr_td", "mr_seam")
        };
        assert_eq!(v.claims["measurement"], body[m], "{name}");
        assert_eq!(v.claims["signer"], body[s], "{name}");
        assert_eq!(h(&v.report_data), body["report_data"], "{name}");
    }
    // SGX v3, TDX v4 (body type 2 by its TEE type), TDX v5 with a TD 1.5 body.
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [(3, 1), (4, 2), (5, 3)]);
}

#[test]
fn v4_and_v5_quotes_do_not_take_the_svns_from_the_reserved_header_bytes() {
    // The header bytes that v3 used for QE SVN and PCE SVN are zero in these quotes; the
    // claims are the QE report's ISVSVN and the PCK certificate's PCESVN, which are not.
    let roots = roots();
    for name in ["tdx/quote_v4.dat", "tdx/trustee_quote_v5.dat"] {
        let raw = read_testdata(name);
        assert_eq!(&raw[8..12], &[0, 0, 0, 0]);
        let v = roots
            .verify(TeeKind::Tdx, &raw, &[], 1_750_809_600)
            .unwrap();
        assert_ne!(v.claims["tcb"]["qe_svn"], 0, "{name}");
        assert_ne!(v.claims["tcb"]["pce_svn"], 0, "{name}");
    }
}

#[test]
fn a_one_byte_change_in_a_v3_or_v5_report_is_refused() {
    let roots = roots();
    for (name, s) in snp_samples().into_iter().skip(3) {
        roots
            .verify(TeeKind::SevSnp, &s.report, &s.certs, s.now)
            .unwrap();
        for at in 0..s.report.len() {
            let mut bad = s.report.clone();
            bad[at] ^= 0x01;
            assert!(
                roots
                    .verify(TeeKind::SevSnp, &bad, &s.certs, s.now)
                    .is_err(),
                "{name}: byte {at} changed, still accepted"
            );
        }
    }
}
