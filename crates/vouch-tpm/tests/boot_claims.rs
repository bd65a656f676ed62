//! Issue 12, item 1: boot claims come only from where the platform measures them (TCG PC
//! Client Platform Firmware Profile). Each attack starts from the real OVMF log and the PCRs
//! the kernel read on that boot (tests/data/SOURCES.md) and does what a root attacker on the
//! running machine can do: extend a PCR that firmware no longer guards (PCRs 0-15 take extends
//! at locality 0 after boot, 16 and 23 can even be reset) and send a log that replays to the
//! new values, or alter event data that no digest covers. The replay check passes in every
//! case; the claims must not move.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Range;
use vouch_tpm::{EventLog, EventLogClaims, HashAlg, PcrValues};

const EV_NO_ACTION: u32 = 0x3;
const EV_SEPARATOR: u32 = 0x4;
const EV_POST_CODE: u32 = 0x1;
const EV_S_CRTM_VERSION: u32 = 0x8;
const EV_IPL: u32 = 0xd;
const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
const EV_EFI_ACTION: u32 = 0x8000_0007;

/// `EFI_GLOBAL_VARIABLE` as laid out in memory (the SecureBoot, PK and KEK variables).
const EFI_GLOBAL_VARIABLE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// The banks of the OVMF log, in the order its Spec ID event declares them.
const BANKS: [HashAlg; 4] = [
    HashAlg::Sha1,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
];

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `UEFI_VARIABLE_DATA` as OVMF measures it: GUID, name length (UTF-16 units, no NUL), data
/// length, name, data.
fn uefi_variable(guid: [u8; 16], name: &str, value: &[u8]) -> Vec<u8> {
    let name = utf16(name);
    let mut d = guid.to_vec();
    d.extend_from_slice(&((name.len() / 2) as u64).to_le_bytes());
    d.extend_from_slice(&(value.len() as u64).to_le_bytes());
    d.extend_from_slice(&name);
    d.extend_from_slice(value);
    d
}

fn secure_boot_1() -> Vec<u8> {
    uefi_variable(EFI_GLOBAL_VARIABLE, "SecureBoot", &[1])
}

/// The digest an event carries in each bank: the hash of its data, or (for an EFI application,
/// whose digest is the Authenticode hash of the image) a value of the attacker's choosing.
#[derive(Clone, Copy)]
enum Digest<'a> {
    OfData,
    Image(&'a [u8]),
}

/// A TCG_PCR_EVENT2 for the four-bank OVMF log.
fn event(pcr: u32, ty: u32, digest: Digest<'_>, data: &[u8]) -> Vec<u8> {
    let mut b = pcr.to_le_bytes().to_vec();
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&(BANKS.len() as u32).to_le_bytes());
    for bank in BANKS {
        let d = match digest {
            Digest::OfData => bank.digest(&[data]),
            Digest::Image(seed) => bank.digest(&[b"authenticode of ", seed]),
        };
        b.extend_from_slice(&bank.id().to_le_bytes());
        b.extend_from_slice(&d);
    }
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// Where an added event goes in the log. Replay binds the order of the events *within* a PCR,
/// not across PCRs, so an attacker may put it anywhere after the PCR's last event.
enum At {
    End,
    Before(usize),
}

/// The real OVMF boot: its log and the PCRs (0-7 and 9, four banks) the kernel read from the
/// TPM on that boot.
struct Boot {
    log: Vec<u8>,
    quoted: PcrValues,
}

impl Boot {
    fn real() -> Self {
        let v: serde_json::Value =
            serde_json::from_slice(&data("qemu_firmware_logs.json")).unwrap();
        let mut quoted = PcrValues::default();
        for (name, values) in v["ovmf"]["pcrs"].as_object().unwrap() {
            let bank = quoted.0.entry(HashAlg::parse(name).unwrap()).or_default();
            for i in [0u8, 1, 2, 3, 4, 5, 6, 7, 9] {
                let hex = values[i as usize].as_str().unwrap();
                bank.insert(i, hex::decode(hex).unwrap());
            }
        }
        let boot = Boot {
            log: data("ovmf_binary_bios_measurements"),
            quoted,
        };
        assert_eq!(boot.parsed().events.len(), 31);
        boot
    }

