//! AMD SEV-SNP attestation reports (SEV-SNP ABI specification, "ATTESTATION_REPORT"), checked
//! by hand: the `sev` crate verifies the signature over a re-serialisation of the fields it
//! parsed and does not check validity windows or the certificate's TCB, so nothing here relies
//! on it.
//!
//! What is checked, in order: the report is exactly 1184 bytes of version 2 to 5, signed with
//! ECDSA P-384/SHA-384, reserved bytes zero (by version: CPUID family, model and stepping
//! at 0x188 from version 3, the launch and current mitigation vectors at 0x1F8 and 0x200 from
//! version 5; version 4 has version 3's layout); a version 3+ report's CPU is of the VEK's
//! product line; the VEK certificate (VCEK, or VLEK for cloud
//! providers) is issued by the product line's ASK (or ASVK), which the trusted ARK signed, the
//! ARK being byte-for-byte one the operator trusts, and all three are valid at the
//! verification time; the VEK's type is the one the report says signed it; the VEK's TCB
//! extensions equal the report's `REPORTED_TCB`, and a VCEK's hardware id equals `CHIP_ID`;
//! finally the signature over bytes 0x000–0x29F verifies under the VEK's P-384 key.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use serde::Serialize;
use x509_cert::Certificate;

use crate::TeeError;

/// Size of an attestation report, every version.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes covered by the signature.
const SIGNED_LEN: usize = 0x2A0;
/// ECDSA P-384 with SHA-384, the only signature algorithm defined.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";

fn malformed(m: impl Into<String>) -> TeeError {
    TeeError::Malformed(m.into())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A TCB version: the security patch level of each firmware component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// CPU microcode SVN.
    pub microcode: u8,
    /// FMC SVN (Turin and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl Tcb {
    fn parse(raw: u64, turin: bool) -> Self {
        let b = raw.to_le_bytes();
        if turin {
            Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }
        } else {
            Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            }
        }
    }
}

/// The guest policy the report was launched with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestPolicy {
    /// Minimum ABI major version.
    pub abi_major: u8,
    /// Minimum ABI minor version.
    pub abi_minor: u8,
    /// SMT allowed.
    pub smt_allowed: bool,
    /// Association with a migration agent allowed.
    pub migrate_ma: bool,
    /// Debugging allowed: the hypervisor can read and write guest memory.
    pub debug: bool,
    /// Guest may run on one socket only.
    pub single_socket: bool,
    /// CXL may be populated with devices or memory (bit 21).
    pub cxl_allowed: bool,
    /// AES-256-XTS required for memory encryption (bit 22).
    pub mem_aes_256_xts: bool,
    /// RAPL must be disabled (bit 23).
    pub rapl_dis: bool,
    /// Ciphertext hiding must be enabled (bit 24).
    pub ciphertext_hiding: bool,
    /// The guest may not use the page move and swap commands (bit 25).
    pub page_swap_disable: bool,
    /// The whole policy as the report carries it, hex (64 bits, little-endian value).
    pub raw: String,
}

/// The platform's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    /// SMT enabled.
    pub smt_enabled: bool,
    /// Transparent SME enabled.
    pub tsme_enabled: bool,
    /// ECC memory in use.
    pub ecc_enabled: bool,
    /// RAPL disabled.
    pub rapl_disabled: bool,
    /// Ciphertext hiding enabled.
    pub ciphertext_hiding: bool,
    /// Alias detection completed since the last reset, no aliasing addresses (bit 5).
    pub alias_check_complete: bool,
    /// SEV-TIO enabled (bit 7).
    pub tio_enabled: bool,
    /// The whole field, hex (64 bits, little-endian value).
    pub raw: String,
}

/// The CPU the report was made on (report version 3 and later): CPUID Fn0000_0001_EAX's
/// extended family, extended model and stepping, as the firmware fills them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cpuid {
    /// Family (0x19 Milan and Genoa, 0x1A Turin).
    pub family: u8,
    /// Model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

