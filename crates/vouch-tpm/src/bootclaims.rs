//! Boot claims from a checked event log, taken only from where the TCG PC Client Platform
//! Firmware Profile (PFP) says the platform measures them.
//!
//! Replay ([`EventLog::check`]) proves that the log's digests extend to the quoted PCRs, and no
//! more: the event *type* and *data* are covered by nothing unless the digest is the hash of
//! the data, the order of events across PCRs is covered by nothing, and after boot anyone
//! with access to the TPM can extend PCRs 0–15 (and reset and extend 16 and 23) and append
//! matching events. So each claim is read from one place only:
//!
//! - `secure_boot` and the `PK`/`KEK`/`db`/`dbx`/`SecureBoot` digests: measured
//!   `EV_EFI_VARIABLE_DRIVER_CONFIG` events in PCR 7 before PCR 7's separator (PFP "PCR[7]"),
//!   each variable once; nothing when PCR 7 has no separator.
//! - `boot_applications`, `boot_loader`, `kernel`: `EV_EFI_BOOT_SERVICES_APPLICATION` events
//!   in PCR 4 before the measured "Exit Boot Services Invocation" action in PCR 5; nothing when
//!   the log has no such event in a checked PCR 5. (The OS loaders — shim, GRUB, the kernel —
//!   come after PCR 4's separator, which firmware measures at Ready To Boot, so that separator
//!   is not the end of the boot applications; ExitBootServices is.)
//! - `kernel_cmdline`: GRUB's measured `kernel_cmdline:` `EV_IPL` event in PCR 8 before
//!   ExitBootServices, exactly one.
//! - `crtm_version`: the measured `EV_S_CRTM_VERSION` event in PCR 0 before PCR 0's separator,
//!   exactly one; never an `EV_NO_ACTION` event, which extends nothing.
//! - `actions`: measured `EV_ACTION`/`EV_EFI_ACTION` strings in PCRs 0–7.
//!
//! A separator is known by its type *or* by its digest (the hash of `00000000h`,
//! `00000001h` or `FFFFFFFFh`), so relabelling the real separator does not reopen its PCR.
//! What this cannot see: the log's interleaving across PCRs. Root can extend PCR 4 (or 8)
//! after boot and list the event before the ExitBootServices action; the PCR 4 (or 8) value
//! then differs from a clean boot's, and only a `pcr` reference value (or a policy on the
//! whole `boot_applications` list) tells them apart.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::HashAlg;
use crate::eventlog::{
    EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_NO_ACTION, EV_SEPARATOR,
    EventLog, event_type_name,
};

/// `EV_ACTION`
const EV_ACTION: u32 = 0x5;
/// `EV_S_CRTM_VERSION`
const EV_S_CRTM_VERSION: u32 = 0x8;
/// `EV_IPL`
const EV_IPL: u32 = 0xd;
/// `EV_EFI_ACTION`
const EV_EFI_ACTION: u32 = 0x8000_0007;
/// The `EV_EFI_ACTION` string firmware measures into PCR 5 when the OS loader calls
/// `ExitBootServices()`.
const EXIT_BOOT_SERVICES: &[u8] = b"Exit Boot Services Invocation";
/// Separator event data: `00000000h` normally, `00000001h` or `FFFFFFFFh` after an error.
const SEPARATOR_DATA: [[u8; 4]; 3] = [[0; 4], [1, 0, 0, 0], [0xff; 4]];

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c) as it is laid out in memory.
const EFI_GLOBAL_VARIABLE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (d719b2cb-3d3a-4596-a3bc-dad00e67656f): db, dbx.
const EFI_IMAGE_SECURITY_DATABASE: [u8; 16] = [
    0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
];