    fn parsed(&self) -> EventLog {
        EventLog::parse(&self.log).unwrap()
    }

    /// Byte range of each event after the header (index 0 here is the log's event 1).
    fn ranges(&self) -> Vec<Range<usize>> {
        let header = 32 + u32::from_le_bytes(self.log[28..32].try_into().unwrap()) as usize;
        let mut at = header;
        let mut out = Vec::new();
        while at < self.log.len() {
            // pcr, type, count, then (alg, digest) for the four banks.
            let size_at = at + 12 + BANKS.iter().map(|b| 2 + b.size()).sum::<usize>();
            let size = u32::from_le_bytes(self.log[size_at..size_at + 4].try_into().unwrap());
            out.push(at..size_at + 4 + size as usize);
            at = size_at + 4 + size as usize;
        }
        out
    }

    /// Position (0-based, as in `EventLog::events`) of the first event matching `f`.
    fn find(&self, f: impl Fn(&vouch_tpm::Event) -> bool) -> usize {
        self.parsed().events.iter().position(f).unwrap()
    }

    fn exit_boot_services(&self) -> usize {
        self.find(|e| e.pcr == 5 && e.data == b"Exit Boot Services Invocation")
    }

    /// Put an event in the log and extend `pcr` by its digests, as `TPM2_PCR_Extend` would:
    /// the quote then covers the new value. (When the event lands before other events of the
    /// same PCR, the quoted value is what that PCR would hold had firmware measured it there.)
    fn extend(&mut self, pcr: u8, ty: u32, digest: Digest<'_>, data: &[u8], at: At) {
        let bytes = event(pcr.into(), ty, digest, data);
        let offset = match at {
            At::End => self.log.len(),
            At::Before(i) => self.ranges()[i].start,
        };
        self.log.splice(offset..offset, bytes);
        if ty != EV_NO_ACTION {
            self.requote(pcr);
        }
    }

    /// The quoted value of `pcr` in every bank, from the log as it now stands.
    fn requote(&mut self, pcr: u8) {
        let replayed = self.parsed().replay();
        for (bank, values) in &mut self.quoted.0 {
            values.insert(pcr, replayed.0[bank][&pcr].clone());
        }
    }

