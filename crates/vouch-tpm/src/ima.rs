//! The Linux IMA measurement list (`ascii_runtime_measurements`): parse `ima-ng` and `ima-sig`
//! entries, check each entry's template hash against its fields, and replay the list into PCR
//! 10, incrementally from a saved state.

use serde::{Deserialize, Serialize};

use crate::{HashAlg, TpmError};

/// Longest line accepted.
const MAX_LINE: usize = 8 * 1024;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaEntry {
    /// PCR the entry was extended into (10).
    pub pcr: u8,
    /// The SHA-1 template hash as logged (all zero for a violation).
    pub template_hash: Vec<u8>,
    /// `ima-ng` or `ima-sig`.
    pub template: String,
    /// File digest algorithm (`sha256`).
    pub file_hash_alg: String,
    /// File digest.
    pub file_hash: Vec<u8>,
    /// File path.
    pub path: String,
    /// `ima-sig` signature (`security.ima` xattr), when present.
    pub signature: Option<Vec<u8>>,
}

fn bad(line: usize, m: impl std::fmt::Display) -> TpmError {
    TpmError::Invalid(format!("IMA log line {line}: {m}"))
}

impl ImaEntry {
    /// Whether this entry records a violation (a file measured while open for write, …).
    pub fn is_violation(&self) -> bool {
        self.template_hash.iter().all(|b| *b == 0)
    }

    /// The template data the kernel hashed: each field as a little-endian `u32` length and
    /// its bytes (`d-ng` = "alg:" NUL digest, `n-ng` = path NUL, `sig`).
    pub fn template_data(&self) -> Vec<u8> {
        let mut d = self.file_hash_alg.as_bytes().to_vec();
        d.extend_from_slice(b":\0");
        d.extend_from_slice(&self.file_hash);
        let mut n = self.path.as_bytes().to_vec();
        n.push(0);
        let mut out = Vec::with_capacity(d.len() + n.len() + 16);
        for field in [&d, &n] {
            out.extend_from_slice(&(field.len() as u32).to_le_bytes());
            out.extend_from_slice(field);
        }
        if self.template == "ima-sig" {
            let s = self.signature.as_deref().unwrap_or_default();
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s);
        }
        out
    }

    /// The value this entry extends into a PCR bank.
    pub fn extend_value(&self, bank: HashAlg) -> Vec<u8> {
        if self.is_violation() {
            vec![0xff; bank.size()]
        } else {
            bank.digest(&[&self.template_data()])
        }
    }
}

