use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

use crate::{HashAlg, Reader, ST_ATTEST_QUOTE, TPM_GENERATED, TpmError};

/// `TPMS_CLOCK_INFO`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// TPM resets (power cycles) since clear.
    pub reset_count: u32,
    /// Restarts (resume from hibernate) since the last reset.
    pub restart_count: u32,
    /// Whether `clock` can be trusted not to have gone backwards.
    pub safe: bool,
}

/// A PCR selection: per bank, the selected PCR indices (`TPML_PCR_SELECTION`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSelection(pub Vec<(HashAlg, BTreeSet<u8>)>);

impl PcrSelection {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, TpmError> {
        let count = r.u32("TPML_PCR_SELECTION.count")?;
        if count > 16 {
            return Err(TpmError::TooLarge {
                what: "TPML_PCR_SELECTION.count",
                size: count as usize,
                limit: 16,
            });
        }
        let mut banks = Vec::new();
        for _ in 0..count {
            let hash = HashAlg::from_id(r.u16("TPMS_PCR_SELECTION.hash")?)?;
            let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")? as usize;
            if size > 4 {
                return Err(TpmError::TooLarge {
                    what: "sizeofSelect",
                    size,
                    limit: 4,
                });
            }
            let bitmap = r.bytes(size, "TPMS_PCR_SELECTION.pcrSelect")?;
            let mut set = BTreeSet::new();
            for (byte, bits) in bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if bits & (1 << bit) != 0 {
                        set.insert((byte * 8 + bit) as u8);
                    }
                }
            }
            if banks.iter().any(|(h, _)| *h == hash) {
                return Err(TpmError::Invalid(format!(
                    "bank {hash} selected twice in one quote"
                )));
            }
            banks.push((hash, set));
        }
        Ok(Self(banks))
    }
}

impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(h, s)| {
                let idx: Vec<String> = s.iter().map(u8::to_string).collect();
                format!("{h}:{}", idx.join(","))
            })
            .collect();
        f.write_str(&parts.join("+"))
    }
}

/// A parsed `TPMS_ATTEST` of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmsAttest {
    /// `magic`
    pub magic: u32,
    /// `type`
    pub attest_type: u16,
    /// `qualifiedSigner` (a TPM2B_NAME).
    pub qualified_signer: Vec<u8>,
    /// `extraData`
    pub extra_data: Vec<u8>,
    /// `clockInfo`
    pub clock: ClockInfo,
    /// `firmwareVersion`
    pub firmware_version: u64,
    /// `attested.quote.pcrSelect`
    pub pcr_select: PcrSelection,
    /// `attested.quote.pcrDigest`
    pub pcr_digest: Vec<u8>,
}

impl TpmsAttest {
    /// Parse a marshalled `TPMS_ATTEST` (as `tpm2_quote -m` writes it). Refuses anything but a
    /// quote, and a magic other than `TPM_GENERATED_VALUE`, before reading further.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32("TPMS_ATTEST.magic")?;
        if magic != TPM_GENERATED {
            return Err(TpmError::Magic(magic));
        }
        let attest_type = r.u16("TPMS_ATTEST.type")?;
        if attest_type != ST_ATTEST_QUOTE {
            return Err(TpmError::NotAQuote(attest_type));
        }
        let qualified_signer = r.tpm2b("TPMS_ATTEST.qualifiedSigner", 2 + 64)?.to_vec();
        let extra_data = r.tpm2b("TPMS_ATTEST.extraData", 64)?.to_vec();
        let clock = ClockInfo {
            clock: r.u64("clockInfo.clock")?,
            reset_count: r.u32("clockInfo.resetCount")?,
            restart_count: r.u32("clockInfo.restartCount")?,
            safe: match r.u8("clockInfo.safe")? {
                0 => false,
                1 => true,
                v => return Err(TpmError::Invalid(format!("clockInfo.safe = {v}"))),
            },
        };
        let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
        let pcr_select = PcrSelection::parse(&mut r)?;
        let pcr_digest = r.tpm2b("TPMS_QUOTE_INFO.pcrDigest", 64)?.to_vec();
        r.finish("TPMS_ATTEST")?;
        Ok(Self {
            magic,
            attest_type,
            qualified_signer,
            extra_data,
            clock,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }
}