impl Cpuid {
    /// The product line this CPU belongs to (the AMD SEV-SNP families and models, as
    /// virtee/sev's `Generation::identify_cpu` lists them), if known.
    pub fn product_line(&self) -> Option<&'static str> {
        match (self.family, self.model) {
            (0x19, 0x00..=0x0F) => Some("Milan"),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some("Genoa"),
            (0x1A, 0x00..=0x11) => Some("Turin"),
            (0x1A, 0x50..=0x57 | 0x90..=0x9F | 0xA0..=0xAF | 0xC0..=0xC7) => Some("Venice"),
            _ => None,
        }
    }
}

/// Which key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (one per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (one per cloud provider and TCB).
    Vlek,
}

/// A parsed report. Nothing in it is trusted until [`SnpVerifier::verify`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpReport {
    /// Report format version (2–5).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: GuestPolicy,
    /// Family id given at launch, hex.
    pub family_id: String,
    /// Image id given at launch, hex.
    pub image_id: String,
    /// VMPL that asked for the report.
    pub vmpl: u32,
    /// TCB the platform currently runs.
    pub current_tcb: Tcb,
    /// Platform state.
    pub platform_info: PlatformInfo,
    /// Which key signed.
    pub signing_key: SigningKey,
    /// AUTHOR_KEY_EN: the author key digest is present.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY: the firmware was told not to sign with the chip key (the signature is
    /// then zero, so such a report never verifies).
    pub mask_chip_key: bool,
    /// Whether the chip id is masked (MaskChipId at launch: CHIP_ID is all zero).
    pub chip_id_masked: bool,
    /// The 64 bytes the guest asked to be bound, hex.
    pub report_data: String,
    /// The launch measurement, hex (48 bytes).
    pub measurement: String,
    /// Data the host gave at launch, hex.
    pub host_data: String,
    /// SHA-384 of the ID key that signed the ID block, hex (zero when none).
    pub id_key_digest: String,
    /// SHA-384 of the author key, hex (zero when none).
    pub author_key_digest: String,
    /// Report id, hex.
    pub report_id: String,
    /// Report id of the migration agent, hex.
    pub report_id_ma: String,
    /// TCB the report (and the VEK) is for.
    pub reported_tcb: Tcb,
    /// The CPU's family, model and stepping (version 3 and later; absent in version 2).
    pub cpuid: Option<Cpuid>,
    /// Chip id, hex (64 bytes).
    pub chip_id: String,
    /// Committed TCB.
    pub committed_tcb: Tcb,
    /// Firmware version running, `major.minor.build`.
    pub current_version: String,
    /// Firmware version committed.
    pub committed_version: String,
    /// TCB at launch.
    pub launch_tcb: Tcb,
    /// The mitigations the guest required at launch, hex (version 5 and later).
    pub launch_mit_vector: Option<String>,
    /// The mitigations the platform now applies, hex (version 5 and later).
    pub current_mit_vector: Option<String>,
    #[serde(skip)]
    reported_tcb_raw: u64,
    #[serde(skip)]
    chip_id_raw: Vec<u8>,
}

/// Reserved ranges that must be zero, by report version (offsets from the ABI specification).
fn reserved_ranges(version: u32) -> Vec<(usize, usize)> {
    let mut r = vec![(0x4C, 0x50), (0x1EB, 0x1EC), (0x1EF, 0x1F0)];
    // 0x188..0x1A0: CPUID family/model/stepping from version 3 on, the rest reserved.
    r.push(if version >= 3 {
        (0x18B, 0x1A0)
    } else {
        (0x188, 0x1A0)
    });
    // Version 5 adds the mitigation vectors at 0x1F8..0x208.
    r.push(if version >= 5 {
        (0x208, SIGNED_LEN)
    } else {
        (0x1F8, SIGNED_LEN)
    });
    // The signature area after R and S.
    r.push((SIGNED_LEN + 144, REPORT_LEN));
    r
}

