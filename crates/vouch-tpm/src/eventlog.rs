//! The TCG PC Client platform firmware event log (`binary_bios_measurements`): parse the
//! crypto-agile format (and the legacy SHA-1 format), replay it into PCR values, check the
//! replay against quoted PCRs, and derive claims from the events that the quote covers.
//!
//! The log is untrusted: only its digests are covered by the quote. The boot claims
//! ([`EventLog::claims`], in `bootclaims.rs`) are read only from where the platform measures
//! them, and claims from event *data* only from events whose digest is the hash of that data,
//! so a log cannot say one thing and measure another.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::{HashAlg, PcrValues, Reader, TpmError};

/// Largest event log accepted (real firmware logs are 20–100 KiB).
pub const MAX_EVENT_LOG: usize = 2 * 1024 * 1024;
/// Most events accepted.
const MAX_EVENTS: usize = 20_000;
/// Most digest algorithms a Spec ID event may list.
const MAX_ALGS: usize = 8;

/// `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 0x3;
/// `EV_SEPARATOR`
pub const EV_SEPARATOR: u32 = 0x4;
/// `EV_EFI_VARIABLE_DRIVER_CONFIG`
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
/// `EV_EFI_BOOT_SERVICES_APPLICATION`
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;

const SPEC_ID_03: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// The name of an event type, as the TCG PC Client specification spells it.
pub fn event_type_name(t: u32) -> String {
    let s = match t {
        0x0 => "EV_PREBOOT_CERT",
        0x1 => "EV_POST_CODE",
        0x2 => "EV_UNUSED",
        0x3 => "EV_NO_ACTION",
        0x4 => "EV_SEPARATOR",
        0x5 => "EV_ACTION",
        0x6 => "EV_EVENT_TAG",
        0x7 => "EV_S_CRTM_CONTENTS",
        0x8 => "EV_S_CRTM_VERSION",
        0x9 => "EV_CPU_MICROCODE",
        0xa => "EV_PLATFORM_CONFIG_FLAGS",
        0xb => "EV_TABLE_OF_DEVICES",
        0xc => "EV_COMPACT_HASH",
        0xd => "EV_IPL",
        0xe => "EV_IPL_PARTITION_DATA",
        0xf => "EV_NONHOST_CODE",
        0x10 => "EV_NONHOST_CONFIG",
        0x11 => "EV_NONHOST_INFO",
        0x12 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000a => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000b => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000c => "EV_EFI_VARIABLE_BOOT2",
        0x8000_000d => "EV_EFI_GPT_EVENT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        0x8000_00e0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00e1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00e2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => return format!("0x{t:08x}"),
    };
    s.to_string()
}

/// The digest algorithms a crypto-agile log declares, from its Spec ID event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecId {
    /// `platformClass`
    pub platform_class: u32,
    /// `specVersionMajor`.`specVersionMinor`, errata.
    pub spec_version: (u8, u8, u8),
    /// `uintnSize` (1 = 32-bit, 2 = 64-bit UEFI).
    pub uintn_size: u8,
    /// `(algorithmId, digestSize)` for each bank the log carries.
    pub algorithms: Vec<(u16, u16)>,
}

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log (0 = the header event).
    pub index: usize,
    /// PCR extended.
    pub pcr: u8,
    /// Event type.
    pub event_type: u32,
    /// `(algorithmId, digest)` per bank.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// Event data.
    pub data: Vec<u8>,
}

impl Event {
    /// The digest in `bank`, if the event carries one.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == bank.id())
            .map(|(_, d)| d.as_slice())
    }

    /// Whether the event's digest in `bank` is the hash of its data (with or without one
    /// trailing NUL, as GRUB and systemd measure strings), so claims may be taken from the data.
    pub fn data_is_measured(&self, bank: HashAlg) -> bool {
        let Some(d) = self.digest(bank) else {
            return false;
        };
        if bank.digest(&[&self.data]) == d {
            return true;
        }
        match self.data.split_last() {
            Some((0, head)) => bank.digest(&[head]) == d,
            _ => false,
        }
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The Spec ID event of a crypto-agile log; `None` for a legacy SHA-1 log.
    pub spec: Option<SpecId>,
    /// Locality the TPM was started from (`StartupLocality` event), 0 when absent.
    pub startup_locality: u8,
    /// Every event after the header, in order.
    pub events: Vec<Event>,
}

fn bad(at: usize, m: impl std::fmt::Display) -> TpmError {
    TpmError::Invalid(format!("event log at byte {at}: {m}"))
}

