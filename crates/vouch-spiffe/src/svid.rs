//! Reading X.509-SVIDs: the SPIFFE ID of a certificate (X509-SVID standard §2: exactly one
//! URI SAN, a SPIFFE ID) and DER certificate lists as the Workload API sends them
//! (concatenated, with no separator).

use crate::{SpiffeError, SpiffeId};

/// Most certificates read from one concatenated DER list.
const MAX_CERTS: usize = 64;

fn x(m: impl Into<String>) -> SpiffeError {
    SpiffeError::X509(m.into())
}

/// The SPIFFE ID of an X.509-SVID (DER): its one URI SAN. A certificate with no SAN, no URI
/// SAN, several URI SANs or a URI SAN that is not a valid SPIFFE ID is refused. The
/// certificate's signature and validity are not checked here (a TLS verifier does that).
pub fn svid_spiffe_id(der: &[u8]) -> Result<SpiffeId, SpiffeError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| x(format!("peer certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| x(format!("peer certificate SAN: {e}")))?
        .ok_or_else(|| x("peer certificate has no SAN, so no SPIFFE ID"))?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one),
        [] => Err(x("peer certificate has no URI SAN")),
        _ => Err(x(
            "an X.509-SVID has exactly one URI SAN; the peer's has several",
        )),
    }
}

/// Split concatenated DER certificates (the Workload API's `x509_svid` and `bundle` fields)
/// into one DER document each. Every certificate must parse; at most 64 are read.
pub fn split_der_certificates(mut der: &[u8]) -> Result<Vec<Vec<u8>>, SpiffeError> {
    let mut out = Vec::new();
    while !der.is_empty() {
        if out.len() == MAX_CERTS {
            return Err(x(format!("more than {MAX_CERTS} certificates")));
        }
        let (rest, _) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| x(format!("certificate {} does not parse: {e}", out.len() + 1)))?;
        let used = der.len() - rest.len();
        out.push(der[..used].to_vec());
        der = rest;
    }
    Ok(out)
}

/// When the X.509 certificate `der` stops being valid (`notAfter`), Unix seconds.
pub fn not_after(der: &[u8]) -> Result<u64, SpiffeError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| x(format!("certificate does not parse: {e}")))?;
    u64::try_from(cert.validity().not_after.timestamp())
        .map_err(|_| x("certificate notAfter is before 1970"))
}