impl SnpReport {
    /// Parse a report (exactly [`REPORT_LEN`] bytes). Checks the version, the signature
    /// algorithm and that reserved bytes are zero; reads the TCBs in the layout of the
    /// product line (`turin` for Turin and later).
    pub fn parse(b: &[u8], turin: bool) -> Result<Self, TeeError> {
        if b.len() != REPORT_LEN {
            return Err(malformed(format!(
                "an SEV-SNP report is {REPORT_LEN} bytes, this one {}",
                b.len()
            )));
        }
        let version = u32_at(b, 0);
        if !(2..=5).contains(&version) {
            return Err(malformed(format!(
                "report version {version} (2 to 5 known)"
            )));
        }
        let sig_algo = u32_at(b, 0x34);
        if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(malformed(format!(
                "signature algorithm {sig_algo} (only 1, ECDSA P-384 SHA-384, is defined)"
            )));
        }
        for (from, to) in reserved_ranges(version) {
            if let Some(i) = b[from..to].iter().position(|x| *x != 0) {
                return Err(malformed(format!(
                    "reserved byte at 0x{:03x} is not zero",
                    from + i
                )));
            }
        }
        let policy = u64_at(b, 0x08);
        if policy & (1 << 17) == 0 {
            return Err(malformed(
                "guest policy bit 17 (reserved, must be one) is zero",
            ));
        }
        let plat = u64_at(b, 0x40);
        let key_info = u32_at(b, 0x48);
        if key_info >> 5 != 0 {
            return Err(malformed(format!(
                "reserved bits of the key information 0x{key_info:08x} are not zero"
            )));
        }
        let signing_key = match (key_info >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            k => {
                return Err(malformed(format!(
                    "signing key {k} (0 VCEK and 1 VLEK are defined)"
                )));
            }
        };
        let version_of = |at: usize| format!("{}.{}.{}", b[at + 2], b[at + 1], b[at]);
        let hexr = |from: usize, len: usize| hex::encode(&b[from..from + len]);
        Ok(Self {
            version,
            guest_svn: u32_at(b, 0x04),
            policy: GuestPolicy {
                abi_minor: (policy & 0xff) as u8,
                abi_major: ((policy >> 8) & 0xff) as u8,
                smt_allowed: policy & (1 << 16) != 0,
                migrate_ma: policy & (1 << 18) != 0,
                debug: policy & (1 << 19) != 0,
                single_socket: policy & (1 << 20) != 0,
                cxl_allowed: policy & (1 << 21) != 0,
                mem_aes_256_xts: policy & (1 << 22) != 0,
                rapl_dis: policy & (1 << 23) != 0,
                ciphertext_hiding: policy & (1 << 24) != 0,
                page_swap_disable: policy & (1 << 25) != 0,
                raw: format!("{policy:016x}"),
            },
            family_id: hexr(0x10, 16),
            image_id: hexr(0x20, 16),
            vmpl: u32_at(b, 0x30),
            current_tcb: Tcb::parse(u64_at(b, 0x38), turin),
            platform_info: PlatformInfo {
                smt_enabled: plat & 1 != 0,
                tsme_enabled: plat & 2 != 0,
                ecc_enabled: plat & 4 != 0,
                rapl_disabled: plat & 8 != 0,
                ciphertext_hiding: plat & 16 != 0,
                alias_check_complete: plat & 32 != 0,
                tio_enabled: plat & 128 != 0,
                raw: format!("{plat:016x}"),
            },
            signing_key,
            author_key_en: key_info & 1 != 0,
            mask_chip_key: key_info & 2 != 0,
            chip_id_masked: b[0x1A0..0x1E0].iter().all(|x| *x == 0),
            report_data: hexr(0x50, 64),
            measurement: hexr(0x90, 48),
            host_data: hexr(0xC0, 32),
            id_key_digest: hexr(0xE0, 48),
            author_key_digest: hexr(0x110, 48),
            report_id: hexr(0x140, 32),
            report_id_ma: hexr(0x160, 32),
            reported_tcb: Tcb::parse(u64_at(b, 0x180), turin),
            cpuid: (version >= 3).then(|| Cpuid {
                family: b[0x188],
                model: b[0x189],
                stepping: b[0x18A],
            }),
            chip_id: hexr(0x1A0, 64),
            committed_tcb: Tcb::parse(u64_at(b, 0x1E0), turin),
            current_version: version_of(0x1E8),
            committed_version: version_of(0x1EC),
            launch_tcb: Tcb::parse(u64_at(b, 0x1F0), turin),
            launch_mit_vector: (version >= 5).then(|| format!("{:016x}", u64_at(b, 0x1F8))),
            current_mit_vector: (version >= 5).then(|| format!("{:016x}", u64_at(b, 0x200))),
            reported_tcb_raw: u64_at(b, 0x180),
            chip_id_raw: b[0x1A0..0x1E0].to_vec(),
        })
    }
}

