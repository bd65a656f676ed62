//! EK certificate validation: the chain to a configured manufacturer CA, validity at the
//! verification time, CA constraints on issuers, and the certified key equal to the EK the TPM
//! presented.

use std::path::Path;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use crate::credential::rsa_spki;
use crate::{PublicKey, TpmError, TpmtPublic};

/// A set of trusted manufacturer CA certificates (roots and intermediates).
#[derive(Debug, Clone, Default)]
pub struct EkTrustStore {
    certs: Vec<(Vec<u8>, Certificate)>,
}

/// What a validated EK certificate says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EkCertInfo {
    /// Subject of the EK certificate.
    pub subject: String,
    /// The trusted CA that issued it.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
}

fn invalid(m: impl Into<String>) -> TpmError {
    TpmError::EkCertificate(m.into())
}

impl EkTrustStore {
    /// Load every certificate (PEM, possibly several per file, or DER) in `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, TpmError> {
        let mut store = Self::default();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| invalid(format!("reading EK CA directory {}: {e}", dir.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let ders = match std::str::from_utf8(&bytes) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE") => vouch_x509::pem_certificates(t),
                _ => vec![bytes],
            };
            for der in ders {
                if let Ok(c) = Certificate::from_der(&der) {
                    store.certs.push((der, c));
                }
            }
        }
        Ok(store)
    }

    /// Add one DER certificate.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), TpmError> {
        let c = Certificate::from_der(der).map_err(|e| invalid(format!("CA certificate: {e}")))?;
        self.certs.push((der.to_vec(), c));
        Ok(())
    }

    /// Number of trusted certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Validate `ek_cert` (DER) at `now` (Unix seconds) and check it certifies `ek`.
    pub fn verify(
        &self,
        ek_cert: &[u8],
        ek: &TpmtPublic,
        now: u64,
    ) -> Result<EkCertInfo, TpmError> {
        if ek_cert.len() > 16 * 1024 {
            return Err(invalid("EK certificate larger than 16 KiB"));
        }
        let leaf = Certificate::from_der(ek_cert)
            .map_err(|e| invalid(format!("EK certificate does not parse: {e}")))?;
        check_validity(&leaf, now, "EK certificate")?;
        same_key(&leaf, ek)?;
        // Every certificate in the store is trusted (it was configured as a manufacturer CA), so
        // the chain is anchored by the first trusted certificate that signed the EK
        // certificate; that issuer must itself be valid now and be a CA.
        let issuer_name = &leaf.tbs_certificate.issuer;
        let (_, ca) = self
            .certs
            .iter()
            .find(|(_, c)| {
                &c.tbs_certificate.subject == issuer_name
                    && verify_signed_by(ek_cert, &leaf, c).is_ok()
            })
            .ok_or_else(|| {
                invalid(format!(
                    "no trusted manufacturer CA named {issuer_name} signed this EK certificate"
                ))
            })?;
        check_validity(ca, now, "CA certificate")?;
        if !vouch_x509::is_ca(ca) {
            return Err(invalid(format!(
                "{} signs certificates but is not a CA (basicConstraints)",
                ca.tbs_certificate.subject
            )));
        }
        Ok(EkCertInfo {
            subject: leaf.tbs_certificate.subject.to_string(),
            issuer: ca.tbs_certificate.subject.to_string(),
            serial: hex::encode(leaf.tbs_certificate.serial_number.as_bytes()),
        })
    }
}

fn check_validity(c: &Certificate, now: u64, what: &str) -> Result<(), TpmError> {
    vouch_x509::check_validity(c, now, what).map_err(invalid)
}

fn verify_signed_by(der: &[u8], cert: &Certificate, issuer: &Certificate) -> Result<(), TpmError> {
    vouch_x509::verify_signed_by(der, cert, issuer).map_err(invalid)
}

fn same_key(cert: &Certificate, ek: &TpmtPublic) -> Result<(), TpmError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| invalid("EK certificate key bit string"))?;
    let matches = match &ek.key {
        PublicKey::Rsa { n, e } => {
            let ours = rsa_spki(n, e);
            spki.to_der().map(|d| d == ours).unwrap_or(false)
        }
        PublicKey::Ecc { x, y, .. } => {
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            bits == point.as_slice()
        }
        PublicKey::Spki(_) => false,
    };
    if matches {
        Ok(())
    } else {
        Err(invalid(
            "the EK certificate certifies another key than the TPM's EK",
        ))
    }
}