/// What the verified part of an event log says about the boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventLogClaims {
    /// Bank the digests below are from.
    pub bank: String,
    /// Events counted (those in verified PCRs, `EV_NO_ACTION` excluded).
    pub events: usize,
    /// Event counts by type name.
    pub events_by_type: BTreeMap<String, usize>,
    /// UEFI Secure Boot state from the `SecureBoot` variable measured in PCR 7 before its
    /// separator (`None`: not so measured, e.g. legacy BIOS, or measured more than once).
    pub secure_boot: Option<bool>,
    /// Digests of the Secure Boot variables (`PK`, `KEK`, `db`, `dbx`, `SecureBoot`) measured
    /// once each in PCR 7 before its separator.
    pub secure_boot_variables: BTreeMap<String, String>,
    /// Authenticode digests of the EFI applications started from PCR 4 before
    /// ExitBootServices, in order (empty when the log shows no ExitBootServices).
    pub boot_applications: Vec<String>,
    /// The first of them (shim or the boot loader).
    pub boot_loader: Option<String>,
    /// The last of them when there are at least two (the kernel image).
    pub kernel: Option<String>,
    /// The kernel command line GRUB measured into PCR 8 before ExitBootServices (its
    /// `kernel_cmdline:` event; `None` when there is not exactly one).
    pub kernel_cmdline: Option<String>,
    /// Measured action strings (`EV_ACTION`, `EV_EFI_ACTION`) in PCRs 0–7.
    pub actions: Vec<String>,
    /// The S-CRTM version string measured in PCR 0 before its separator.
    pub crtm_version: Option<String>,
    /// Separators whose digest is not the hash of their data, and events carrying a
    /// separator's digest under another type.
    pub invalid_separators: usize,
}

/// The one value seen for a claim, or a conflict.
#[derive(Default)]
enum Once<T> {
    #[default]
    Unseen,
    One(T),
    Many,
}

impl<T> Once<T> {
    fn see(&mut self, v: T) {
        *self = match self {
            Once::Unseen => Once::One(v),
            _ => Once::Many,
        };
    }

    fn get(self) -> Option<T> {
        match self {
            Once::One(v) => Some(v),
            _ => None,
        }
    }
}

impl EventLog {
    /// Claims from the events in PCRs that [`EventLog::check`] verified (`bank` is the bank
    /// the claims' digests are taken from), each from where the platform measures it (see the
    /// module documentation).
    pub fn claims(&self, bank: HashAlg, verified: &BTreeSet<u8>) -> EventLogClaims {
        let mut c = EventLogClaims {
            bank: bank.name().to_string(),
            ..Default::default()
        };
        let separator_digests: Vec<Vec<u8>> =
            SEPARATOR_DATA.iter().map(|d| bank.digest(&[d])).collect();
        // PCRs whose separator has been seen.
        let mut closed = BTreeSet::new();
        let mut exit_boot_services = false;
        let mut variables: BTreeMap<String, Once<(String, Vec<u8>)>> = BTreeMap::new();
        let mut crtm = Once::Unseen;
        let mut cmdline = Once::Unseen;
        let mut apps = Vec::new();
        for e in &self.events {
            if !verified.contains(&e.pcr) || e.event_type == EV_NO_ACTION {
                continue;
            }
            c.events += 1;
            *c.events_by_type
                .entry(event_type_name(e.event_type))
                .or_default() += 1;
            let digest = e.digest(bank);
            let measured = e.data_is_measured(bank);
            // In the firmware's PCRs, separator data under another type is a separator too.
            let separator_digest =
                e.pcr <= 7 && digest.is_some_and(|d| separator_digests.iter().any(|s| s == d));
            if e.event_type == EV_SEPARATOR || separator_digest {
                if e.event_type != EV_SEPARATOR || !measured {
                    c.invalid_separators += 1;
                }
                closed.insert(e.pcr);
                continue;
            }
            let Some(digest) = digest else { continue };
            let open = !closed.contains(&e.pcr);
            match (e.pcr, e.event_type) {
                (7, EV_EFI_VARIABLE_DRIVER_CONFIG) if open && measured => {
                    if let Some((name, value)) = secure_boot_variable(&e.data) {
                        variables
                            .entry(name.to_string())
                            .or_default()
                            .see((hex::encode(digest), value.to_vec()));
                    }
                }
                (0, EV_S_CRTM_VERSION) if open && measured => crtm.see(utf16_or_ascii(&e.data)),
                (4, EV_EFI_BOOT_SERVICES_APPLICATION) if !exit_boot_services => {
                    apps.push(hex::encode(digest))
                }
                (8, EV_IPL) if !exit_boot_services && measured => {
                    let s = String::from_utf8_lossy(e.data.strip_suffix(&[0]).unwrap_or(&e.data));
                    if let Some(line) = s.strip_prefix("kernel_cmdline: ") {
                        cmdline.see(line.to_string());
                    }
                }
                _ => {}
            }
            // Known by its measured string whatever type the log gives it.
            if e.pcr == 5
                && measured
                && e.data.strip_suffix(&[0]).unwrap_or(&e.data) == EXIT_BOOT_SERVICES
            {
                exit_boot_services = true;
            }
            if e.pcr <= 7 && matches!(e.event_type, EV_ACTION | EV_EFI_ACTION) && measured {
                c.actions
                    .push(String::from_utf8_lossy(&e.data).into_owned());
            }
        }
        // Variables count only once PCR 7's separator closed them.
        if closed.contains(&7) {
            for (name, seen) in variables {
                let Some((digest, value)) = seen.get() else {
                    continue;
                };
                if name == "SecureBoot" {
                    c.secure_boot = match value.as_slice() {
                        [0] => Some(false),
                        [1] => Some(true),
                        _ => None,
                    };
                }
                c.secure_boot_variables.insert(name, digest);
            }
        }
        if closed.contains(&0) {
            c.crtm_version = crtm.get().filter(|v| !v.is_empty());
        }
        if exit_boot_services {
            c.kernel_cmdline = cmdline.get();
            c.boot_loader = apps.first().cloned();
            c.kernel = apps.last().filter(|_| apps.len() >= 2).cloned();
            c.boot_applications = apps;
        }
        c
    }
}