/// A verified report and what the chain said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    /// The report's fields.
    #[serde(flatten)]
    pub report: SnpReport,
    /// The product line (`Milan`, `Genoa`, `Turin`, …), from the VEK certificate.
    pub product: String,
    /// Subject of the trusted ARK the chain ended at.
    pub ark: String,
    /// Whether the ASK/ASVK (and VEK) were checked against a current CRL of that ARK from
    /// the offline store (AMD KDS `…/crl`); false when the store has none.
    pub revocation_checked: bool,
}

/// Trusted ARKs, one or more per product line, and the chains already verified.
#[derive(Debug, Clone)]
pub struct SnpVerifier {
    arks: Vec<(Vec<u8>, Certificate)>,
    /// CRLs of the ARKs (DER, with the issuer they name), checked at each verification time.
    crls: Vec<(Vec<u8>, x509_cert::name::Name)>,
    /// VEK → ASK → ARK chains already checked (each VEK signs many reports).
    chains: vouch_x509::VerifiedChains,
}

/// Read an unsigned INTEGER extension value (DER `02 len bytes`) that fits a byte.
fn small_int(der: &[u8]) -> Option<u8> {
    match der {
        [0x02, 1, v] if *v < 0x80 => Some(*v),
        [0x02, 2, 0, v] if *v >= 0x80 => Some(*v),
        _ => None,
    }
}

fn cn(c: &Certificate) -> String {
    c.tbs_certificate.subject.to_string()
}

/// The product line named by the VEK (`productName`, e.g. `Milan-B0` → `Milan`).
fn product(vek: &Certificate) -> Result<String, TeeError> {
    let raw = vouch_x509::extension(vek, OID_PRODUCT_NAME)
        .ok_or_else(|| TeeError::Chain("the VEK certificate has no productName".into()))?;
    // IA5String: tag 0x16, short length.
    let name = match raw {
        [0x16, len, rest @ ..] if usize::from(*len) == rest.len() => {
            String::from_utf8_lossy(rest).to_string()
        }
        _ => {
            return Err(TeeError::Chain(
                "the VEK's productName is not an IA5String".into(),
            ));
        }
    };
    let line = name.split('-').next().unwrap_or_default().to_string();
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TeeError::Chain(format!("product name {name:?}")));
    }
    Ok(line)
}

/// The VEK's TCB extensions must be the report's `REPORTED_TCB`, and a VCEK's hardware id
/// the report's `CHIP_ID`.
pub fn check_vek_binding(vek: &Certificate, report: &SnpReport) -> Result<(), TeeError> {
    let ext = |oid: &str, what: &str| -> Result<u8, TeeError> {
        vouch_x509::extension(vek, oid)
            .and_then(small_int)
            .ok_or_else(|| TeeError::Mismatch(format!("the VEK certificate has no {what} SPL")))
    };
    let t = &report.reported_tcb;
    let mut pairs = vec![
        ("boot loader", ext(OID_BL_SPL, "boot loader")?, t.bootloader),
        ("TEE", ext(OID_TEE_SPL, "TEE")?, t.tee),
        ("SNP", ext(OID_SNP_SPL, "SNP")?, t.snp),
        ("microcode", ext(OID_UCODE_SPL, "microcode")?, t.microcode),
    ];
    if let Some(fmc) = t.fmc {
        pairs.push(("FMC", ext(OID_FMC_SPL, "FMC")?, fmc));
    }
    for (what, cert, rep) in pairs {
        if cert != rep {
            return Err(TeeError::Mismatch(format!(
                "the VEK is for {what} SPL {cert}, the report's REPORTED_TCB says {rep}"
            )));
        }
    }
    if report.signing_key == SigningKey::Vcek {
        let id = hw_id(vek)?;
        if report.chip_id_masked {
            return Err(TeeError::Mismatch(
                "the chip id is masked, so a VCEK cannot be matched to it".into(),
            ));
        }
        if id != report.chip_id_raw.as_slice() {
            return Err(TeeError::Mismatch(
                "the VCEK is for another chip than the report's CHIP_ID".into(),
            ));
        }
    }
    Ok(())
}