    /// Rewrite the type of event `i` (the type is not covered by any digest).
    fn relabel(&mut self, i: usize, ty: u32) {
        let at = self.ranges()[i].start + 4;
        self.log[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    }

    /// Replace the data of event `i`, keeping the digests it carries (`measured`: also set its
    /// digests to the hash of the new data and move the quoted PCR to match, as firmware that
    /// had measured that data would have).
    fn set_data(&mut self, i: usize, new: &[u8], measured: bool) {
        let r = self.ranges()[i].clone();
        let old = self.log[r.clone()].to_vec();
        let pcr = u32::from_le_bytes(old[0..4].try_into().unwrap());
        let ty = u32::from_le_bytes(old[4..8].try_into().unwrap());
        let bytes = if measured {
            event(pcr, ty, Digest::OfData, new)
        } else {
            let size_at = 12 + BANKS.iter().map(|b| 2 + b.size()).sum::<usize>();
            let mut b = old[..size_at].to_vec();
            b.extend_from_slice(&(new.len() as u32).to_le_bytes());
            b.extend_from_slice(new);
            b
        };
        self.log.splice(r, bytes);
        if measured {
            self.requote(pcr as u8);
        }
    }

    /// Drop every event of `pcr` and reset its quoted value, as on firmware that measures
    /// nothing there.
    fn without_pcr(&mut self, pcr: u8) {
        for r in self.ranges().into_iter().rev() {
            if self.log[r.start] == pcr {
                self.log.drain(r);
            }
        }
        for (bank, values) in &mut self.quoted.0 {
            values.insert(pcr, vec![0; bank.size()]);
        }
    }

    /// What the verifier derives: the log must replay to every quoted PCR, then claims come
    /// from the SHA-256 bank over the PCRs so checked.
    fn claims(&self) -> EventLogClaims {
        let log = self.parsed();
        let checked = log.check(&self.quoted).expect("the forged log replays");
        log.claims(HashAlg::Sha256, &checked[&HashAlg::Sha256])
    }
}

fn sha256(seed: &[u8]) -> String {
    hex::encode(HashAlg::Sha256.digest(&[b"authenticode of ", seed]))
}

#[test]
fn the_real_log_gives_its_claims() {
    let c = Boot::real().claims();
    assert_eq!(c.secure_boot, Some(false));
    assert_eq!(c.boot_applications.len(), 1);
    assert_eq!(
        c.boot_loader.as_deref(),
        Some(c.boot_applications[0].as_str())
    );
    assert_eq!(c.kernel, None);
    assert_eq!(
        c.crtm_version, None,
        "OVMF measures an empty version string"
    );
    assert_eq!(c.kernel_cmdline, None);
}

#[test]
fn issue_12_secure_boot_in_pcr_23_is_not_a_claim() {
    let mut b = Boot::real();
    b.extend(
        23,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::End,
    );
    let c = b.claims();
    assert_eq!(c.secure_boot, Some(false), "{c:?}");
    // Moved before PCR 7's separator in the log: still not PCR 7.
    let mut b = Boot::real();
    let sep7 = b.find(|e| e.pcr == 7 && e.event_type == EV_SEPARATOR);
    b.extend(
        23,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::Before(sep7),
    );
    assert_eq!(b.claims().secure_boot, Some(false));
    // Any PCR from 8 up.
    for pcr in [8, 14, 16] {
        let mut b = Boot::real();
        b.extend(
            pcr,
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            Digest::OfData,
            &secure_boot_1(),
            At::End,
        );
        assert_eq!(b.claims().secure_boot, Some(false), "PCR {pcr}");
    }
}

#[test]
fn issue_12_secure_boot_after_the_pcr7_separator_is_not_a_claim() {
    let mut b = Boot::real();
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::End,
    );
    let c = b.claims();
    assert_eq!(c.secure_boot, Some(false), "{c:?}");
    // Placed in the log right after PCR 7's separator, ahead of the other PCRs' events: PCR
    // 7's own chain still puts it after the separator.
    let mut b = Boot::real();
    let sep7 = b.find(|e| e.pcr == 7 && e.event_type == EV_SEPARATOR);
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::Before(sep7 + 1),
    );
    assert_eq!(b.claims().secure_boot, Some(false));
    // A PK measured after the separator does not replace the real one either.
    let real_pk = Boot::real().claims().secure_boot_variables["PK"].clone();
    let mut b = Boot::real();
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &uefi_variable(EFI_GLOBAL_VARIABLE, "PK", b"attacker's key"),
        At::End,
    );
    assert_eq!(b.claims().secure_boot_variables["PK"], real_pk);
}

#[test]
fn issue_12_a_relabelled_pcr7_separator_still_ends_the_variables() {
    // The event type is not measured: the attacker calls PCR 7's separator a POST code, then
    // extends PCR 7 with SecureBoot=1. The separator is known by its digest as well.
    let mut b = Boot::real();
    let sep7 = b.find(|e| e.pcr == 7 && e.event_type == EV_SEPARATOR);
    b.relabel(sep7, EV_POST_CODE);
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::End,
    );
    let c = b.claims();
    assert_eq!(c.secure_boot, Some(false), "{c:?}");
    assert_eq!(c.invalid_separators, 1, "separator data under another type");
}

#[test]
fn issue_12_secure_boot_needs_pcr7_to_be_closed_by_a_separator() {
    // Firmware that measures nothing into PCR 7 (no Secure Boot): the attacker extends PCR 7
    // from its reset value with SecureBoot=1. Without a separator there is no "before" it.
    let mut b = Boot::real();
    b.without_pcr(7);
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &secure_boot_1(),
        At::End,
    );
    let c = b.claims();
    assert_eq!(c.secure_boot, None, "{c:?}");
    assert!(c.secure_boot_variables.is_empty(), "{c:?}");
}