/// The name and value of the Secure Boot policy variable (`SecureBoot`, `PK`, `KEK` under
/// `EFI_GLOBAL_VARIABLE`; `db`, `dbx` under `EFI_IMAGE_SECURITY_DATABASE`) that `data`
/// measures, if any.
fn secure_boot_variable(data: &[u8]) -> Option<(&'static str, &[u8])> {
    let (guid, name, value) = uefi_variable(data)?;
    let names: &[&'static str] = match guid {
        EFI_GLOBAL_VARIABLE => &["SecureBoot", "PK", "KEK"],
        EFI_IMAGE_SECURITY_DATABASE => &["db", "dbx"],
        _ => return None,
    };
    let name = names.iter().copied().find(|n| *n == name)?;
    Some((name, value))
}

/// `UEFI_VARIABLE_DATA`: GUID, name length (UTF-16 units), data length, name, data.
fn uefi_variable(d: &[u8]) -> Option<([u8; 16], String, &[u8])> {
    let guid: [u8; 16] = d.get(..16)?.try_into().ok()?;
    let name_len = usize::try_from(u64::from_le_bytes(d.get(16..24)?.try_into().ok()?)).ok()?;
    let data_len = usize::try_from(u64::from_le_bytes(d.get(24..32)?.try_into().ok()?)).ok()?;
    let name_end = 32usize.checked_add(name_len.checked_mul(2)?)?;
    let units: Vec<u16> = d
        .get(32..name_end)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16(&units).ok()?;
    let value = d.get(name_end..name_end.checked_add(data_len)?)?;
    Some((guid, name.trim_end_matches('\0').to_string(), value))
}

fn utf16_or_ascii(d: &[u8]) -> String {
    if d.len().is_multiple_of(2) && d.iter().skip(1).step_by(2).all(|b| *b == 0) && !d.is_empty() {
        let units: Vec<u16> = d
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .to_string();
    }
    String::from_utf8_lossy(d)
        .trim_end_matches('\0')
        .to_string()
}
