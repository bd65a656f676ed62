use crate::alg::id;
use crate::{HashAlg, Reader, TpmError};

/// A parsed `TPMT_SIGNATURE` (RSASSA, RSAPSS or ECDSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmtSignature {
    /// `sigAlg`
    pub scheme: u16,
    /// The hash the signature was made with.
    pub hash: HashAlg,
    /// RSA: the signature; ECDSA: `r || s`, each padded to the curve size by the verifier.
    pub sig: Vec<u8>,
    /// For ECDSA: (r, s) as sent.
    pub ecdsa: Option<(Vec<u8>, Vec<u8>)>,
}

impl TpmtSignature {
    /// Parse a marshalled `TPMT_SIGNATURE` (as `tpm2_quote -s` writes it).
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let scheme = r.u16("TPMT_SIGNATURE.sigAlg")?;
        let out = match scheme {
            id::RSASSA | id::RSAPSS => {
                let hash = HashAlg::from_id(r.u16("signature.hash")?)?;
                let sig = r.tpm2b("signature.sig", 512)?.to_vec();
                Self {
                    scheme,
                    hash,
                    sig,
                    ecdsa: None,
                }
            }
            id::ECDSA => {
                let hash = HashAlg::from_id(r.u16("signature.hash")?)?;
                let sr = r.tpm2b("signature.r", 66)?.to_vec();
                let ss = r.tpm2b("signature.s", 66)?.to_vec();
                Self {
                    scheme,
                    hash,
                    sig: Vec::new(),
                    ecdsa: Some((sr, ss)),
                }
            }
            alg => {
                return Err(TpmError::Algorithm {
                    what: "signature",
                    alg,
                });
            }
        };
        r.finish("TPMT_SIGNATURE")?;
        Ok(out)
    }

    /// The scheme's name.
    pub fn scheme_name(scheme: u16) -> String {
        match scheme {
            id::RSASSA => "rsassa".into(),
            id::RSAPSS => "rsapss".into(),
            id::ECDSA => "ecdsa".into(),
            other => format!("0x{other:04x}"),
        }
    }

    /// The signature bytes in the fixed form the verifier expects for a coordinate size.
    pub(crate) fn fixed(&self, coord: usize) -> Result<Vec<u8>, TpmError> {
        match &self.ecdsa {
            None => Ok(self.sig.clone()),
            Some((r, s)) => {
                let mut out = Vec::with_capacity(coord * 2);
                for part in [r, s] {
                    let p: &[u8] = {
                        let start = part.iter().position(|b| *b != 0).unwrap_or(part.len());
                        &part[start..]
                    };
                    if p.len() > coord {
                        return Err(TpmError::Signature);
                    }
                    out.extend(std::iter::repeat_n(0u8, coord - p.len()));
                    out.extend_from_slice(p);
                }
                Ok(out)
            }
        }
    }
}
