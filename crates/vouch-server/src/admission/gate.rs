//! Who may ask the admission webhook: the API server, by the client certificate or the bearer
//! token its `--admission-control-config-file` kubeconfig gives it for this webhook
//! (Kubernetes docs, "Dynamic Admission Control", "Authenticate apiservers").
//!
//! The certificate chain is verified by the listener's TLS handshake against `client_ca`
//! (`rustls`' WebPKI client verifier, which lets clients with no certificate through so the
//! other routes keep working, and refuses the handshake of one whose certificate does not
//! chain to `client_ca`); the leaf reaches the handler as a [`ClientCertificate`]. Here the
//! leaf's subject common name or a DNS name of its subjectAltName must be one of
//! `client_names` when that list is set, and the token compares in constant time (SHA-256 of
//! both sides, so its length does not show either). Each configured credential is required.

use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AdmissionSettings;

/// The leaf certificate (DER) the client presented in the TLS handshake, verified against
/// `[admission] client_ca` by the listener; `None` when it presented none (or over plain
/// HTTP). Put in every request's extensions by the listener.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientCertificate(pub(crate) Option<Arc<Vec<u8>>>);

/// Shortest bearer token accepted in `token_file`.
const MIN_TOKEN: usize = 16;

/// The webhook's configuration, loaded once at start (the token read from its file).
pub(crate) struct Admission {
    pub(crate) settings: Option<AdmissionSettings>,
    token_sha256: Option<[u8; 32]>,
    /// Provenance answers by repository and digest (`require_provenance`).
    pub(crate) provenance_cache: super::provenance::ProvenanceCache,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("configured", &self.settings.is_some())
            .field("token", &self.token_sha256.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Check `s` and read its token file; a setting that cannot work is an error at start.
    /// `tls`: the listener serves TLS; `provenance_keys`: `[image_signatures] provenance` is
    /// on (the provenance keys are loaded).
    pub(crate) fn new(
        s: Option<&AdmissionSettings>,
        tls: bool,
        provenance_keys: bool,
    ) -> Result<Self, String> {
        let Some(s) = s else {
            return Ok(Self {
                settings: None,
                token_sha256: None,
                provenance_cache: Default::default(),
            });
        };
        let authenticated = s.client_ca.is_some() || s.token_file.is_some();
        if s.insecure_unauthenticated && authenticated {
            return Err(
                "[admission] insecure_unauthenticated with client_ca or token_file: choose one"
                    .into(),
            );
        }
        if !s.insecure_unauthenticated && !authenticated {
            return Err(
                "[admission] needs client_ca or token_file (how the API server authenticates), \
                 or insecure_unauthenticated = true"
                    .into(),
            );
        }
        if s.client_ca.is_some() && !tls {
            return Err("[admission] client_ca needs TLS (insecure_http is set)".into());
        }
        if !s.client_names.is_empty() && s.client_ca.is_none() {
            return Err("[admission] client_names without client_ca".into());
        }
        if s.require_attested_node && s.cluster.as_deref().is_none_or(str::is_empty) {
            return Err(
                "[admission] require_attested_node needs cluster: the k8s_psat cluster name \
                 whose nodes the pods run on"
                    .into(),
            );
        }
        if s.require_provenance && s.provenance_builders.is_empty() {
            return Err("[admission] require_provenance needs provenance_builders".into());
        }
        if s.require_provenance && !provenance_keys {
            return Err(
                "[admission] require_provenance needs [image_signatures] provenance = true \
                 (the keys provenance is checked with)"
                    .into(),
            );
        }
        let token_sha256 = match &s.token_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("[admission] token_file {}: {e}", p.display()))?;
                let token = text.trim();
                if token.len() < MIN_TOKEN {
                    return Err(format!(
                        "[admission] token_file {}: a token of at least {MIN_TOKEN} bytes",
                        p.display()
                    ));
                }
                Some(Sha256::digest(token.as_bytes()).into())
            }
            None => None,
        };
        Ok(Self {
            settings: Some(s.clone()),
            token_sha256,
            provenance_cache: Default::default(),
        })
    }

    /// `Ok` when the request carries every credential `[admission]` asks for; else why not.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: &ClientCertificate,
    ) -> Result<(), String> {
        let Some(s) = &self.settings else {
            return Err(
                "this verifier takes no admission review: [admission] is not configured".into(),
            );
        };
        if let Some(want) = &self.token_sha256 {
            let given = crate::auth::bearer(headers).ok_or("no Authorization: Bearer token")?;
            let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
            if !bool::from(given.ct_eq(want)) {
                return Err("the bearer token is not the admission token".into());
            }
        }
        if s.client_ca.is_some() {
            let der = cert
                .0
                .as_deref()
                .ok_or("no client certificate (the API server's, from client_ca)")?;
            if !s.client_names.is_empty() {
                let names = certificate_names(der)?;
                if !names.iter().any(|n| s.client_names.contains(n)) {
                    return Err(format!(
                        "client certificate names {:?}, none of client_names",
                        names
                            .iter()
                            .take(8)
                            .map(|n| vouch_core::clip(n, 64))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The subject common names and the subjectAltName DNS names of a certificate.
fn certificate_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("client certificate: {e}"))?;
    let mut out: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push((*d).to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.token");
        std::fs::write(&short, "0123456789\n").unwrap();
        let good = dir.path().join("good.token");
        std::fs::write(&good, "0123456789abcdef\n").unwrap();
        let with = |f: fn(&mut AdmissionSettings)| {
            let mut s = AdmissionSettings::default();
            f(&mut s);
            s
        };
        let cases: Vec<(AdmissionSettings, bool, &str)> = vec![
            (
                AdmissionSettings::default(),
                true,
                "needs client_ca or token_file",
            ),
            (
                with(|s| {
                    s.insecure_unauthenticated = true;
                    s.client_ca = Some("ca.pem".into());
                }),
                true,
                "choose one",
            ),
            (
                with(|s| s.client_ca = Some("ca.pem".into())),
                false,
                "needs TLS",
            ),
            (
                with(|s| {
                    s.insecure_unauthenticated = true;
                    s.client_names = vec!["kube-apiserver".into()];
                }),
                true,
                "client_names without client_ca",
            ),
            (
                with(|s| {
                    s.insecure_unauthenticated = true;
                    s.require_attested_node = true;
                }),
                true,
                "needs cluster",
            ),
            (
                with(|s| {
                    s.insecure_unauthenticated = true;
                    s.require_provenance = true;
                }),
                true,
                "needs provenance_builders",
            ),
            (
                with(|s| {
                    s.insecure_unauthenticated = true;
                    s.require_provenance = true;
                    s.provenance_builders = vec!["https://builder.example/".into()];
                }),
                true,
                "needs [image_signatures] provenance = true",
            ),
        ];
        for (s, tls, why) in cases {
            let e = Admission::new(Some(&s), tls, false).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        let s = AdmissionSettings {
            token_file: Some(short),
            ..AdmissionSettings::default()
        };
        assert!(
            Admission::new(Some(&s), true, false)
                .unwrap_err()
                .contains("at least 16")
        );
        let s = AdmissionSettings {
            token_file: Some(good),
            ..AdmissionSettings::default()
        };
        let a = Admission::new(Some(&s), true, false).unwrap();
        // The token is never shown.
        assert!(!format!("{a:?}").contains("0123456789"));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        a.authenticate(&headers, &ClientCertificate::default())
            .unwrap();
        headers.insert("authorization", "Bearer 0123456789abcdeg".parse().unwrap());
        assert!(
            a.authenticate(&headers, &ClientCertificate::default())
                .is_err()
        );
    }
}