/// The VCEK's hardware id: the 64-byte chip id it was issued for.
fn hw_id(vcek: &Certificate) -> Result<&[u8], TeeError> {
    let hw = vouch_x509::extension(vcek, OID_HW_ID)
        .ok_or_else(|| TeeError::Mismatch("the VCEK has no hwID".into()))?;
    // AMD puts the 64 bytes directly in the extension value (no inner OCTET STRING).
    match hw {
        raw if raw.len() == 64 => Ok(raw),
        [0x04, 0x40, rest @ ..] if rest.len() == 64 => Ok(rest),
        _ => Err(TeeError::Mismatch("the VCEK's hwID is not 64 bytes".into())),
    }
}

/// Whether a product line lays out its TCB as Turin does (FMC first).
fn turin_layout(product: &str) -> bool {
    product == "Turin" || product == "Venice"
}

/// The store key of a VCEK: its hardware id (hex) and the raw REPORTED_TCB it certifies, laid
/// out as the report carries it for the VCEK's product line.
pub fn vcek_index(vcek: &Certificate) -> Option<(String, u64)> {
    let spl = |oid| vouch_x509::extension(vcek, oid).and_then(small_int);
    let (bl, tee, snp, ucode) = (
        spl(OID_BL_SPL)?,
        spl(OID_TEE_SPL)?,
        spl(OID_SNP_SPL)?,
        spl(OID_UCODE_SPL)?,
    );
    let hw = hw_id(vcek).ok()?;
    let turin = product(vcek).ok().is_some_and(|p| turin_layout(&p));
    let b = if turin {
        [spl(OID_FMC_SPL)?, bl, tee, snp, 0, 0, 0, ucode]
    } else {
        [bl, tee, 0, 0, 0, 0, snp, ucode]
    };
    Some((hex::encode(hw), u64::from_le_bytes(b)))
}

/// The store key a report's VCEK has: its CHIP_ID (hex) and raw REPORTED_TCB.
pub fn report_vcek_key(report: &[u8]) -> Result<(String, u64), TeeError> {
    if report.len() != REPORT_LEN {
        return Err(malformed(format!(
            "an SEV-SNP report is {REPORT_LEN} bytes, this one {}",
            report.len()
        )));
    }
    Ok((hex::encode(&report[0x1A0..0x1E0]), u64_at(report, 0x180)))
}

/// What one entry of an SEV-SNP certificate table holds (GHCB specification, extended guest
/// request: the table the host attaches to a report, `auxblob` of configfs-tsm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpCert {
    /// VCEK, GUID 63da758d-e664-4564-adc5-f4b93be8accd.
    Vcek,
    /// VLEK, GUID a8074bc2-a25a-483e-aae6-39c045a0b8a1.
    Vlek,
    /// ASK (or ASVK), GUID 4ab7b379-bbac-4fe4-a02f-05aef327c782.
    Ask,
    /// ARK, GUID c0b406a4-a803-4952-9743-3fb6014cd0ae.
    Ark,
    /// Any other GUID (a CRL, a vendor's own entry), kept by its 16 bytes.
    Other([u8; 16]),
}

