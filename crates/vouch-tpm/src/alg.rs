use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::TpmError;

/// Hash algorithms (`TPM_ALG_SHA*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// `TPM_ALG_SHA1` (0x0004) — legacy; refused unless a policy allows it.
    Sha1,
    /// `TPM_ALG_SHA256` (0x000B)
    Sha256,
    /// `TPM_ALG_SHA384` (0x000C)
    Sha384,
    /// `TPM_ALG_SHA512` (0x000D)
    Sha512,
}

impl HashAlg {
    /// From the TPM algorithm id.
    pub fn from_id(id: u16) -> Result<Self, TpmError> {
        match id {
            0x0004 => Ok(Self::Sha1),
            0x000B => Ok(Self::Sha256),
            0x000C => Ok(Self::Sha384),
            0x000D => Ok(Self::Sha512),
            alg => Err(TpmError::Algorithm { what: "hash", alg }),
        }
    }

    /// The TPM algorithm id.
    pub fn id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000B,
            Self::Sha384 => 0x000C,
            Self::Sha512 => 0x000D,
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Name as tpm2-tools spells it (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Parse a name (`sha256`).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.name() == s.to_ascii_lowercase())
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// Hash the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = digest::Context::new(self.algorithm());
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ECC curves (`TPM_ECC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EccCurve {
    /// `TPM_ECC_NIST_P256` (0x0003)
    P256,
    /// `TPM_ECC_NIST_P384` (0x0004)
    P384,
}

impl EccCurve {
    /// From the TPM curve id.
    pub fn from_id(id: u16) -> Result<Self, TpmError> {
        match id {
            0x0003 => Ok(Self::P256),
            0x0004 => Ok(Self::P384),
            alg => Err(TpmError::Algorithm {
                what: "ECC curve",
                alg,
            }),
        }
    }

    /// Coordinate size in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

/// Algorithm ids used in parsing.
pub(crate) mod id {
    pub const RSA: u16 = 0x0001;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const NULL: u16 = 0x0010;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAPSS: u16 = 0x0016;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDAA: u16 = 0x001A;
    pub const ECC: u16 = 0x0023;
    pub const SYMCIPHER: u16 = 0x0025;
}
