use serde::{Deserialize, Serialize};

use crate::{
    ClockInfo, HashAlg, PcrValues, PublicKey, TpmError, TpmsAttest, TpmtPublic, TpmtSignature,
};

/// What a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotePolicy {
    /// Hash algorithms allowed for the signature and for PCR banks. SHA-1 is not in the
    /// default: a quote signed with, or over a bank of, SHA-1 is a downgrade.
    pub allowed_hashes: Vec<HashAlg>,
    /// Refuse quotes whose `clockInfo.safe` is clear.
    pub require_safe_clock: bool,
}

impl Default for QuotePolicy {
    fn default() -> Self {
        Self {
            allowed_hashes: vec![HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512],
            require_safe_clock: true,
        }
    }
}

/// The attestation key a quote must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ak {
    /// The public key.
    pub key: PublicKey,
    /// The scheme the key is bound to, if any.
    pub scheme: Option<(u16, HashAlg)>,
    /// The AK's qualified name, when its public area and parent are known.
    pub qualified_name: Option<Vec<u8>>,
}

impl Ak {
    /// An AK from its public area, created under a parent with qualified name `parent_qn`
    /// (for an AK under the EK: `qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(),
    /// &ek.name())`). The AK's attributes are checked here.
    pub fn from_public(public: &TpmtPublic, parent_qn: &[u8]) -> Result<Self, TpmError> {
        public.check_ak_attributes()?;
        Ok(Self {
            key: public.key.clone(),
            scheme: public.scheme,
            qualified_name: Some(crate::qualified_name(
                public.name_alg,
                parent_qn,
                &public.name(),
            )),
        })
    }

    /// A pre-registered AK known only by its SubjectPublicKeyInfo: no public area, so neither
    /// its attributes nor `qualifiedSigner` can be checked (the claims say so).
    pub fn from_spki(der: &[u8]) -> Self {
        Self {
            key: PublicKey::Spki(der.to_vec()),
            scheme: None,
            qualified_name: None,
        }
    }
}

/// Claims derived from a verified quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteClaims {
    /// `clockInfo`.
    pub clock: ClockInfo,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// Signature scheme and hash.
    pub signature: String,
    /// Whether `qualifiedSigner` was compared with the AK's qualified name.
    pub qualified_signer_checked: bool,
    /// The qualified signer, hex.
    pub qualified_signer: String,
}