const CERT_GUIDS: [(SnpCert, [u8; 16]); 4] = [
    (
        SnpCert::Vcek,
        guid(0x63da758d, 0xe664, 0x4564, 0xadc5_f4b93be8accd),
    ),
    (
        SnpCert::Vlek,
        guid(0xa8074bc2, 0xa25a, 0x483e, 0xaae6_39c045a0b8a1),
    ),
    (
        SnpCert::Ask,
        guid(0x4ab7b379, 0xbbac, 0x4fe4, 0xa02f_05aef327c782),
    ),
    (
        SnpCert::Ark,
        guid(0xc0b406a4, 0xa803, 0x4952, 0x9743_3fb6014cd0ae),
    ),
];

/// A GUID's 16 bytes in the order its text reads (as `uuid_parse` gives them, which is how
/// AMD's tools and the Linux sev-guest driver's users write the table).
const fn guid(a: u32, b: u16, c: u16, d: u64) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    let d = d.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Largest certificate table accepted (a VEK, an ASK and an ARK take about 4 KiB).
pub const MAX_CERT_TABLE: usize = 64 * 1024;

/// Parse an SEV-SNP certificate table: entries of GUID (16 bytes), offset and length (u32
/// little endian, from the table's start) up to an all-zero entry; every certificate lies
/// inside the blob after the table. An empty or all-zero blob is an empty table (a host that
/// provisions no certificates). The host writes this table, so it is checked like any
/// untrusted input; the certificates themselves are checked by the verifier.
pub fn cert_table(blob: &[u8]) -> Result<Vec<(SnpCert, Vec<u8>)>, TeeError> {
    if blob.len() > MAX_CERT_TABLE {
        return Err(malformed(format!(
            "certificate table of {} bytes (at most {MAX_CERT_TABLE})",
            blob.len()
        )));
    }
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(e) = blob.get(at..at + 24) else {
            if blob.iter().all(|b| *b == 0) {
                return Ok(out);
            }
            return Err(malformed("certificate table has no terminating entry"));
        };
        if e.iter().all(|b| *b == 0) {
            break;
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&e[..16]);
        let offset = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
        let length = u32::from_le_bytes([e[20], e[21], e[22], e[23]]) as usize;
        let end = offset
            .checked_add(length)
            .filter(|end| *end <= blob.len())
            .ok_or_else(|| {
                malformed(format!(
                    "certificate table entry {} points outside the blob",
                    out.len()
                ))
            })?;
        if length == 0 {
            return Err(malformed(format!(
                "certificate table entry {} is empty",
                out.len()
            )));
        }
        let kind = CERT_GUIDS
            .iter()
            .find(|(_, b)| *b == g)
            .map_or(SnpCert::Other(g), |(k, _)| *k);
        out.push((kind, blob[offset..end].to_vec()));
        at += 24;
    }
    let table_end = at + 24;
    for (i, e) in blob[..at].chunks(24).enumerate() {
        let offset = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as usize;
        if offset < table_end {
            return Err(malformed(format!(
                "certificate table entry {i} overlaps the table"
            )));
        }
    }
    Ok(out)
}

/// The certificates a verifier needs from a certificate table, in the order `certs` of `tee`
/// evidence takes them: the VEK (VCEK or VLEK), then the ASK/ASVK. The ARK is left out (the
/// verifier trusts its own) and so is anything unknown.
pub fn vek_chain(table: &[(SnpCert, Vec<u8>)]) -> Vec<Vec<u8>> {
    let of = |k: SnpCert| {
        table
            .iter()
            .filter(move |(c, _)| *c == k)
            .map(|(_, d)| d.clone())
    };
    of(SnpCert::Vcek)
        .chain(of(SnpCert::Vlek))
        .chain(of(SnpCert::Ask))
        .collect()
}

/// The known certificate kind a GUID (16 bytes, as the table holds it) names.
pub fn cert_guid(g: &[u8]) -> Option<SnpCert> {
    CERT_GUIDS
        .iter()
        .find(|(_, b)| b.as_slice() == g)
        .map(|(k, _)| *k)
}