/// Parse an `ascii_runtime_measurements` text. Every entry's template hash is checked against
/// its fields, so an altered path or digest is refused here.
pub fn parse_ima_log(text: &str) -> Result<Vec<ImaEntry>, TpmError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.len() > MAX_LINE {
            return Err(bad(n, "line too long"));
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut it = line.splitn(5, ' ');
        let (Some(pcr), Some(th), Some(template), Some(digest), Some(rest)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad(
                n,
                "expected: PCR template-hash template alg:digest path",
            ));
        };
        let pcr: u8 = pcr.parse().map_err(|_| bad(n, "PCR is not a number"))?;
        if pcr > 23 {
            return Err(bad(n, "PCR out of range"));
        }
        let template_hash = hex::decode(th).map_err(|_| bad(n, "template hash is not hex"))?;
        if template_hash.len() != 20 {
            return Err(bad(n, "template hash is not SHA-1"));
        }
        if template != "ima-ng" && template != "ima-sig" {
            return Err(bad(
                n,
                format!("unsupported template {template:?} (ima-ng, ima-sig)"),
            ));
        }
        let (alg, hexd) = digest
            .split_once(':')
            .ok_or_else(|| bad(n, "file digest is not alg:hex"))?;
        let file_hash = hex::decode(hexd).map_err(|_| bad(n, "file digest is not hex"))?;
        if let Some(h) = HashAlg::parse(alg)
            && h.size() != file_hash.len()
        {
            return Err(bad(n, format!("{alg} digest of {} bytes", file_hash.len())));
        }
        let (path, signature) = if template == "ima-sig" {
            match rest.rsplit_once(' ') {
                Some((p, sig)) if sig.len() >= 4 && sig.bytes().all(|b| b.is_ascii_hexdigit()) => (
                    p.to_string(),
                    Some(hex::decode(sig).map_err(|_| bad(n, "signature"))?),
                ),
                _ => (rest.to_string(), None),
            }
        } else {
            (rest.to_string(), None)
        };
        let e = ImaEntry {
            pcr,
            template_hash,
            template: template.to_string(),
            file_hash_alg: alg.to_string(),
            file_hash,
            path,
            signature,
        };
        if !e.is_violation() && HashAlg::Sha1.digest(&[&e.template_data()]) != e.template_hash {
            return Err(bad(
                n,
                format!(
                    "template hash does not match the entry for {} (altered entry)",
                    e.path
                ),
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// Where a replay stands: entries consumed and the running PCR value per bank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaState {
    /// Entries replayed so far.
    pub position: u64,
    /// Running PCR 10 value per bank name, hex.
    pub pcrs: std::collections::BTreeMap<String, String>,
    /// The TPM `resetCount` this list belongs to (a reboot starts a new list).
    #[serde(default)]
    pub reset_count: Option<u32>,
    /// Appraisal failures seen so far in this boot's list (sticky until the TPM resets).
    #[serde(default)]
    pub failures: Vec<String>,
}

/// Keep at most this many failures in the state.
const MAX_FAILURES: usize = 100;

impl ImaState {
    /// Extend `entries` (the ones after `position`) into `banks`, starting from this state.
    pub fn replay(&self, entries: &[ImaEntry], banks: &[HashAlg]) -> Result<Self, TpmError> {
        let mut next = self.clone();
        for bank in banks {
            let mut pcr = match self.pcrs.get(bank.name()) {
                Some(h) => hex::decode(h).map_err(|_| TpmError::Invalid("IMA state".into()))?,
                None => vec![0u8; bank.size()],
            };
            for e in entries.iter().filter(|e| e.pcr == 10) {
                pcr = bank.digest(&[&pcr, &e.extend_value(*bank)]);
            }
            next.pcrs.insert(bank.name().to_string(), hex::encode(pcr));
        }
        next.position += entries.len() as u64;
        Ok(next)
    }
}

impl ImaState {
    /// Replay `entries` (the ones after `position`) and stop at the prefix whose PCR 10 values
    /// equal `quoted` in every bank: entries appended after the quote are left for the next
    /// round. Returns the new state and how many entries were consumed; an error when no prefix
    /// replays to the quoted values (an altered, reordered or truncated list).
    pub fn replay_to(
        &self,
        entries: &[ImaEntry],
        quoted: &[(HashAlg, Vec<u8>)],
    ) -> Result<(Self, usize), TpmError> {
        if quoted.is_empty() {
            return Err(TpmError::Invalid(
                "an IMA log was sent but PCR 10 was not quoted".into(),
            ));
        }
        let mut running = Vec::with_capacity(quoted.len());
        for (bank, _) in quoted {
            running.push(match self.pcrs.get(bank.name()) {
                Some(h) => hex::decode(h).map_err(|_| TpmError::Invalid("IMA state".into()))?,
                None => vec![0u8; bank.size()],
            });
        }
        let matches = |r: &[Vec<u8>]| r.iter().zip(quoted).all(|(v, (_, q))| v == q);
        let mut matched = matches(&running).then_some(0usize);
        for (i, e) in entries.iter().enumerate() {
            if e.pcr != 10 {
                continue;
            }
            for (v, (bank, _)) in running.iter_mut().zip(quoted) {
                *v = bank.digest(&[v, &e.extend_value(*bank)]);
            }
            if matches(&running) {
                matched = Some(i + 1);
            }
        }
        let Some(n) = matched else {
            return Err(TpmError::Invalid(
                "the IMA log does not replay to the quoted PCR 10 (altered, reordered or missing entries)".into(),
            ));
        };
        let banks: Vec<HashAlg> = quoted.iter().map(|(b, _)| *b).collect();
        let next = self.replay(&entries[..n], &banks)?;
        Ok((next, n))
    }

    /// Record appraisal failures (sticky, bounded; one of each, so a list replayed again from
    /// its first entry does not count the same failure twice).
    pub fn add_failures(&mut self, new: impl IntoIterator<Item = String>) {
        for f in new {
            if self.failures.len() >= MAX_FAILURES {
                break;
            }
            if !self.failures.contains(&f) {
                self.failures.push(f);
            }
        }
    }

    /// A quote that came without the IMA log: its PCR 10 must be where this replay left it, in
    /// every quoted bank, for nothing to have been measured since. Once a replay has begun,
    /// a quote that leaves PCR 10 out is refused as well.
    pub fn check_unmoved(&self, quoted: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
        let skipped = |why: String| {
            Err(TpmError::ImaSkipped(format!(
                "{why} (the verifier has replayed {} entries of this boot's list)",
                self.position
            )))
        };
        if quoted.is_empty() {
            return skipped("PCR 10 is not quoted".into());
        }
        for (bank, value) in quoted {
            let Some(replayed) = self.pcrs.get(bank.name()) else {
                return skipped(format!("{} PCR 10 was never replayed", bank.name()));
            };
            if !replayed.eq_ignore_ascii_case(&hex::encode(value)) {
                return skipped(format!(
                    "{} PCR 10 moved since the replay ({} quoted, {replayed} replayed)",
                    bank.name(),
                    hex::encode(value)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as the kernel prints them (from a public IMA walk-through); their template hashes
    // were computed by the kernel, not here.
    const REAL: &str = "10 8a07230eaa15a29758948e9ecc34319fab650c10 ima-ng sha256:d1992ff6ac5beb7ea77ae32841538b9b8b8e6c55190be257296741c88c0da203 /etc/securetty
10 879614a97374eeab1fb579765b52437d724a8f31 ima-ng sha256:498cd2a39fd254eeff87a627291a39db405635f43f406fd5f698331ca2176034 /etc/shadow
";

    #[test]
    fn real_kernel_entries_parse_and_their_template_hashes_match() {
        let e = parse_ima_log(REAL).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].path, "/etc/shadow");
        assert_eq!(e[0].file_hash_alg, "sha256");
    }

    #[test]
    fn an_altered_entry_is_refused() {
        for (from, to) in [("/etc/shadow", "/etc/shadoW"), ("498cd2a3", "498cd2a4")] {
            let t = REAL.replace(from, to);
            let err = parse_ima_log(&t).unwrap_err().to_string();
            assert!(err.contains("line 2"), "{err}");
        }
        assert!(parse_ima_log("10 zz ima-ng sha256:00 /x\n").is_err());
        assert!(
            parse_ima_log("10 0000000000000000000000000000000000000000 ima sha1:00 /x\n").is_err()
        );
        assert!(parse_ima_log("not a log").is_err());
    }

    #[test]
    fn incremental_replay_equals_full_replay() {
        let e = parse_ima_log(REAL).unwrap();
        let banks = [HashAlg::Sha1, HashAlg::Sha256];
        let full = ImaState::default().replay(&e, &banks).unwrap();
        let half = ImaState::default().replay(&e[..1], &banks).unwrap();
        let rest = half.replay(&e[1..], &banks).unwrap();
        assert_eq!(full, rest);
        assert_eq!(full.position, 2);
        // SHA-1 bank: extend with the logged template hashes.
        let mut p = vec![0u8; 20];
        for x in &e {
            p = HashAlg::Sha1.digest(&[&p, &x.template_hash]);
        }
        assert_eq!(full.pcrs["sha1"], hex::encode(p));
    }

    #[test]
    fn replay_stops_at_the_quoted_prefix() {
        let e = parse_ima_log(REAL).unwrap();
        let one = ImaState::default()
            .replay(&e[..1], &[HashAlg::Sha256])
            .unwrap();
        let quoted = vec![(HashAlg::Sha256, hex::decode(&one.pcrs["sha256"]).unwrap())];
        // The log has an entry appended after the quote: only the first is consumed.
        let (st, n) = ImaState::default().replay_to(&e, &quoted).unwrap();
        assert_eq!((n, st.position), (1, 1));
        // A log that never reaches the quoted value is refused.
        let wrong = vec![(HashAlg::Sha256, vec![7u8; 32])];
        assert!(ImaState::default().replay_to(&e, &wrong).is_err());
        assert!(ImaState::default().replay_to(&e, &[]).is_err());
    }

    #[test]
    fn without_a_log_pcr_10_must_not_have_moved() {
        let e = parse_ima_log(REAL).unwrap();
        let st = ImaState::default()
            .replay(&e[..1], &[HashAlg::Sha256])
            .unwrap();
        let at = hex::decode(&st.pcrs["sha256"]).unwrap();
        st.check_unmoved(&[(HashAlg::Sha256, at)]).unwrap();
        // An entry measured since the replay moved PCR 10.
        let moved = ImaState::default().replay(&e, &[HashAlg::Sha256]).unwrap();
        let now = hex::decode(&moved.pcrs["sha256"]).unwrap();
        let err = st.check_unmoved(&[(HashAlg::Sha256, now)]).unwrap_err();
        assert!(matches!(err, TpmError::ImaSkipped(_)), "{err}");
        assert!(err.to_string().contains("PCR 10 moved"), "{err}");
        // PCR 10 left out of the quote, or quoted in a bank the replay never covered.
        let err = st.check_unmoved(&[]).unwrap_err().to_string();
        assert!(err.contains("PCR 10 is not quoted"), "{err}");
        let err = st
            .check_unmoved(&[(HashAlg::Sha1, vec![0; 20])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("never replayed"), "{err}");
    }

    #[test]
    fn a_failure_is_recorded_once() {
        let mut st = ImaState::default();
        st.add_failures(["a".to_string(), "b".to_string()]);
        st.add_failures(["a".to_string(), "c".to_string()]);
        assert_eq!(st.failures, ["a", "b", "c"]);
    }

    #[test]
    fn violations_extend_ones() {
        let v = "10 0000000000000000000000000000000000000000 ima-ng sha256:0000000000000000000000000000000000000000000000000000000000000000 /var/log/x\n";
        let e = parse_ima_log(v).unwrap();
        assert!(e[0].is_violation());
        assert_eq!(e[0].extend_value(HashAlg::Sha256), vec![0xff; 32]);
    }
}