/// Verify a quote (`attest` = marshalled `TPMS_ATTEST`, `signature` = marshalled
/// `TPMT_SIGNATURE`) made by `ak` over `pcrs`, bound to `expected_extra_data`.
pub fn verify_quote(
    ak: &Ak,
    attest: &[u8],
    signature: &[u8],
    pcrs: &PcrValues,
    expected_extra_data: &[u8],
    policy: &QuotePolicy,
) -> Result<QuoteClaims, TpmError> {
    let sig = TpmtSignature::parse(signature)?;
    if !policy.allowed_hashes.contains(&sig.hash) {
        return Err(TpmError::HashNotAllowed(sig.hash.to_string()));
    }
    if let Some((scheme, hash)) = ak.scheme
        && (scheme != sig.scheme || hash != sig.hash)
    {
        return Err(TpmError::Scheme {
            expected: format!("{}-{hash}", TpmtSignature::scheme_name(scheme)),
            found: format!("{}-{}", TpmtSignature::scheme_name(sig.scheme), sig.hash),
        });
    }
    let coord = match &ak.key {
        PublicKey::Ecc { curve, .. } => curve.size(),
        PublicKey::Spki(der) if sig.ecdsa.is_some() => {
            // P-256 SPKI is 91 bytes, P-384 120.
            if der.len() > 100 { 48 } else { 32 }
        }
        _ => 0,
    };
    ak.key
        .verify(sig.scheme, sig.hash, attest, &sig.fixed(coord)?)?;

    // Signed: now every field is the TPM's word, and each must match.
    let a = TpmsAttest::parse(attest)?;
    if let Some(qn) = &ak.qualified_name
        && *qn != a.qualified_signer
    {
        return Err(TpmError::QualifiedSigner {
            expected: hex::encode(qn),
            found: hex::encode(&a.qualified_signer),
        });
    }
    if a.extra_data != expected_extra_data {
        return Err(TpmError::ExtraData);
    }
    if policy.require_safe_clock && !a.clock.safe {
        return Err(TpmError::ClockUnsafe);
    }
    // The signed selection must be exactly the presented values: same banks, same indices
    // (empty banks carry no PCRs and are ignored on both sides). Compared without allocating.
    let signed = &a.pcr_select;
    let presented_banks = pcrs.0.iter().filter(|(_, b)| !b.is_empty()).count();
    let signed_banks = signed.0.iter().filter(|(_, i)| !i.is_empty()).count();
    let same = presented_banks == signed_banks
        && signed
            .0
            .iter()
            .filter(|(_, i)| !i.is_empty())
            .all(|(h, idx)| {
                pcrs.0.get(h).is_some_and(|b| {
                    b.len() == idx.len() && b.keys().zip(idx.iter()).all(|(x, y)| x == y)
                })
            });
    if !same {
        return Err(TpmError::PcrSelection {
            signed: signed.to_string(),
            claimed: pcrs.selection().to_string(),
        });
    }
    for (bank, _) in &signed.0 {
        if !policy.allowed_hashes.contains(bank) {
            return Err(TpmError::HashNotAllowed(format!("{bank} PCR bank")));
        }
    }
    // pcrDigest = H_sig(concatenation of the selected PCRs, banks in the signed order).
    let mut parts: Vec<&[u8]> = Vec::with_capacity(24);
    for (bank, idx) in &signed.0 {
        let values = pcrs.0.get(bank);
        for i in idx {
            let v = values.and_then(|b| b.get(i)).ok_or(TpmError::PcrDigest)?;
            if v.len() != bank.size() {
                return Err(TpmError::Invalid(format!(
                    "{bank} PCR {i} has {} bytes, expected {}",
                    v.len(),
                    bank.size()
                )));
            }
            parts.push(v);
        }
    }
    if sig.hash.digest(&parts) != a.pcr_digest {
        return Err(TpmError::PcrDigest);
    }
    Ok(QuoteClaims {
        clock: a.clock,
        firmware_version: a.firmware_version,
        signature: format!("{}-{}", TpmtSignature::scheme_name(sig.scheme), sig.hash),
        qualified_signer_checked: ak.qualified_name.is_some(),
        qualified_signer: hex::encode(&a.qualified_signer),
    })
}

/// Only the signature check of [`verify_quote`] (parse the signature, verify it over the
/// attest bytes): the baseline that `vouch tpm bench` compares full verification with.
pub fn raw_signature_check(ak: &Ak, attest: &[u8], signature: &[u8]) -> Result<(), TpmError> {
    let sig = TpmtSignature::parse(signature)?;
    let coord = match &ak.key {
        PublicKey::Ecc { curve, .. } => curve.size(),
        _ => 0,
    };
    ak.key
        .verify(sig.scheme, sig.hash, attest, &sig.fixed(coord)?)
}

/// Check that a quote's clock did not go backwards since the last accepted quote of the same
/// AK: `resetCount` never decreases; within one reset `restartCount` never decreases; within
/// one reset and restart, `clock` strictly advances.
pub fn check_clock_progress(prev: Option<&ClockInfo>, now: &ClockInfo) -> Result<(), TpmError> {
    let Some(p) = prev else {
        return Ok(());
    };
    if now.reset_count < p.reset_count {
        return Err(TpmError::ClockRollback(format!(
            "resetCount {} < {}",
            now.reset_count, p.reset_count
        )));
    }
    if now.reset_count == p.reset_count {
        if now.restart_count < p.restart_count {
            return Err(TpmError::ClockRollback(format!(
                "restartCount {} < {}",
                now.restart_count, p.restart_count
            )));
        }
        if now.restart_count == p.restart_count && now.clock <= p.clock {
            return Err(TpmError::ClockRollback(format!(
                "clock {} <= {} (a replayed or rolled-back quote)",
                now.clock, p.clock
            )));
        }
    }
    Ok(())
}