/// [`vek_chain`] with every certificate as DER: hosts put DER in the table, but some
/// (the configfs-tsm `auxblob` Veraison exchanges, for one) put PEM text, which is decoded
/// here. An entry that is neither is an error.
pub fn vek_chain_der(table: &[(SnpCert, Vec<u8>)]) -> Result<Vec<Vec<u8>>, TeeError> {
    vek_chain(table)
        .into_iter()
        .map(|entry| {
            let text = std::str::from_utf8(&entry).ok();
            match text {
                Some(t) if t.trim_start().starts_with("-----BEGIN CERTIFICATE") => {
                    let mut blocks = vouch_x509::pem_blocks(t, "CERTIFICATE");
                    match (blocks.len(), blocks.pop()) {
                        (1, Some(Ok(der))) => Ok(der),
                        _ => Err(malformed(
                            "a certificate table entry is not exactly one PEM certificate",
                        )),
                    }
                }
                _ if entry.first() == Some(&0x30) => Ok(entry),
                _ => Err(malformed(
                    "a certificate table entry is neither a DER nor a PEM certificate",
                )),
            }
        })
        .collect()
}

/// R and S, 72 bytes little-endian each, as the 96-byte big-endian `r ‖ s` of a P-384
/// signature; the high 24 bytes of each must be zero.
fn signature_rs(b: &[u8]) -> Result<Vec<u8>, TeeError> {
    let mut out = Vec::with_capacity(96);
    for at in [SIGNED_LEN, SIGNED_LEN + 72] {
        let le = &b[at..at + 72];
        if le[48..].iter().any(|x| *x != 0) {
            return Err(TeeError::Signature(
                "a signature component does not fit P-384".into(),
            ));
        }
        out.extend(le[..48].iter().rev());
    }
    Ok(out)
}

impl SnpVerifier {
    /// Trust these ARKs (DER). Each must be self-signed with a valid signature.
    pub fn new(arks: &[Vec<u8>]) -> Result<Self, TeeError> {
        let mut out = Vec::new();
        for der in arks {
            let c = vouch_x509::parse_self_signed(der, "trusted ARK").map_err(TeeError::Chain)?;
            out.push((der.clone(), c));
        }
        if out.is_empty() {
            return Err(TeeError::Chain("no trusted ARK".into()));
        }
        Ok(Self {
            arks: out,
            crls: Vec::new(),
            chains: Default::default(),
        })
    }

    /// Add a CRL an operator fetched from AMD (KDS `vcek/v1/<product>/crl` or
    /// `vlek/v1/<product>/crl`, DER). It must be issued by a trusted ARK; its signature and
    /// window are checked at every verification time, and once it is present, a chain ending
    /// at that ARK is refused while the CRL is out of date. Returns the ARK's name.
    pub fn add_crl(&mut self, der: Vec<u8>) -> Result<String, TeeError> {
        use x509_cert::der::Decode as _;
        if der.len() > vouch_x509::MAX_CRL {
            return Err(malformed("CRL over the size limit"));
        }
        let crl = x509_cert::crl::CertificateList::from_der(&der)
            .map_err(|e| malformed(format!("CRL is not DER: {e}")))?;
        let issuer = crl.tbs_cert_list.issuer;
        let ark = self
            .arks
            .iter()
            .find(|(_, a)| a.tbs_certificate.subject == issuer)
            .map(|(_, a)| cn(a))
            .ok_or_else(|| {
                TeeError::Chain(format!("a CRL of {issuer}, which is not a trusted ARK"))
            })?;
        self.crls.push((der, issuer));
        Ok(ark)
    }

