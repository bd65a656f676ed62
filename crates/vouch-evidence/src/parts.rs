//! Measurement parts sent by digest: an agent whose verifier holds its unchanged package list,
//! process table, listening sockets or file digests sends each by the SHA-256 of its JSON
//! (`SoftwareMeasurements::held`), and the verifier puts back the part it holds under that
//! digest before anything reads the measurements. The signature (and a quote or TEE report)
//! covers the digest, so the claims are exactly those of the measurements sent in full; the
//! verifier only ever holds parts it hashed itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use vouch_core::{
    FileMeasurement, ListeningSocket, MEASUREMENT_PARTS, ProcessInfo, SoftwareMeasurements,
};

use crate::EvidenceError;

/// One part of the measurements as a verifier holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldPart {
    /// `files`.
    Files(Arc<Vec<FileMeasurement>>),
    /// `processes`.
    Processes(Arc<Vec<ProcessInfo>>),
    /// `listening`.
    Listening(Arc<Vec<ListeningSocket>>),
    /// `packages`.
    Packages(Arc<BTreeMap<String, String>>),
}

impl HeldPart {
    /// The part's name, one of [`MEASUREMENT_PARTS`].
    pub fn name(&self) -> &'static str {
        match self {
            Self::Files(_) => "files",
            Self::Processes(_) => "processes",
            Self::Listening(_) => "listening",
            Self::Packages(_) => "packages",
        }
    }

    /// Roughly how many bytes of memory the part takes.
    pub fn approx_bytes(&self) -> usize {
        const ENTRY: usize = 64;
        match self {
            Self::Files(v) => v
                .iter()
                .map(|f| ENTRY + f.path.len() + 64 + f.signature.as_ref().map_or(0, String::len))
                .sum(),
            Self::Processes(v) => v
                .iter()
                .map(|p| {
                    ENTRY
                        + p.name.len()
                        + p.exe.as_ref().map_or(0, String::len)
                        + p.exe_sha256.as_ref().map_or(0, String::len)
                })
                .sum(),
            Self::Listening(v) => v.len() * (ENTRY + 32),
            Self::Packages(m) => m.iter().map(|(k, v)| ENTRY + k.len() + v.len()).sum(),
        }
    }
}

/// Where a verifier keeps the parts it has received, by name and digest.
pub trait PartSource: Send + Sync + std::fmt::Debug {
    /// The part `name` whose JSON has SHA-256 `digest` (lowercase hex), if held.
    fn part(&self, name: &str, digest: &str) -> Option<HeldPart>;
}

/// Put back every part `m` sends by digest, from `source`. Refused as malformed: an unknown
/// part name, a digest that is not 64 lowercase hex digits, a part sent both in full and by
/// digest. Refused as `parts_unknown` (the agent then sends them in full): a part `source`
/// does not hold, or no `source` at all.
pub fn resolve_parts(
    mut m: SoftwareMeasurements,
    source: Option<&dyn PartSource>,
) -> Result<SoftwareMeasurements, EvidenceError> {
    if m.held.is_empty() {
        return Ok(m);
    }
    let mut missing = Vec::new();
    for (name, digest) in &m.held {
        if !MEASUREMENT_PARTS.contains(&name.as_str()) {
            return Err(EvidenceError::Malformed(format!(
                "held names part {:?}; parts sent by digest are {}",
                vouch_core::clip(name, 32),
                MEASUREMENT_PARTS.join(", ")
            )));
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(EvidenceError::Malformed(format!(
                "held part {name}: the digest must be 64 lowercase hex digits"
            )));
        }
        let sent_in_full = match name.as_str() {
            "files" => !m.files.is_empty(),
            "processes" => !m.processes.is_empty(),
            "listening" => !m.listening.is_empty(),
            _ => !m.packages.is_empty(),
        };
        if sent_in_full {
            return Err(EvidenceError::Malformed(format!(
                "part {name} is sent both in full and by digest"
            )));
        }
        match source.and_then(|s| s.part(name, digest)) {
            Some(HeldPart::Files(v)) if name == "files" => m.files = (*v).clone(),
            Some(HeldPart::Processes(v)) if name == "processes" => m.processes = (*v).clone(),
            Some(HeldPart::Listening(v)) if name == "listening" => m.listening = (*v).clone(),
            Some(HeldPart::Packages(v)) if name == "packages" => m.packages = (*v).clone(),
            _ => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(EvidenceError::PartsUnknown(missing.join(", ")));
    }
    Ok(m)
}

/// Every part of `m` with its digest, taken out of `m`: parts that came by digest keep it,
/// the others are hashed here.
pub(crate) fn take_parts(m: &mut SoftwareMeasurements) -> Vec<(String, HeldPart)> {
    let digest_of = |m: &SoftwareMeasurements, name: &str, f: &dyn Fn() -> String| {
        m.held.get(name).cloned().unwrap_or_else(f)
    };
    let files = digest_of(m, "files", &|| vouch_core::part_digest(&m.files));
    let processes = digest_of(m, "processes", &|| vouch_core::part_digest(&m.processes));
    let listening = digest_of(m, "listening", &|| vouch_core::part_digest(&m.listening));
    let packages = digest_of(m, "packages", &|| vouch_core::part_digest(&m.packages));
    vec![
        (
            files,
            HeldPart::Files(Arc::new(std::mem::take(&mut m.files))),
        ),
        (
            processes,
            HeldPart::Processes(Arc::new(std::mem::take(&mut m.processes))),
        ),
        (
            listening,
            HeldPart::Listening(Arc::new(std::mem::take(&mut m.listening))),
        ),
        (
            packages,
            HeldPart::Packages(Arc::new(std::mem::take(&mut m.packages))),
        ),
    ]
}
