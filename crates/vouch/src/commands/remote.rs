//! The admin commands' client (issue 16 item 1): every admin verb is a call to the verifier's
//! authenticated API. Which verifier, and which credential: flags, then `VOUCH_*` environment
//! variables (both in [`AdminArgs`]), then the named or current context, then the context a
//! local verifier published in `--data-dir`. With none of them, the command says how to
//! configure one; it never opens a store.

use anyhow::{Context as _, Result, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

use super::context::{self, Ctx};
use crate::cli::AdminArgs;

/// Largest answer read (a policy, a page of a list).
const MAX_ANSWER: usize = 64 << 20;

/// An authenticated connection to one verifier's API.
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

const HOW: &str = "admin commands talk to a verifier through its API and never open its \
store; say which verifier: --server URL --token-file FILE [--ca-cert CA.pem] (or \
VOUCH_SERVER, VOUCH_TOKEN_FILE, VOUCH_SERVER_CA), a context (`vouch context add NAME --server \
URL --token-file FILE --ca-cert CA.pem --use`), or --data-dir DIR of a verifier running on \
this machine";

/// The data directory of the configuration file's `[server]` section: a verifier on this
/// machine published its context there (the last place looked, when nothing else is set).
pub(crate) static LOCAL_DATA_DIR: std::sync::OnceLock<std::path::PathBuf> =
    std::sync::OnceLock::new();

/// The verifier and credential `a` (and the contexts) select.
fn resolve(a: &AdminArgs) -> Result<Ctx> {
    let named = match &a.context {
        Some(name) => Some(
            context::load()?
                .contexts
                .remove(name)
                .with_context(|| format!("no context {name} (see `vouch context list`)"))?,
        ),
        None => None,
    };
    let base = match (named, &a.server, &a.data_dir) {
        (Some(c), _, _) => c,
        (None, Some(_), _) => Ctx::default(),
        (None, None, Some(dir)) => context::published(dir)?.with_context(|| {
            format!(
                "{} holds no verifier context ({}): is a verifier running with this data \
                 directory? ({HOW})",
                dir.display(),
                context::PUBLISHED
            )
        })?,
        (None, None, None) => {
            let mut f = context::load()?;
            let local = || match LOCAL_DATA_DIR.get() {
                Some(d) => context::published(d),
                None => Ok(None),
            };
            match f.current.clone().and_then(|n| f.contexts.remove(&n)) {
                Some(c) => c,
                None => local()?.with_context(|| format!("no verifier configured: {HOW}"))?,
            }
        }
    };
    // A CA given explicitly replaces the context's way of trusting the verifier.
    let pinned_cert = if a.ca_cert.is_some() {
        None
    } else {
        base.pinned_cert
    };
    Ok(Ctx {
        server: a.server.clone().unwrap_or(base.server),
        pinned_cert,
        ca_cert: a.ca_cert.clone().or(base.ca_cert),
        token_file: a.token_file.clone().or(base.token_file),
        token: a.token.clone().or(base.token),
    })
}

impl Api {
    /// Connect as `a` says.
    pub(crate) fn new(a: &AdminArgs) -> Result<Self> {
        let c = resolve(a)?;
        let token = match (&c.token, &c.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => std::fs::read_to_string(p)
                .with_context(|| format!("reading the token file {}", p.display()))?
                .trim()
                .to_string(),
            (None, None) => bail!(
                "no token for {}: pass --token-file (or VOUCH_TOKEN_FILE)",
                c.server
            ),
        };
        if token.is_empty() {
            bail!("the token is empty");
        }
        let base = c.server.trim_end_matches('/').to_string();
        let base = match &a.tenant {
            Some(t) if vouch_server::valid_tenant_name(t) => format!("{base}/t/{t}"),
            Some(t) => bail!("tenant {t:?}: 1-63 of a-z, 0-9 and -, starting with a letter"),
            None => base,
        };
        if !base.starts_with("https://") {
            let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
                .iter()
                .any(|p| base.starts_with(p));
            if !loopback {
                bail!("{base}: the token travels only over https:// (http:// on loopback only)");
            }
        }
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &c.pinned_cert {
            b = b.tls_backend_preconfigured(pinned_tls(p)?);
        } else if let Some(ca) = &c.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?;
            b = b.tls_certs_only(certs);
        }
        Ok(Self {
            client: b.build()?,
            base,
            token,
        })
    }

    /// `method path` with an optional JSON body; the answer's JSON, or the verifier's error.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!("{method} {}{path}", self.base);
        let res = req.send().await.with_context(|| what.clone())?;
        let status = res.status();
        let bytes = res.bytes().await.with_context(|| what.clone())?;
        if bytes.len() > MAX_ANSWER {
            bail!("{what}: answer larger than 64 MiB");
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return if status.is_success() {
                Ok(Value::Null)
            } else {
                Err(anyhow::anyhow!("{what}: {status}"))
            };
        }
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: {status}, and the answer is not JSON"))?;
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("");
            let kind = v["error"]["kind"].as_str().unwrap_or("");
            bail!("the verifier refused ({status}, {kind}): {msg}");
        }
        Ok(v)
    }

    /// GET `path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// POST `body` to `path`.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// DELETE `path`.
    pub(crate) async fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None).await
    }
}

/// A path segment, percent-encoded (ids carry `/`, `:` and the like).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A TLS client that accepts exactly the certificate in `pem` (the first one there), after
/// checking the handshake's signature with it: for a verifier's local context, whose
/// certificate names the service's DNS name, not the loopback address the context uses.
fn pinned_tls(pem: &std::path::Path) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("reading {}", pem.display()))?
        .next()
        .with_context(|| format!("{} holds no PEM certificate", pem.display()))?
        .with_context(|| format!("reading {}", pem.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(Pinned {
            cert: cert.to_vec(),
            provider,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts one certificate, byte for byte.
#[derive(Debug)]
struct Pinned {
    cert: Vec<u8>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // A certificate is public: a plain comparison.
        if end_entity.as_ref() == self.cert.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the verifier's certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
