use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::alg::id;
use crate::{EccCurve, HashAlg, Reader, TpmError};

/// `TPMA_OBJECT` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `fixedParent`
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `userWithAuth`
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// `adminWithPolicy`
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// `restricted`
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` (`sign_encrypt`)
    pub const SIGN: u32 = 1 << 18;

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// The public key material of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent (big-endian).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// ECC point.
    Ecc {
        /// Curve.
        curve: EccCurve,
        /// X coordinate, padded to the curve size.
        x: Vec<u8>,
        /// Y coordinate, padded to the curve size.
        y: Vec<u8>,
    },
    /// A SubjectPublicKeyInfo (DER) with no TPM public area (a pre-registered AK).
    Spki(Vec<u8>),
}

/// A parsed `TPMT_PUBLIC` (RSA or ECC objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmtPublic {
    /// The marshalled bytes (what the Name hashes).
    pub raw: Vec<u8>,
    /// `nameAlg`
    pub name_alg: HashAlg,
    /// `objectAttributes`
    pub attributes: ObjectAttributes,
    /// `authPolicy`
    pub auth_policy: Vec<u8>,
    /// Signing scheme and its hash, when the key has one (`None` for `TPM_ALG_NULL`).
    pub scheme: Option<(u16, HashAlg)>,
    /// Whether a symmetric algorithm is set (storage keys such as EKs).
    pub symmetric: Option<(u16, u16, u16)>,
    /// The key.
    pub key: PublicKey,
}

fn pad(v: &[u8], n: usize) -> Result<Vec<u8>, TpmError> {
    if v.len() > n {
        return Err(TpmError::Invalid(format!(
            "ECC coordinate of {} bytes for a {n}-byte curve",
            v.len()
        )));
    }
    let mut out = vec![0u8; n - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

impl TpmtPublic {
    /// Parse a `TPM2B_PUBLIC` (size-prefixed, as `tpm2_createak -u` writes it).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let inner = r.tpm2b("TPM2B_PUBLIC", 1024)?;
        r.finish("TPM2B_PUBLIC")?;
        Self::parse(inner)
    }

    /// Parse a bare `TPMT_PUBLIC`.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let ty = r.u16("TPMT_PUBLIC.type")?;
        let name_alg = HashAlg::from_id(r.u16("TPMT_PUBLIC.nameAlg")?)?;
        let attributes = ObjectAttributes(r.u32("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = r.tpm2b("TPMT_PUBLIC.authPolicy", 64)?.to_vec();
        let sym_alg = r.u16("symmetric.algorithm")?;
        let symmetric = if sym_alg == id::NULL {
            None
        } else {
            let bits = r.u16("symmetric.keyBits")?;
            let mode = r.u16("symmetric.mode")?;
            Some((sym_alg, bits, mode))
        };
        let (scheme, key) = match ty {
            id::RSA => {
                let scheme = read_scheme(&mut r)?;
                let bits = r.u16("rsa.keyBits")?;
                let exp = r.u32("rsa.exponent")?;
                let n = r.tpm2b("rsa.unique", 512)?.to_vec();
                if n.len() * 8 != bits as usize {
                    return Err(TpmError::Invalid(format!(
                        "RSA modulus of {} bits in a {bits}-bit key",
                        n.len() * 8
                    )));
                }
                let e = if exp == 0 { 65_537u32 } else { exp };
                let e = e
                    .to_be_bytes()
                    .into_iter()
                    .skip_while(|b| *b == 0)
                    .collect();
                (scheme, PublicKey::Rsa { n, e })
            }
            id::ECC => {
                let scheme = read_scheme(&mut r)?;
                let curve = EccCurve::from_id(r.u16("ecc.curveID")?)?;
                let kdf = r.u16("ecc.kdf")?;
                if kdf != id::NULL {
                    r.u16("ecc.kdf.hashAlg")?;
                }
                let x = pad(r.tpm2b("ecc.unique.x", 128)?, curve.size())?;
                let y = pad(r.tpm2b("ecc.unique.y", 128)?, curve.size())?;
                (scheme, PublicKey::Ecc { curve, x, y })
            }
            id::KEYEDHASH | id::SYMCIPHER => {
                return Err(TpmError::Algorithm {
                    what: "object type (only RSA and ECC keys can attest)",
                    alg: ty,
                });
            }
            alg => {
                return Err(TpmError::Algorithm {
                    what: "object type",
                    alg,
                });
            }
        };
        r.finish("TPMT_PUBLIC")?;
        Ok(Self {
            raw: bytes.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            scheme,
            symmetric,
            key,
        })
    }

    /// The object's Name: `nameAlg || H_nameAlg(TPMT_PUBLIC)`.
    pub fn name(&self) -> Vec<u8> {
        let mut n = self.name_alg.id().to_be_bytes().to_vec();
        n.extend(self.name_alg.digest(&[&self.raw]));
        n
    }

    /// SHA-256 of the key material alone (RSA modulus and exponent, or ECC curve and point):
    /// what identifies the key whatever else the public area says. Two public areas that hold
    /// the same key but differ in attributes, policy or scheme (or write the RSA exponent 65537
    /// as 0) have the same fingerprint; the verifier binds one EK to one node by it.
    pub fn key_fingerprint(&self) -> Vec<u8> {
        let len = |b: &[u8]| (b.len() as u32).to_be_bytes();
        match &self.key {
            PublicKey::Rsa { n, e } => HashAlg::Sha256.digest(&[b"rsa\0", &len(n), n, &len(e), e]),
            PublicKey::Ecc { curve, x, y } => {
                let size = (curve.size() as u32).to_be_bytes();
                HashAlg::Sha256.digest(&[b"ecc\0", &size, x, y])
            }
            PublicKey::Spki(der) => HashAlg::Sha256.digest(&[b"spki\0", der]),
        }
    }

    /// Check the attributes of an attestation key: a restricted signing key that never left
    /// the TPM (fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign) and
    /// cannot decrypt.
    pub fn check_ak_attributes(&self) -> Result<(), TpmError> {
        let a = self.attributes;
        let mut missing = Vec::new();
        for (bit, name) in [
            (ObjectAttributes::FIXED_TPM, "fixedTPM"),
            (ObjectAttributes::FIXED_PARENT, "fixedParent"),
            (
                ObjectAttributes::SENSITIVE_DATA_ORIGIN,
                "sensitiveDataOrigin",
            ),
            (ObjectAttributes::USER_WITH_AUTH, "userWithAuth"),
            (ObjectAttributes::RESTRICTED, "restricted"),
            (ObjectAttributes::SIGN, "sign"),
        ] {
            if !a.has(bit) {
                missing.push(format!("missing {name}"));
            }
        }
        if a.has(ObjectAttributes::DECRYPT) {
            missing.push("has decrypt".into());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TpmError::AkAttributes(missing.join(", ")))
        }
    }
}

fn read_scheme(r: &mut Reader<'_>) -> Result<Option<(u16, HashAlg)>, TpmError> {
    let scheme = r.u16("scheme")?;
    if scheme == id::NULL {
        return Ok(None);
    }
    let hash = HashAlg::from_id(r.u16("scheme.hashAlg")?)?;
    if scheme == id::ECDAA {
        r.u16("scheme.count")?;
    }
    Ok(Some((scheme, hash)))
}

/// The qualified name of an object: `nameAlg || H(QN(parent) || Name(object))`, where the
/// qualified name of a hierarchy is its 4-byte handle.
pub fn qualified_name(name_alg: HashAlg, parent_qn: &[u8], name: &[u8]) -> Vec<u8> {
    let mut q = name_alg.id().to_be_bytes().to_vec();
    q.extend(name_alg.digest(&[parent_qn, name]));
    q
}

impl PublicKey {
    /// Verify `sig` over `msg` with scheme `scheme` and hash `hash`.
    pub(crate) fn verify(
        &self,
        scheme: u16,
        hash: HashAlg,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), TpmError> {
        use signature as s;
        let bad = |_| TpmError::Signature;
        match self {
            PublicKey::Rsa { n, e } => {
                let params: &s::RsaParameters = match (scheme, hash) {
                    (id::RSASSA, HashAlg::Sha1) => &s::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    (id::RSASSA, HashAlg::Sha256) => &s::RSA_PKCS1_2048_8192_SHA256,
                    (id::RSASSA, HashAlg::Sha384) => &s::RSA_PKCS1_2048_8192_SHA384,
                    (id::RSASSA, HashAlg::Sha512) => &s::RSA_PKCS1_2048_8192_SHA512,
                    (id::RSAPSS, HashAlg::Sha256) => &s::RSA_PSS_2048_8192_SHA256,
                    (id::RSAPSS, HashAlg::Sha384) => &s::RSA_PSS_2048_8192_SHA384,
                    (id::RSAPSS, HashAlg::Sha512) => &s::RSA_PSS_2048_8192_SHA512,
                    (alg, _) => {
                        return Err(TpmError::Algorithm {
                            what: "RSA signature scheme",
                            alg,
                        });
                    }
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .map_err(bad)
            }
            PublicKey::Ecc { curve, x, y } => {
                if scheme != id::ECDSA {
                    return Err(TpmError::Algorithm {
                        what: "ECC signature scheme",
                        alg: scheme,
                    });
                }
                let alg: &s::EcdsaVerificationAlgorithm = match (curve, hash) {
                    (EccCurve::P256, HashAlg::Sha256) => &s::ECDSA_P256_SHA256_FIXED,
                    (EccCurve::P384, HashAlg::Sha384) => &s::ECDSA_P384_SHA384_FIXED,
                    (_, h) => {
                        return Err(TpmError::Algorithm {
                            what: "ECDSA hash for this curve",
                            alg: h.id(),
                        });
                    }
                };
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(alg, point)
                    .verify(msg, sig)
                    .map_err(bad)
            }
            PublicKey::Spki(der) => {
                let params: &dyn s::VerificationAlgorithm = match (scheme, hash) {
                    (id::RSASSA, HashAlg::Sha256) => &s::RSA_PKCS1_2048_8192_SHA256,
                    (id::RSASSA, HashAlg::Sha384) => &s::RSA_PKCS1_2048_8192_SHA384,
                    (id::RSAPSS, HashAlg::Sha256) => &s::RSA_PSS_2048_8192_SHA256,
                    (id::ECDSA, HashAlg::Sha256) => &s::ECDSA_P256_SHA256_FIXED,
                    (id::ECDSA, HashAlg::Sha384) => &s::ECDSA_P384_SHA384_FIXED,
                    (alg, _) => {
                        return Err(TpmError::Algorithm {
                            what: "signature scheme for an SPKI key",
                            alg,
                        });
                    }
                };
                UnparsedPublicKey::new(params, der)
                    .verify(msg, sig)
                    .map_err(bad)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA `TPMT_PUBLIC` with these attributes, exponent and modulus (no policy, no
    /// symmetric algorithm, no scheme).
    fn rsa(attributes: u32, exponent: u32, n: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(id::RSA.to_be_bytes());
        b.extend(0x000bu16.to_be_bytes());
        b.extend(attributes.to_be_bytes());
        b.extend(0u16.to_be_bytes());
        b.extend(id::NULL.to_be_bytes());
        b.extend(id::NULL.to_be_bytes());
        b.extend(((n.len() * 8) as u16).to_be_bytes());
        b.extend(exponent.to_be_bytes());
        b.extend((n.len() as u16).to_be_bytes());
        b.extend(n);
        b
    }

    #[test]
    fn the_key_fingerprint_is_the_key_whatever_the_rest_of_the_public_area() {
        let n = [0xa5; 256];
        let ek = TpmtPublic::parse(&rsa(0x0003_00b2, 0, &n)).unwrap();
        // Other attributes, the exponent written out: another name, the same key.
        let relabelled = TpmtPublic::parse(&rsa(0x0005_0072, 65_537, &n)).unwrap();
        assert_ne!(ek.name(), relabelled.name());
        assert_eq!(ek.key_fingerprint(), relabelled.key_fingerprint());
        assert_eq!(ek.key_fingerprint().len(), 32);
        // Another modulus or exponent is another key.
        let mut m = n;
        m[255] ^= 1;
        let other = TpmtPublic::parse(&rsa(0x0003_00b2, 0, &m)).unwrap();
        assert_ne!(ek.key_fingerprint(), other.key_fingerprint());
        let other = TpmtPublic::parse(&rsa(0x0003_00b2, 3, &n)).unwrap();
        assert_ne!(ek.key_fingerprint(), other.key_fingerprint());
    }
}