#[test]
fn issue_12_secure_boot_variables_with_altered_data_are_not_claims() {
    // A flipped byte in db's data, its old digest kept: replays, but is not what was measured.
    let mut b = Boot::real();
    let db = b.find(|e| {
        e.event_type == EV_EFI_VARIABLE_DRIVER_CONFIG && e.data.windows(4).any(|w| w == utf16("db"))
    });
    let mut altered = b.parsed().events[db].data.clone();
    *altered.last_mut().unwrap() ^= 1;
    b.set_data(db, &altered, false);
    let c = b.claims();
    assert!(!c.secure_boot_variables.contains_key("db"), "{c:?}");
    assert_eq!(c.secure_boot, Some(false));
    // SecureBoot rewritten to 1 under its old digest.
    let mut b = Boot::real();
    let sb = b.find(|e| e.event_type == EV_EFI_VARIABLE_DRIVER_CONFIG);
    let mut altered = b.parsed().events[sb].data.clone();
    *altered.last_mut().unwrap() = 1;
    b.set_data(sb, &altered, false);
    let c = b.claims();
    assert_eq!(c.secure_boot, None, "{c:?}");
    assert!(!c.secure_boot_variables.contains_key("SecureBoot"));
}

#[test]
fn issue_12_secure_boot_measured_by_firmware_is_still_a_claim() {
    // Firmware that had Secure Boot on would have measured SecureBoot=1 in its place.
    let mut b = Boot::real();
    let sb = b.find(|e| e.event_type == EV_EFI_VARIABLE_DRIVER_CONFIG);
    b.set_data(sb, &secure_boot_1(), true);
    let c = b.claims();
    assert_eq!(c.secure_boot, Some(true), "{c:?}");
    // Measured twice before the separator with different values: no claim.
    let sep7 = b.find(|e| e.pcr == 7 && e.event_type == EV_SEPARATOR);
    let sb0 = uefi_variable(EFI_GLOBAL_VARIABLE, "SecureBoot", &[0]);
    b.extend(
        7,
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        Digest::OfData,
        &sb0,
        At::Before(sep7),
    );
    let c = b.claims();
    assert_eq!(c.secure_boot, None, "{c:?}");
    assert!(!c.secure_boot_variables.contains_key("SecureBoot"));
}

#[test]
fn issue_12_an_application_after_exit_boot_services_is_not_a_boot_claim() {
    // Root extends PCR 4 with the Authenticode digest of a kernel the policy allows.
    let mut b = Boot::real();
    let real = b.claims();
    b.extend(
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        Digest::Image(b"an allowed kernel"),
        &[0; 16],
        At::End,
    );
    let c = b.claims();
    assert_eq!(c.kernel, None, "{c:?}");
    assert_eq!(c.boot_applications, real.boot_applications);
    assert_eq!(c.boot_loader, real.boot_loader);
    assert!(!c.boot_applications.contains(&sha256(b"an allowed kernel")));
}

/// The limit of what a log can show: replay binds the order of events within a PCR, not
/// across PCRs, so an application extended into PCR 4 after boot can be listed before the
/// ExitBootServices action. The log's claims then cannot tell it from the firmware's; the PCR 4
/// value and the whole application list can, which is what a `pcr` reference value (or a
/// policy on `boot_applications`) pins.
#[test]
fn issue_12_an_application_listed_out_of_order_changes_pcr_4_and_the_list() {
    let real = Boot::real();
    let mut b = Boot::real();
    let ebs = b.exit_boot_services();
    b.extend(
        4,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        Digest::Image(b"an allowed kernel"),
        &[0; 16],
        At::Before(ebs),
    );
    let c = b.claims();
    assert_eq!(c.kernel, Some(sha256(b"an allowed kernel")));
    assert_ne!(c.boot_applications, real.claims().boot_applications);
    for (bank, values) in &b.quoted.0 {
        assert_ne!(values[&4], real.quoted.0[bank][&4], "{bank}");
    }
}

#[test]
fn issue_12_applications_only_from_pcr_4() {
    // (PCR 5 before its ExitBootServices event stands for firmware that measured an
    // application there; the others for root extending the PCR after boot.)
    for pcr in [0, 5, 8, 9, 14, 23] {
        let mut b = Boot::real();
        let ebs = b.exit_boot_services();
        b.extend(
            pcr,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            Digest::Image(b"an allowed kernel"),
            &[0; 16],
            At::Before(ebs),
        );
        let c = b.claims();
        assert_eq!(c.boot_applications.len(), 1, "PCR {pcr}: {c:?}");
        assert_eq!(c.kernel, None, "PCR {pcr}");
    }
}

