//! X.509-SVIDs from the SPIFFE Workload API that stay current: an [`X509Source`] holds the
//! `FetchX509SVID` stream of the local agent (gRPC on its Unix socket) open, keeps the newest
//! SVID, key and trust bundle the agent sends, and gives rustls configurations whose
//! certificate resolver and peer verifier read them at every handshake, so a service serves
//! and checks mTLS across rotations with no restart (like go-spiffe's `X509Source`).
//!
//! When the agent refuses an identity (`PermissionDenied`: the node or workload is no longer
//! attested affirming), the source drops the SVID it held: handshakes then fail until the
//! agent issues one again. When the agent cannot be reached, the source keeps the SVID it has
//! and reconnects with backoff.
//!
//! ```no_run
//! # async fn f() -> Result<(), vouch_rp::RpError> {
//! use vouch_rp::{AllowedIds, SpiffeId, X509Source};
//! let source = X509Source::connect("/run/vouch/agent.sock".as_ref()).await?;
//! println!("serving as {}", source.svid()?.spiffe_id());
//! // Servers: present the current SVID; accept only this client.
//! let app = SpiffeId::parse("spiffe://example.org/app").map_err(|e| vouch_rp::RpError::Keys(e.to_string()))?;
//! let server = source.server_config(AllowedIds::Only(vec![app]))?;
//! // Clients: present the current SVID; accept any server of the trust domain.
//! let client = source.client_config(AllowedIds::AnyInTrustDomain)?;
//! # let _ = (server, client); Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::sync::watch;
use vouch_spiffe::workload_api::{self, proto};

use crate::{AllowedIds, RpError, SpiffeId, SpiffeVerifier, TrustBundle, TrustDomain};

/// How long [`X509Source::connect`] waits for the first SVID.
const FIRST_UPDATE: Duration = Duration::from_secs(30);
/// Longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn wapi(m: impl std::fmt::Display) -> RpError {
    RpError::WorkloadApi(m.to_string())
}

