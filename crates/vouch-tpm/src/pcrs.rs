use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{HashAlg, PcrSelection, TpmError};

/// One bank of PCR values: index → digest.
pub type PcrBank = BTreeMap<u8, Vec<u8>>;

/// PCR values as presented with a quote, per bank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrValues(pub BTreeMap<HashAlg, PcrBank>);

impl PcrValues {
    /// The selection these values cover.
    pub fn selection(&self) -> PcrSelection {
        PcrSelection(
            self.0
                .iter()
                .map(|(h, b)| (*h, b.keys().copied().collect()))
                .collect(),
        )
    }

    /// The values as hex, per bank name (`sha256` → index → hex), for claims.
    pub fn to_hex(&self) -> BTreeMap<String, BTreeMap<u8, String>> {
        self.0
            .iter()
            .map(|(h, b)| {
                (
                    h.name().to_string(),
                    b.iter().map(|(i, v)| (*i, hex::encode(v))).collect(),
                )
            })
            .collect()
    }

    /// Check sizes and indices.
    pub fn validate(&self) -> Result<(), TpmError> {
        for (h, bank) in &self.0 {
            for (i, v) in bank {
                if *i >= 24 {
                    return Err(TpmError::Invalid(format!("PCR index {i} (0-23)")));
                }
                if v.len() != h.size() {
                    return Err(TpmError::Invalid(format!(
                        "{h} PCR {i} has {} bytes, expected {}",
                        v.len(),
                        h.size()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn le_u32(b: &[u8], at: usize) -> Result<u32, TpmError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| TpmError::Tpm2Tools("pcrs file truncated".into()))
}

/// Parse the PCR values file that `tpm2_quote -o` (and `tpm2_pcrread -o`) write: the C
/// structures `TPML_PCR_SELECTION` (16 entries of 8 bytes), a `u32` count of `TPML_DIGEST`
/// lists, and that many `TPML_DIGEST` (a `u32` count and 8 entries of `TPM2B_DIGEST`, each a
/// `u16` size and a 64-byte buffer), all in host (little-endian) order. Digests are assigned
/// to the selected PCRs in bank order, index order.
pub fn parse_tpm2_tools_pcrs(bytes: &[u8]) -> Result<PcrValues, TpmError> {
    const SEL_ENTRY: usize = 8;
    const SEL_LEN: usize = 4 + 16 * SEL_ENTRY;
    const DIGEST_ENTRY: usize = 2 + 64;
    const LIST_LEN: usize = 4 + 8 * DIGEST_ENTRY;
    let err = |m: &str| TpmError::Tpm2Tools(m.to_string());
    let count = le_u32(bytes, 0)? as usize;
    if count > 16 {
        return Err(err("more than 16 banks selected"));
    }
    let mut selection = Vec::new();
    for i in 0..count {
        let at = 4 + i * SEL_ENTRY;
        let e = bytes
            .get(at..at + SEL_ENTRY)
            .ok_or_else(|| err("selection truncated"))?;
        let hash = HashAlg::from_id(u16::from_le_bytes([e[0], e[1]]))?;
        let size = e[2] as usize;
        if size > 4 {
            return Err(err("sizeofSelect > 4"));
        }
        let mut idx = Vec::new();
        for (byte, bits) in e[3..3 + size].iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    idx.push((byte * 8 + bit) as u8);
                }
            }
        }
        selection.push((hash, idx));
    }
    let lists = le_u32(bytes, SEL_LEN)? as usize;
    if bytes.len() != SEL_LEN + 4 + lists * LIST_LEN {
        return Err(err(&format!(
            "{} bytes, expected {} for {lists} digest list(s)",
            bytes.len(),
            SEL_LEN + 4 + lists * LIST_LEN
        )));
    }
    let mut digests = Vec::new();
    for l in 0..lists {
        let base = SEL_LEN + 4 + l * LIST_LEN;
        let n = le_u32(bytes, base)? as usize;
        if n > 8 {
            return Err(err("TPML_DIGEST count > 8"));
        }
        for d in 0..n {
            let at = base + 4 + d * DIGEST_ENTRY;
            let size = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
            if size > 64 {
                return Err(err("TPM2B_DIGEST size > 64"));
            }
            digests.push(bytes[at + 2..at + 2 + size].to_vec());
        }
    }
    let mut it = digests.into_iter();
    let mut out = PcrValues::default();
    for (hash, idx) in selection {
        let bank = out.0.entry(hash).or_default();
        for i in idx {
            let d = it
                .next()
                .ok_or_else(|| err("fewer digests than selected PCRs"))?;
            bank.insert(i, d);
        }
    }
    if it.next().is_some() {
        return Err(err("more digests than selected PCRs"));
    }
    out.validate()?;
    Ok(out)
}