fn le32(r: &mut Reader<'_>, what: &'static str) -> Result<u32, TpmError> {
    let b = r.bytes(4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le16(r: &mut Reader<'_>, what: &'static str) -> Result<u16, TpmError> {
    let b = r.bytes(2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn pcr_index(r: &mut Reader<'_>) -> Result<u8, TpmError> {
    let at = r.position();
    let p = le32(r, "event pcrIndex")?;
    if p >= 24 {
        return Err(bad(at, format!("PCR index {p} (0-23)")));
    }
    Ok(p as u8)
}

fn event_data<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], TpmError> {
    let at = r.position();
    let n = le32(r, "event size")? as usize;
    if n > r.remaining() {
        return Err(bad(
            at,
            format!("event size {n} exceeds the {} bytes left", r.remaining()),
        ));
    }
    r.bytes(n, "event data")
}

fn parse_spec_id(data: &[u8], at: usize) -> Result<SpecId, TpmError> {
    let mut r = Reader::new(data);
    r.bytes(16, "Spec ID signature")?;
    let platform_class = le32(&mut r, "platformClass")?;
    let minor = r.u8("specVersionMinor")?;
    let major = r.u8("specVersionMajor")?;
    let errata = r.u8("specErrata")?;
    let uintn_size = r.u8("uintnSize")?;
    let n = le32(&mut r, "numberOfAlgorithms")? as usize;
    if n == 0 || n > MAX_ALGS {
        return Err(bad(
            at,
            format!("Spec ID event lists {n} algorithms (1-{MAX_ALGS})"),
        ));
    }
    let mut algorithms = Vec::with_capacity(n);
    for _ in 0..n {
        let alg = le16(&mut r, "algorithmId")?;
        let size = le16(&mut r, "digestSize")?;
        if let Ok(h) = HashAlg::from_id(alg)
            && h.size() != size as usize
        {
            return Err(bad(
                at,
                format!(
                    "Spec ID event gives {h} a digest size of {size}, not {}",
                    h.size()
                ),
            ));
        }
        if size == 0 || size > 64 {
            return Err(bad(
                at,
                format!("digest size {size} for algorithm 0x{alg:04x}"),
            ));
        }
        if algorithms.iter().any(|(a, _)| *a == alg) {
            return Err(bad(at, format!("algorithm 0x{alg:04x} listed twice")));
        }
        algorithms.push((alg, size));
    }
    let vendor = r.u8("vendorInfoSize")? as usize;
    r.bytes(vendor, "vendorInfo")?;
    r.finish("Spec ID event")?;
    Ok(SpecId {
        platform_class,
        spec_version: (major, minor, errata),
        uintn_size,
        algorithms,
    })
}

impl EventLog {
    /// Parse a binary event log. Crypto-agile when the first event is a `Spec ID Event03`,
    /// legacy SHA-1 (`TCG_PCR_EVENT` throughout) otherwise.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        if bytes.len() > MAX_EVENT_LOG {
            return Err(TpmError::TooLarge {
                what: "event log",
                size: bytes.len(),
                limit: MAX_EVENT_LOG,
            });
        }
        let mut r = Reader::new(bytes);
        // The first event is always in the SHA-1 `TCG_PCR_EVENT` format.
        let pcr = pcr_index(&mut r)?;
        let event_type = le32(&mut r, "event type")?;
        let digest = r.bytes(20, "SHA-1 digest")?.to_vec();
        let data = event_data(&mut r)?;
        let agile = event_type == EV_NO_ACTION && data.starts_with(SPEC_ID_03);
        let mut log = EventLog {
            spec: None,
            startup_locality: 0,
            events: Vec::new(),
        };
        if agile {
            if pcr != 0 || digest.iter().any(|b| *b != 0) {
                return Err(bad(
                    0,
                    "the Spec ID event must be in PCR 0 with a zero digest",
                ));
            }
            log.spec = Some(parse_spec_id(data, 32)?);
        } else {
            log.push(Event {
                index: 0,
                pcr,
                event_type,
                digests: vec![(HashAlg::Sha1.id(), digest)],
                data: data.to_vec(),
            })?;
        }
        while r.remaining() > 0 {
            let index = log.events.len() + usize::from(agile);
            if index > MAX_EVENTS {
                return Err(bad(r.position(), format!("more than {MAX_EVENTS} events")));
            }
            let at = r.position();
            let pcr = pcr_index(&mut r)?;
            let event_type = le32(&mut r, "event type")?;
            let digests = match &log.spec {
                None => vec![(HashAlg::Sha1.id(), r.bytes(20, "SHA-1 digest")?.to_vec())],
                Some(spec) => {
                    let n = le32(&mut r, "digest count")? as usize;
                    if n > spec.algorithms.len() {
                        return Err(bad(
                            at,
                            format!(
                                "event has {n} digests but the log declares {} algorithms",
                                spec.algorithms.len()
                            ),
                        ));
                    }
                    let mut d: Vec<(u16, Vec<u8>)> = Vec::with_capacity(n);
                    for _ in 0..n {
                        let alg = le16(&mut r, "digest algorithm")?;
                        let Some((_, size)) = spec.algorithms.iter().find(|(a, _)| *a == alg)
                        else {
                            return Err(bad(
                                at,
                                format!("digest algorithm 0x{alg:04x} is not declared by the log"),
                            ));
                        };
                        if d.iter().any(|(a, _)| *a == alg) {
                            return Err(bad(at, format!("two digests for algorithm 0x{alg:04x}")));
                        }
                        d.push((alg, r.bytes(*size as usize, "digest")?.to_vec()));
                    }
                    d
                }
            };
            let data = event_data(&mut r)?.to_vec();
            log.push(Event {
                index,
                pcr,
                event_type,
                digests,
                data,
            })?;
        }
        Ok(log)
    }

    fn push(&mut self, e: Event) -> Result<(), TpmError> {
        if e.event_type == EV_NO_ACTION && e.data.starts_with(STARTUP_LOCALITY) {
            match e.data.get(16..) {
                Some([l]) if e.pcr == 0 => self.startup_locality = *l,
                _ => return Err(bad(0, "malformed StartupLocality event")),
            }
        }
        self.events.push(e);
        Ok(())
    }

    /// Banks the log carries digests for (that this crate can hash).
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec {
            None => vec![HashAlg::Sha1],
            Some(s) => s
                .algorithms
                .iter()
                .filter_map(|(a, _)| HashAlg::from_id(*a).ok())
                .collect(),
        }
    }

    /// Replay the log: every PCR it extends, per bank, from the reset value (zero; PCR 0
    /// starts at the startup locality). `EV_NO_ACTION` events are not extended.
    pub fn replay(&self) -> PcrValues {
        self.replay_banks(&self.banks())
    }

    /// [`EventLog::replay`] restricted to `banks` (those a quote covers).
    pub fn replay_banks(&self, banks: &[HashAlg]) -> PcrValues {
        let mut out = PcrValues::default();
        for bank in self.banks().into_iter().filter(|b| banks.contains(b)) {
            let b = out.0.entry(bank).or_default();
            for e in &self.events {
                if e.event_type == EV_NO_ACTION {
                    continue;
                }
                let Some(d) = e.digest(bank) else { continue };
                let cur = b
                    .entry(e.pcr)
                    .or_insert_with(|| initial(bank, e.pcr, self.startup_locality));
                *cur = bank.digest(&[cur, d]);
            }
        }
        out
    }

    /// Check the replay against quoted PCR values and return the PCRs that were checked, per
    /// bank. Every quoted PCR that the log extends, and every quoted PCR 0–7 (which only
    /// firmware extends), must equal the replay; at least one bank must be compared.
    pub fn check(&self, quoted: &PcrValues) -> Result<BTreeMap<HashAlg, BTreeSet<u8>>, TpmError> {
        // Only the banks the quote covers are worth hashing.
        let banks: Vec<HashAlg> = quoted.0.keys().copied().collect();
        let replayed = self.replay_banks(&banks);
        let mut checked = BTreeMap::new();
        for (bank, values) in &quoted.0 {
            let Some(rep) = replayed.0.get(bank) else {
                continue;
            };
            let mut set = BTreeSet::new();
            for (pcr, q) in values {
                if *pcr > 7 && !rep.contains_key(pcr) {
                    continue;
                }
                let r = rep
                    .get(pcr)
                    .cloned()
                    .unwrap_or_else(|| initial(*bank, *pcr, self.startup_locality));
                if &r != q {
                    return Err(TpmError::EventLogReplay {
                        bank: bank.name().to_string(),
                        pcr: *pcr,
                        replayed: hex::encode(r),
                        quoted: hex::encode(q),
                    });
                }
                set.insert(*pcr);
            }
            checked.insert(*bank, set);
        }
        if checked.is_empty() {
            return Err(TpmError::Invalid(
                "the event log carries no PCR bank that the quote covers".into(),
            ));
        }
        Ok(checked)
    }
}

fn initial(bank: HashAlg, pcr: u8, locality: u8) -> Vec<u8> {
    let mut v = vec![0u8; bank.size()];
    if pcr == 0
        && let Some(last) = v.last_mut()
    {
        *last = locality;
    }
    v
}
