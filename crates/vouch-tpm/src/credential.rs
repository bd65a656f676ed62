//! `TPM2_MakeCredential` in pure Rust (TPM 2.0 Part 1 §24): the verifier encrypts a secret to
//! an EK so that only the TPM holding that EK, and only for a key with the given Name (the AK),
//! can recover it with `TPM2_ActivateCredential`. This binds the AK to the EK.

use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};

use crate::{HashAlg, PublicKey, TpmError, TpmtPublic};

const AES: u16 = 0x0006;
const CFB: u16 = 0x0043;
/// Magic and version that start the credential files of `tpm2_makecredential`.
const TPM2_TOOLS_MAGIC: u32 = 0xBADC_C0DE;

/// The two blobs `TPM2_ActivateCredential` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    /// `TPM2B_ID_OBJECT` (size-prefixed): integrity HMAC and encrypted credential.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` (size-prefixed): the seed, encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

impl MadeCredential {
    /// The file format `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads.
    pub fn to_tpm2_tools(&self) -> Vec<u8> {
        let mut out = TPM2_TOOLS_MAGIC.to_be_bytes().to_vec();
        out.extend(1u32.to_be_bytes());
        out.extend(&self.id_object);
        out.extend(&self.encrypted_secret);
        out
    }
}

fn hmac_alg(h: HashAlg) -> hmac::Algorithm {
    match h {
        HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => hmac::HMAC_SHA256,
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        HashAlg::Sha512 => hmac::HMAC_SHA512,
    }
}

/// `KDFa` (Part 1 §11.4.10.2): SP 800-108 counter-mode KDF with HMAC.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let k = hmac::Key::new(hmac_alg(hash), key);
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        if !label.ends_with('\0') {
            ctx.update(&[0]);
        }
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    match n {
        0..=127 => out.push(n as u8),
        128..=255 => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn der_uint(v: &[u8]) -> Vec<u8> {
    let v: &[u8] = {
        let start = v
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        &v[start..]
    };
    let mut body = Vec::with_capacity(v.len() + 1);
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(v);
    der(0x02, &body)
}

/// SubjectPublicKeyInfo DER of an RSA public key.
pub(crate) fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let rsa_key = der(0x30, &[der_uint(n), der_uint(e)].concat());
    let alg = der(
        0x30,
        &[
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
            ][..],
            &[0x05, 0x00],
        ]
        .concat(),
    );
    let mut bits = vec![0u8];
    bits.extend(rsa_key);
    der(0x30, &[alg, der(0x03, &bits)].concat())
}

/// `TPM2_MakeCredential`. For an RSA EK the seed is the caller's `seed` (random, one nameAlg
/// digest long), encrypted with RSA-OAEP; for an ECC EK it is derived by ECDH with a fresh
/// ephemeral key and KDFe, and `seed` is ignored.
pub fn make_credential(
    ek: &TpmtPublic,
    object_name: &[u8],
    credential: &[u8],
    seed: &[u8],
) -> Result<MadeCredential, TpmError> {
    let h = ek.name_alg;
    if credential.len() > h.size() {
        return Err(TpmError::Invalid(format!(
            "credential of {} bytes exceeds the EK nameAlg digest size {}",
            credential.len(),
            h.size()
        )));
    }
    let Some((AES, sym_bits, CFB)) = ek.symmetric else {
        return Err(TpmError::Invalid(
            "the EK must be a storage key with AES-CFB (a standard EK template)".into(),
        ));
    };
    // Encrypt the seed to the EK.
    let encrypted = match &ek.key {
        PublicKey::Rsa { n, e } => {
            if seed.len() != h.size() {
                return Err(TpmError::Invalid(
                    "seed must be one nameAlg digest long".into(),
                ));
            }
            if h != HashAlg::Sha256 {
                return Err(TpmError::Algorithm {
                    what: "RSA EK nameAlg for credential activation",
                    alg: h.id(),
                });
            }
            let spki = rsa_spki(n, e);
            let pk = PublicEncryptingKey::from_der(&spki)
                .and_then(|k| OaepPublicEncryptingKey::new(k).map_err(Into::into))
                .map_err(|e| TpmError::Invalid(format!("EK RSA key: {e}")))?;
            let mut out = vec![0u8; pk.ciphertext_size()];
            let c = pk
                .encrypt(&OAEP_SHA256_MGF1SHA256, seed, &mut out, Some(b"IDENTITY\0"))
                .map_err(|_| TpmError::Invalid("RSA-OAEP encryption failed".into()))?;
            c.to_vec()
        }
        PublicKey::Ecc { curve, x, y } => {
            // The seed is derived, not chosen: ECDH between an ephemeral key and the EK, then
            // KDFe. `seed` (the caller's randomness) is unused for ECC EKs.
            let (enc, derived) = ecc_seed(*curve, x, y, h)?;
            return finish(h, sym_bits, object_name, credential, &derived, enc);
        }
        PublicKey::Spki(_) => {
            return Err(TpmError::Invalid("the EK must be a TPM public area".into()));
        }
    };
    finish(h, sym_bits, object_name, credential, seed, encrypted)
}