#[test]
fn issue_12_no_boot_applications_without_a_verified_exit_boot_services() {
    // The quote leaves PCR 5 out: its ExitBootServices event is not verified, so nothing says
    // where the firmware's part of PCR 4 ends.
    let mut b = Boot::real();
    for values in b.quoted.0.values_mut() {
        values.remove(&5);
    }
    let c = b.claims();
    assert!(c.boot_applications.is_empty(), "{c:?}");
    assert_eq!(c.boot_loader, None);
    // ExitBootServices that was not measured (altered data under the old digest) is no
    // boundary either.
    let mut b = Boot::real();
    let ebs = b.exit_boot_services();
    b.set_data(ebs, b"Exit Boot Services Invocation.", false);
    let c = b.claims();
    assert!(c.boot_applications.is_empty(), "{c:?}");
}

#[test]
fn issue_12_kernel_cmdline_only_from_grub_in_pcr_8_before_exit_boot_services() {
    let cmdline = b"kernel_cmdline: console=ttyS0 init=/bin/sh\0";
    // Root extends PCR 23 (or PCR 8, after boot) with a command line.
    for pcr in [8, 9, 23] {
        let mut b = Boot::real();
        b.extend(pcr, EV_IPL, Digest::OfData, cmdline, At::End);
        let c = b.claims();
        assert_eq!(c.kernel_cmdline, None, "PCR {pcr}: {c:?}");
    }
    // GRUB measured one into PCR 8 during boot: a claim.
    let mut b = Boot::real();
    let ebs = b.exit_boot_services();
    let grub = b"kernel_cmdline: console=ttyS0 root=/dev/vda1\0";
    b.extend(8, EV_IPL, Digest::OfData, grub, At::Before(ebs));
    assert_eq!(
        b.claims().kernel_cmdline.as_deref(),
        Some("console=ttyS0 root=/dev/vda1")
    );
    // A second one added after boot does not replace it, wherever the log puts it.
    let mut after = Boot {
        log: b.log.clone(),
        quoted: b.quoted.clone(),
    };
    after.extend(8, EV_IPL, Digest::OfData, cmdline, At::End);
    assert_eq!(
        after.claims().kernel_cmdline.as_deref(),
        Some("console=ttyS0 root=/dev/vda1")
    );
    let ebs = b.exit_boot_services();
    b.extend(8, EV_IPL, Digest::OfData, cmdline, At::Before(ebs));
    assert_eq!(b.claims().kernel_cmdline, None, "two command lines");
}

#[test]
fn issue_12_crtm_version_only_from_a_measured_pcr_0_event_before_its_separator() {
    let forged = utf16("9.9-forged\0");
    // In PCR 23, or in PCR 0 after its separator.
    for pcr in [0, 23] {
        let mut b = Boot::real();
        b.extend(pcr, EV_S_CRTM_VERSION, Digest::OfData, &forged, At::End);
        let c = b.claims();
        assert_eq!(c.crtm_version, None, "PCR {pcr}: {c:?}");
    }
    // Never from EV_NO_ACTION, which extends nothing.
    let mut b = Boot::real();
    b.extend(0, EV_NO_ACTION, Digest::OfData, &forged, At::Before(1));
    assert_eq!(b.claims().crtm_version, None);
    // The real event's data replaced under its old digest.
    let mut b = Boot::real();
    let crtm = b.find(|e| e.event_type == EV_S_CRTM_VERSION);
    b.set_data(crtm, &forged, false);
    let c = b.claims();
    assert_eq!(c.crtm_version, None, "{c:?}");
    // Firmware that measured a version string: a claim.
    let mut b = Boot::real();
    b.set_data(crtm, &utf16("1.0\0"), true);
    assert_eq!(b.claims().crtm_version.as_deref(), Some("1.0"));
}

#[test]
fn issue_12_actions_only_from_firmware_pcrs() {
    let mut b = Boot::real();
    b.extend(
        23,
        EV_EFI_ACTION,
        Digest::OfData,
        b"Exit Boot Services Invocation",
        At::Before(0),
    );
    let c = b.claims();
    assert_eq!(c.actions, Boot::real().claims().actions, "{c:?}");
}