    /// Verify `report` signed by the VEK `vek` (DER), with `chain` holding the ASK or ASVK
    /// (and possibly the ARK and other certificates: the ones needed are picked by name), all
    /// certificates checked at `now` (Unix seconds).
    pub fn verify(
        &self,
        report: &[u8],
        vek_der: &[u8],
        chain: &[Vec<u8>],
        now: u64,
    ) -> Result<SnpClaims, TeeError> {
        let vek = vouch_x509::parse(vek_der, "VEK").map_err(TeeError::Chain)?;
        let product = product(&vek)?;
        let rep = SnpReport::parse(report, turin_layout(&product))?;
        if let Some(line) = rep.cpuid.as_ref().and_then(Cpuid::product_line)
            && line != product
        {
            return Err(TeeError::Mismatch(format!(
                "the report was made on a {line} CPU, the VEK is for {product}"
            )));
        }
        let is_vlek = cn(&vek).contains("SEV-VLEK");
        match (rep.signing_key, is_vlek) {
            (SigningKey::Vcek, false) | (SigningKey::Vlek, true) => {}
            (k, _) => {
                return Err(TeeError::Mismatch(format!(
                    "the report says a {k:?} signed it, the certificate is {}",
                    cn(&vek)
                )));
            }
        }
        vouch_x509::check_validity(&vek, now, "VEK").map_err(TeeError::Chain)?;
        // The intermediate: the certificate in `chain` that is the VEK's issuer.
        let certs: Vec<(&Vec<u8>, Certificate)> = chain
            .iter()
            .filter_map(|d| vouch_x509::parse(d, "chain").ok().map(|c| (d, c)))
            .collect();
        let (ask_der, ask) = certs
            .iter()
            .find(|(_, c)| c.tbs_certificate.subject == vek.tbs_certificate.issuer)
            .ok_or_else(|| {
                TeeError::Chain(format!(
                    "no certificate in the chain is the VEK's issuer {}",
                    vek.tbs_certificate.issuer
                ))
            })?;
        // The root: a trusted ARK of the VEK's product line that signed the intermediate.
        let (ark_der, ark) = self
            .arks
            .iter()
            .find(|(_, a)| a.tbs_certificate.subject == ask.tbs_certificate.issuer)
            .ok_or_else(|| {
                TeeError::Chain(format!(
                    "{} is issued by {}, which is not a trusted ARK",
                    cn(ask),
                    ask.tbs_certificate.issuer
                ))
            })?;
        if !cn(ark).contains(&format!("ARK-{product}")) {
            return Err(TeeError::Chain(format!(
                "the VEK is a {product} key but the chain ends at {}",
                cn(ark)
            )));
        }
        let crls: Vec<&[u8]> = self
            .crls
            .iter()
            .filter(|(_, issuer)| *issuer == ark.tbs_certificate.subject)
            .map(|(d, _)| d.as_slice())
            .collect();
        let mut ders = vec![vek_der, ask_der.as_slice(), ark_der.as_slice()];
        ders.extend(&crls);
        if !self.chains.contains(&ders, now) {
            vouch_x509::verify_signed_by(vek_der, &vek, ask).map_err(TeeError::Chain)?;
            vouch_x509::check_validity(ask, now, "ASK").map_err(TeeError::Chain)?;
            if !vouch_x509::is_ca(ask) {
                return Err(TeeError::Chain(format!("{} is not a CA", cn(ask))));
            }
            vouch_x509::verify_signed_by(ask_der, ask, ark).map_err(TeeError::Chain)?;
            vouch_x509::check_validity(ark, now, "ARK").map_err(TeeError::Chain)?;
            let mut until = u64::MAX;
            for crl in &crls {
                let v = vouch_x509::verify_crl(crl, ark, now).map_err(TeeError::Chain)?;
                v.check(ask).map_err(TeeError::Chain)?;
                until = until.min(v.next_update);
            }
            self.chains.insert_until(&ders, &[&vek, ask, ark], until);
        }
        check_vek_binding(&vek, &rep)?;
        // The report signature, over the exact bytes received.
        let point = vek
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| TeeError::Chain("VEK key bit string".into()))?;
        let sig = signature_rs(report)?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
            .verify(&report[..SIGNED_LEN], &sig)
            .map_err(|_| {
                TeeError::Signature("the report's signature does not verify under the VEK".into())
            })?;
        Ok(SnpClaims {
            report: rep,
            product,
            ark: cn(ark),
            revocation_checked: !crls.is_empty(),
        })
    }
}