/// `KDFe` (Part 1 §11.4.10.3): the SP 800-56A concatenation KDF used with ECDH.
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let label_bytes: &[u8] = if label.ends_with('\0') {
            label.as_bytes()
        } else {
            &[label.as_bytes(), b"\0"].concat()
        };
        out.extend(hash.digest(&[&counter.to_be_bytes(), z, label_bytes, party_u, party_v]));
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// ECDH with a fresh ephemeral key against the EK, and the KDFe-derived seed. Returns the
/// ephemeral public point as the `encryptedSecret` contents and the seed.
fn ecc_seed(
    curve: crate::EccCurve,
    x: &[u8],
    y: &[u8],
    h: HashAlg,
) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    use aws_lc_rs::agreement::{
        ECDH_P256, ECDH_P384, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral,
    };
    let alg = match curve {
        crate::EccCurve::P256 => &ECDH_P256,
        crate::EccCurve::P384 => &ECDH_P384,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let eph = EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| TpmError::Invalid("ephemeral ECC key generation failed".into()))?;
    let eph_pub = eph
        .compute_public_key()
        .map_err(|_| TpmError::Invalid("ephemeral ECC public key".into()))?;
    let p = eph_pub.as_ref();
    let n = curve.size();
    if p.len() != 1 + 2 * n {
        return Err(TpmError::Invalid("ephemeral ECC point size".into()));
    }
    let (ex, ey) = (&p[1..1 + n], &p[1 + n..]);
    let mut ek_point = vec![4u8];
    ek_point.extend_from_slice(x);
    ek_point.extend_from_slice(y);
    let seed = agree_ephemeral(
        eph,
        UnparsedPublicKey::new(alg, &ek_point),
        TpmError::Invalid("ECDH with the EK failed (not a point on the curve?)".into()),
        |z| Ok(kdfe(h, z, "IDENTITY", ex, x, (h.size() * 8) as u32)),
    )?;
    let mut point = (n as u16).to_be_bytes().to_vec();
    point.extend_from_slice(ex);
    point.extend((n as u16).to_be_bytes());
    point.extend_from_slice(ey);
    Ok((point, seed))
}

/// The common tail of MakeCredential: encrypt and integrity-protect the credential under keys
/// derived from `seed` and the object's name.
fn finish(
    h: HashAlg,
    sym_bits: u16,
    object_name: &[u8],
    credential: &[u8],
    seed: &[u8],
    encrypted: Vec<u8>,
) -> Result<MadeCredential, TpmError> {
    // Encrypt the credential under a key derived from the seed and bound to the AK's name.
    let sym_key = kdfa(h, seed, "STORAGE", object_name, &[], u32::from(sym_bits));
    let cipher = match sym_bits {
        128 => &AES_128,
        256 => &AES_256,
        b => {
            return Err(TpmError::Invalid(format!("EK AES key size {b}")));
        }
    };
    let mut enc_identity = (credential.len() as u16).to_be_bytes().to_vec();
    enc_identity.extend_from_slice(credential);
    let key = UnboundCipherKey::new(cipher, &sym_key)
        .and_then(EncryptingKey::cfb128)
        .map_err(|_| TpmError::Invalid("AES key".into()))?;
    key.less_safe_encrypt(
        &mut enc_identity,
        EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
    )
    .map_err(|_| TpmError::Invalid("AES-CFB encryption failed".into()))?;
    // Integrity: HMAC over the encrypted credential and the AK's name.
    let hmac_key = kdfa(h, seed, "INTEGRITY", &[], &[], (h.size() * 8) as u32);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac_alg(h), &hmac_key));
    ctx.update(&enc_identity);
    ctx.update(object_name);
    let integrity = ctx.sign();

    let mut inner = (h.size() as u16).to_be_bytes().to_vec();
    inner.extend_from_slice(integrity.as_ref());
    inner.extend_from_slice(&enc_identity);
    let mut id_object = (inner.len() as u16).to_be_bytes().to_vec();
    id_object.extend(inner);
    let mut encrypted_secret = (encrypted.len() as u16).to_be_bytes().to_vec();
    encrypted_secret.extend(encrypted);
    Ok(MadeCredential {
        id_object,
        encrypted_secret,
    })
}
