//! The trust domain CA's key in a PKCS#11 token (an HSM, or SoftHSM2 in tests): generated in
//! the token as sensitive and non-extractable, found again by label after a restart, and used
//! only through `C_Sign` (CKM_ECDSA over a SHA-256 digest computed here).

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::IdentityError;

/// DER of the `prime256v1` OID: the EC parameters of a P-256 key.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Where the CA key lives in a PKCS#11 token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`, a vendor's library).
    pub module: PathBuf,
    /// Label of the token holding the key.
    pub token_label: String,
    /// User PIN.
    #[serde(skip_serializing)]
    pub pin: String,
    /// Label of the key pair (created in the token when absent).
    pub key_label: String,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

fn h(what: &str) -> impl Fn(cryptoki::error::Error) -> IdentityError + '_ {
    move |e| IdentityError::X509(format!("PKCS#11 {what}: {e}"))
}

/// The process's one initialized context for the PKCS#11 module at `module`. A module may be
/// initialized once per process (and finalizing it closes every session), so every user shares
/// this context.
pub fn pkcs11_context(module: &std::path::Path) -> Result<Pkcs11, IdentityError> {
    static CONTEXTS: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut all = CONTEXTS
        .lock()
        .map_err(|_| IdentityError::X509("PKCS#11 context lock poisoned".into()))?;
    if let Some((_, c)) = all.iter().find(|(m, _)| m == module) {
        return Ok(c.clone());
    }
    let ctx = Pkcs11::new(module).map_err(h("loading the module"))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(h("initializing"))?;
    all.push((module.to_path_buf(), ctx.clone()));
    Ok(ctx)
}

/// An ECDSA P-256 key that stays in a PKCS#11 token.
pub struct Pkcs11Key {
    // Kept alive for the session's sake.
    _ctx: Pkcs11,
    session: Mutex<Session>,
    private: ObjectHandle,
    /// The uncompressed public point (04 || x || y).
    point: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("point", &hex::encode(&self.point))
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Log in to the token and find the key pair labelled `key_label`, or generate it there
    /// (token object, private, sensitive, not extractable).
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, IdentityError> {
        let ctx = pkcs11_context(&cfg.module)?;
        let slot = ctx
            .get_slots_with_initialized_token()
            .map_err(h("listing slots"))?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|t| t.label().trim() == cfg.token_label)
                    .unwrap_or(false)
            })
            .ok_or_else(|| {
                IdentityError::X509(format!(
                    "PKCS#11: no token labelled {:?} in {}",
                    cfg.token_label,
                    cfg.module.display()
                ))
            })?;
        let session = ctx.open_rw_session(slot).map_err(h("opening a session"))?;
        match session.login(UserType::User, Some(&AuthPin::new(cfg.pin.clone().into()))) {
            // Login state is per application: another key of this process logged in already.
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(h("logging in")(e)),
        }
        let label = cfg.key_label.as_bytes().to_vec();
        let find = |class: ObjectClass| {
            session.find_objects(&[Attribute::Class(class), Attribute::Label(label.clone())])
        };
        let (public, private) = match (
            find(ObjectClass::PUBLIC_KEY)
                .map_err(h("finding the public key"))?
                .first(),
            find(ObjectClass::PRIVATE_KEY)
                .map_err(h("finding the private key"))?
                .first(),
        ) {
            (Some(p), Some(k)) => (*p, *k),
            (None, None) => session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Verify(true),
                        Attribute::EcParams(P256_PARAMS.to_vec()),
                        Attribute::Label(label.clone()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Label(label.clone()),
                    ],
                )
                .map_err(h("generating the key pair"))?,
            _ => {
                return Err(IdentityError::X509(format!(
                    "PKCS#11: only half of key pair {:?} is in the token",
                    cfg.key_label
                )));
            }
        };
        let attrs = session
            .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(h("reading the public key"))?;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) if p != P256_PARAMS => {
                    return Err(IdentityError::X509(
                        "PKCS#11: the key is not a P-256 key".into(),
                    ));
                }
                // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
                Attribute::EcPoint(p) => point = Some(unwrap_octet_string(&p)),
                _ => {}
            }
        }
        let point = point
            .flatten()
            .filter(|p| p.len() == 65 && p[0] == 4)
            .ok_or_else(|| IdentityError::X509("PKCS#11: no usable EC point".into()))?;
        Ok(Self {
            _ctx: ctx,
            session: Mutex::new(session),
            private,
            point,
        })
    }

    /// Sign `msg` (SHA-256, ECDSA P-256) in the token; the DER `ECDSA-Sig-Value`.
    pub fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg);
        let raw = self
            .session
            .lock()
            .map_err(|_| IdentityError::X509("PKCS#11 session lock poisoned".into()))?
            .sign(&Mechanism::Ecdsa, self.private, digest.as_ref())
            .map_err(h("signing"))?;
        if raw.len() != 64 {
            return Err(IdentityError::X509(format!(
                "PKCS#11: a P-256 signature of {} bytes",
                raw.len()
            )));
        }
        Ok(ecdsa_sig_der(&raw[..32], &raw[32..]))
    }
}

fn unwrap_octet_string(d: &[u8]) -> Option<Vec<u8>> {
    match d {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => {
            Some(rest.to_vec())
        }
        // Some tokens return the raw point.
        [0x04, ..] if d.len() == 65 => Some(d.to_vec()),
        _ => None,
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }` from fixed-size big-endian `r` and `s`.
fn ecdsa_sig_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut v: &[u8] = v;
        while v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        out.push((v.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = (int(r), int(s));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    out
}

impl rcgen::PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(msg).map_err(|e| {
            // rcgen's error has no room for the reason: log it for the operator.
            tracing::error!("the CA key in the PKCS#11 token failed to sign: {e}");
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_der_encoding() {
        let r = [0u8; 32];
        let mut s = [0xffu8; 32];
        s[0] = 0x80;
        let d = ecdsa_sig_der(&r, &s);
        // r = 0 → one zero byte; s has its top bit set → a leading zero.
        assert_eq!(&d[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x00]);
        assert_eq!(&d[5..8], &[0x02, 33, 0x00]);
        assert_eq!(d.len(), 2 + 3 + 35);
    }

    #[test]
    fn ec_point_unwrapping() {
        let mut p = vec![0x04, 65, 0x04];
        p.extend([7u8; 64]);
        assert_eq!(unwrap_octet_string(&p).unwrap().len(), 65);
        assert!(unwrap_octet_string(&[0x05, 1, 1]).is_none());
    }
}