/// An X.509-SVID with its private key, as the Workload API sent it.
#[derive(Clone)]
pub struct X509Svid {
    spiffe_id: SpiffeId,
    chain: Vec<Vec<u8>>,
    not_after: u64,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl X509Svid {
    /// The SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The certificate chain, DER, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// When the leaf expires, Unix seconds.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The chain and key for rustls.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

/// What the source holds after an update.
#[derive(Debug, Clone)]
struct State {
    svid: X509Svid,
    bundle: TrustBundle,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<Option<Arc<State>>>,
    /// Moves on every update (a new SVID, or one withdrawn).
    updates: watch::Sender<u64>,
    /// Why the last attempt failed, if it did.
    last_error: Mutex<Option<(tonic::Code, String)>>,
    provider: Arc<CryptoProvider>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

/// The current X.509-SVID and trust bundle from the SPIFFE Workload API, kept current by
/// its stream. Cheap to clone; clones share one stream.
#[derive(Debug, Clone)]
pub struct X509Source {
    inner: Arc<Inner>,
}

impl X509Source {
    /// Connect to the Workload API at `socket` and wait (up to 30 s) for the first SVID. An
    /// error if the agent refuses an identity, sends an unusable one, or sends none in time.
    pub async fn connect(socket: &Path) -> Result<Self, RpError> {
        let (updates, mut rx) = watch::channel(0);
        let inner = Arc::new(Inner {
            state: RwLock::new(None),
            updates,
            last_error: Mutex::new(None),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&inner), socket.to_path_buf()));
        if let Ok(mut t) = inner.task.lock() {
            *t = Some(task.abort_handle());
        }
        let source = Self { inner };
        let waited = tokio::time::timeout(FIRST_UPDATE, async {
            loop {
                if source.current().is_some() {
                    return Ok(());
                }
                if let Some((tonic::Code::PermissionDenied, m)) = source.last_error() {
                    return Err(wapi(format!("no identity: {m}")));
                }
                if rx.changed().await.is_err() {
                    return Err(wapi("the source stopped"));
                }
            }
        })
        .await;
        match waited {
            Ok(r) => r.map(|()| source),
            Err(_) => Err(wapi(format!(
                "no X.509-SVID from {} within {} s{}",
                socket.display(),
                FIRST_UPDATE.as_secs(),
                source
                    .last_error()
                    .map(|(_, m)| format!(" (last error: {m})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// [`X509Source::connect`] to the socket `SPIFFE_ENDPOINT_SOCKET` names
    /// (`unix:///path`), as every SPIFFE client library does.
    pub async fn from_env() -> Result<Self, RpError> {
        let v = std::env::var("SPIFFE_ENDPOINT_SOCKET")
            .map_err(|_| wapi("SPIFFE_ENDPOINT_SOCKET is not set"))?;
        let path = workload_api::socket_path(&v)
            .ok_or_else(|| wapi(format!("SPIFFE_ENDPOINT_SOCKET {v:?} is not a unix: path")))?;
        Self::connect(&path).await
    }

    fn current(&self) -> Option<Arc<State>> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn last_error(&self) -> Option<(tonic::Code, String)> {
        self.inner.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn held(&self) -> Result<Arc<State>, RpError> {
        self.current().ok_or_else(|| {
            wapi(match self.last_error() {
                Some((_, m)) => format!("no X.509-SVID held: {m}"),
                None => "no X.509-SVID held".into(),
            })
        })
    }

    /// The current SVID. An error while none is held (the agent withdrew it).
    pub fn svid(&self) -> Result<X509Svid, RpError> {
        Ok(self.held()?.svid.clone())
    }

    /// The current trust bundle of the SVID's trust domain.
    pub fn bundle(&self) -> Result<TrustBundle, RpError> {
        Ok(self.held()?.bundle.clone())
    }

    /// A receiver whose value moves on every update (a new SVID or bundle, or the SVID
    /// withdrawn): `changed().await` to follow rotations.
    pub fn updates(&self) -> watch::Receiver<u64> {
        self.inner.updates.subscribe()
    }

    /// A rustls server configuration that presents the current SVID at every handshake and
    /// requires a client certificate: an X.509-SVID of the source's trust domain, chaining to
    /// its current bundle, whose SPIFFE ID `allowed` accepts. Set `alpn_protocols` as the
    /// protocol needs. Sessions are not resumed (a resumed session skips the verifier), so
    /// every connection is checked against the peer's SVID of the moment.
    pub fn server_config(&self, allowed: AllowedIds) -> Result<rustls::ServerConfig, RpError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.inner.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RpError::Keys(e.to_string()))?
            .with_client_cert_verifier(Arc::new(self.verifier(allowed)))
            .with_cert_resolver(Arc::new(Resolver(Arc::downgrade(&self.inner))));
        // No resumption: a resumed session skips the peer verifier, so a peer could keep
        // coming back under an SVID that has since expired or been withdrawn.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(cfg)
    }

    /// A rustls client configuration that presents the current SVID and accepts a server
    /// whose X.509-SVID chains to the current bundle and whose SPIFFE ID `allowed` accepts
    /// (host names play no part). Sessions are not resumed.
    pub fn client_config(&self, allowed: AllowedIds) -> Result<rustls::ClientConfig, RpError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.inner.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RpError::Keys(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self.verifier(allowed)))
            .with_client_cert_resolver(Arc::new(Resolver(Arc::downgrade(&self.inner))));
        // No resumption: every connection checks the server's current SVID afresh.
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(cfg)
    }

    /// A peer verifier (client or server role) on the source's current bundle.
    pub fn verifier(&self, allowed: AllowedIds) -> SourceVerifier {
        SourceVerifier {
            inner: Arc::downgrade(&self.inner),
            allowed,
            provider: self.inner.provider.clone(),
            cache: Mutex::new(None),
        }
    }
}

/// Follow the `FetchX509SVID` stream for as long as the source lives, reconnecting with
/// backoff.
async fn run(weak: Weak<Inner>, socket: PathBuf) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut client = workload_api::client(&socket);
        let res = client
            .fetch_x509svid(workload_api::request(proto::X509svidRequest {}))
            .await;
        let failure = match res {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(msg)) => {
                            let Some(inner) = weak.upgrade() else {
                                return;
                            };
                            match parse(&msg, &inner.provider) {
                                Ok(state) => {
                                    tracing::info!(
                                        id = %state.svid.spiffe_id,
                                        not_after = state.svid.not_after,
                                        "X.509-SVID updated"
                                    );
                                    set(&inner, Some(state), None);
                                    backoff = Duration::from_millis(200);
                                }
                                Err(e) => {
                                    tracing::warn!("unusable X.509-SVID update: {e}");
                                    set_error(&inner, tonic::Code::InvalidArgument, e);
                                }
                            }
                        }
                        Ok(None) => break (tonic::Code::Unavailable, "stream ended".to_string()),
                        Err(s) => break (s.code(), s.message().to_string()),
                    }
                }
            }
            Err(s) => (s.code(), s.message().to_string()),
        };
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if failure.0 == tonic::Code::PermissionDenied {
            // The agent withdrew the identity: stop presenting it.
            tracing::warn!("the Workload API refused an identity: {}", failure.1);
            set(&inner, None, Some(failure));
        } else {
            tracing::warn!("Workload API: {}; keeping the SVID held", failure.1);
            set_error(&inner, failure.0, failure.1);
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn set(inner: &Inner, state: Option<State>, error: Option<(tonic::Code, String)>) {
    *inner
        .state
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = state.map(Arc::new);
    if let Ok(mut e) = inner.last_error.lock() {
        *e = error;
    }
    inner.updates.send_modify(|n| *n += 1);
}

fn set_error(inner: &Inner, code: tonic::Code, m: impl std::fmt::Display) {
    if let Ok(mut e) = inner.last_error.lock() {
        *e = Some((code, m.to_string()));
    }
    inner.updates.send_modify(|n| *n += 1);
}

/// The first SVID of a `FetchX509SVID` message (the default identity, as go-spiffe picks),
/// checked: its chain parses, its leaf names the SPIFFE ID it is sent for, the key matches
/// the leaf, and the bundle holds at least one authority.
fn parse(msg: &proto::X509svidResponse, provider: &CryptoProvider) -> Result<State, RpError> {
    let first = msg
        .svids
        .first()
        .ok_or_else(|| wapi("the response holds no SVID"))?;
    let id = SpiffeId::parse(&first.spiffe_id).map_err(wapi)?;
    let chain = vouch_spiffe::split_der_certificates(&first.x509_svid).map_err(wapi)?;
    let leaf = chain.first().ok_or_else(|| wapi("empty x509_svid"))?;
    let named = vouch_spiffe::svid_spiffe_id(leaf).map_err(wapi)?;
    if named != id {
        return Err(wapi(format!("the SVID for {id} names {named}")));
    }
    let not_after = vouch_spiffe::not_after(leaf).map_err(wapi)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(first.x509_svid_key.clone()));
    let certified = CertifiedKey::from_der(
        chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect(),
        key,
        provider,
    )
    .map_err(|e| wapi(format!("SVID key: {e}")))?;
    let td: TrustDomain = id.trust_domain().clone();
    let bundle = TrustBundle::from_der(td, &first.bundle).map_err(wapi)?;
    if bundle.x509_authorities().is_empty() {
        return Err(wapi("the bundle holds no X.509 authority"));
    }
    Ok(State {
        svid: X509Svid {
            spiffe_id: id,
            chain,
            not_after,
            certified: Arc::new(certified),
        },
        bundle,
    })
}

/// Presents the source's current SVID (server and client role).
#[derive(Debug)]
struct Resolver(Weak<Inner>);

impl Resolver {
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let inner = self.0.upgrade()?;
        let state = inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(state.svid.certified.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A rustls peer verifier (both roles) that checks peers against an [`X509Source`]'s current
/// trust bundle and an allow list, following bundle rotations ([`X509Source::verifier`]).
#[derive(Debug)]
pub struct SourceVerifier {
    inner: Weak<Inner>,
    allowed: AllowedIds,
    provider: Arc<CryptoProvider>,
    /// The verifier built for the bundle last seen.
    cache: Mutex<Option<(TrustBundle, Arc<SpiffeVerifier>)>>,
}

impl SourceVerifier {
    fn current(&self) -> Result<Arc<SpiffeVerifier>, rustls::Error> {
        let no = || rustls::Error::General("no trust bundle held (no X.509-SVID)".into());
        let inner = self.inner.upgrade().ok_or_else(no)?;
        let state = inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(no)?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| rustls::Error::General("verifier cache poisoned".into()))?;
        if let Some((b, v)) = cache.as_ref()
            && *b == state.bundle
        {
            return Ok(v.clone());
        }
        let v = SpiffeVerifier::new(
            state.bundle.trust_domain(),
            state.bundle.x509_authorities(),
            self.allowed.clone(),
        )?;
        *cache = Some((state.bundle.clone(), v.clone()));
        Ok(v)
    }
}

impl ServerCertVerifier for SourceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for SourceVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A self-signed certificate naming `id`, and its key (PKCS#8).
    fn cert(id: &str) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let c = p.self_signed(&key).unwrap();
        (c.der().to_vec(), key.serialize_der())
    }

    fn msg(spiffe_id: &str, chain: &[u8], key: &[u8], bundle: &[u8]) -> proto::X509svidResponse {
        proto::X509svidResponse {
            svids: vec![proto::X509svid {
                spiffe_id: spiffe_id.into(),
                x509_svid: chain.to_vec(),
                x509_svid_key: key.to_vec(),
                bundle: bundle.to_vec(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: Default::default(),
        }
    }

    #[test]
    fn an_update_is_used_only_when_its_parts_agree() {
        let p = rustls::crypto::aws_lc_rs::default_provider();
        let (der, key) = cert("spiffe://td/a");
        let (_, other_key) = cert("spiffe://td/b");
        let ok = parse(&msg("spiffe://td/a", &der, &key, &der), &p).unwrap();
        assert_eq!(ok.svid.spiffe_id().to_string(), "spiffe://td/a");
        assert_eq!(ok.bundle.x509_authorities(), std::slice::from_ref(&der));

        let refused = |m: proto::X509svidResponse| match parse(&m, &p) {
            Err(RpError::WorkloadApi(e)) => e,
            other => panic!("accepted: {other:?}"),
        };
        // The response says one ID, the certificate names another.
        let e = refused(msg("spiffe://td/b", &der, &key, &der));
        assert!(e.contains("names spiffe://td/a"), "{e}");
        // The key is not the certificate's.
        let e = refused(msg("spiffe://td/a", &der, &other_key, &der));
        assert!(e.contains("key"), "{e}");
        // No authority in the bundle; a chain with a flipped byte; no SVID at all.
        refused(msg("spiffe://td/a", &der, &key, &[]));
        let mut bad = der.clone();
        bad[3] ^= 0x01;
        refused(msg("spiffe://td/a", &bad, &key, &der));
        refused(proto::X509svidResponse {
            svids: Vec::new(),
            ..msg("spiffe://td/a", &der, &key, &der)
        });
    }
}
