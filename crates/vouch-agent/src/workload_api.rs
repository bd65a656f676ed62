//! The SPIFFE Workload API over a Unix socket.
//!
//! A caller is identified by the kernel, not by anything it sends: the socket's peer
//! credentials (`SO_PEERCRED`) give its pid, uid and gid, and `/proc/<pid>/exe` its executable,
//! whose path and SHA-256 become the `unix:` selectors the verifier matches against
//! registration entries (with a container runtime configured, also the `container:` selectors
//! of the container the caller runs in: [`crate::ContainerAttestor`]). SVIDs are issued by the verifier, only while it holds the node's
//! workload affirming; the agent keeps each caller's SVIDs until half their lifetime, keeps
//! serving them while no verifier answers and they are still valid, and ends every stream with
//! `PermissionDenied` the moment the node's attestation stops being affirming.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::unix::UCred;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use vouch_core::ErrorKind;
use vouch_core::wire::{JwtSvidRequest, SvidRequest, jwt_svid_signing_input, svid_signing_input};
use vouch_evidence::AgentKey;
use vouch_identity::{JwtSvidValidator, SpiffeId, TrustDomain};

use crate::caller::Caller;
use crate::{AgentError, NodeStatus, VerifierClient};

/// The generated protocol types, client and server (`/SpiffeWorkloadAPI/...`), shared with
/// relying parties' Workload API clients through `vouch-spiffe`.
pub use vouch_spiffe::workload_api::proto;

use proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};

/// The metadata every Workload API call must carry (it stops browsers and proxies from
/// reaching the socket by accident).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
/// How often streams look for a changed bundle.
const BUNDLE_POLL: Duration = Duration::from_secs(30);
/// How long to wait before retrying a verifier that did not answer.
const RETRY: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `unix:` selectors of a caller: uid, gid, and (when the kernel gave a pid and the
/// process can be inspected) the executable's path and SHA-256.
pub fn caller_selectors(cred: &UCred) -> Vec<String> {
    let c = Caller::pin(cred.uid(), cred.gid(), cred.pid());
    c.selectors().unwrap_or_else(|_| {
        vec![
            format!("unix:uid:{}", cred.uid()),
            format!("unix:gid:{}", cred.gid()),
        ]
    })
}

/// The caller behind a Workload API connection, pinned when it was accepted (see
/// [`Caller`]); tonic puts it in every request's extensions.
#[derive(Debug, Clone)]
pub struct CallerInfo(Arc<Caller>);

/// X.509-SVIDs issued to one caller, with the key they certify.
#[derive(Debug, Clone, PartialEq, Eq)]
struct X509Set {
    /// (SPIFFE ID, leaf DER)
    svids: Vec<(String, Vec<u8>)>,
    key_pkcs8: Vec<u8>,
    bundle: Vec<u8>,
    /// Federated trust domains' authorities: trust domain SPIFFE ID → concatenated DER.
    federated: HashMap<String, Vec<u8>>,
    refresh_at: u64,
    expires_at: u64,
    /// The verifier's entry revision the agent knew when these were issued.
    entries_rev: u64,
}

impl X509Set {
    fn response(&self) -> proto::X509svidResponse {
        proto::X509svidResponse {
            svids: self
                .svids
                .iter()
                .map(|(id, der)| proto::X509svid {
                    spiffe_id: id.clone(),
                    x509_svid: der.clone(),
                    x509_svid_key: self.key_pkcs8.clone(),
                    bundle: self.bundle.clone(),
                    hint: String::new(),
                })
                .collect(),
            crl: Vec::new(),
            federated_bundles: self.federated.clone(),
        }
    }
}

/// The trust domain's bundle, as the verifier serves it.
#[derive(Debug, Clone, PartialEq)]
struct Bundle {
    /// Concatenated DER of the X.509 authorities.
    x509: Vec<u8>,
    /// JWKS of the JWT-SVID keys.
    jwt: serde_json::Value,
    /// Federated trust domains: SPIFFE ID → (concatenated DER, JWKS).
    federated: Vec<(String, Vec<u8>, serde_json::Value)>,
}

/// Obtains identities for callers from the verifier on behalf of this node.
#[derive(Debug, Clone)]
pub struct IdentitySource {
    key: Arc<AgentKey>,
    key_id: String,
    workload: String,
    /// Declared workloads a caller may belong to: (name, the selectors a caller must all
    /// carry), in order; a caller matching none is the node's workload.
    workloads: Arc<Vec<(String, Vec<String>)>>,
    /// The latest status of each declared workload.
    workload_status: Option<watch::Receiver<std::collections::BTreeMap<String, NodeStatus>>>,
    clients: Arc<Vec<VerifierClient>>,
    trust_domain: TrustDomain,
    status: watch::Receiver<NodeStatus>,
    entries: watch::Receiver<u64>,
    cache: Arc<Mutex<HashMap<Vec<String>, X509Set>>>,
    containers: Option<Arc<crate::ContainerAttestor>>,
    k8s: Option<Arc<crate::K8sAttestor>>,
    /// Where requests, connections and the SVIDs held are counted.
    metrics: Arc<crate::AgentMetrics>,
}

fn refusal(e: AgentError) -> Status {
    match e.kind() {
        Some(ErrorKind::NoIdentity) => {
            Status::permission_denied(format!("no identity issued: {e}"))
        }
        // The workload or node is not trusted (any more): not attested affirming, or its
        // agent key revoked or unknown.
        Some(ErrorKind::NotAttested | ErrorKind::UnknownKey | ErrorKind::EvidenceSignature) => {
            Status::permission_denied(e.to_string())
        }
        Some(k) if k.is_retryable() => Status::unavailable(e.to_string()),
        Some(_) => Status::internal(e.to_string()),
        None => Status::unavailable(e.to_string()),
    }
}

impl IdentitySource {
    /// A source for the node enrolled with `key`/`key_id`, whose attested workload is
    /// `workload`, asking `clients` in order. `entries` carries the verifier's
    /// registration-entry revision from each attestation: when it moves, cached SVIDs are
    /// issued again and open streams updated.
    pub fn new(
        key: Arc<AgentKey>,
        key_id: String,
        workload: String,
        clients: Vec<VerifierClient>,
        trust_domain: &str,
        status: watch::Receiver<NodeStatus>,
        entries: watch::Receiver<u64>,
    ) -> Result<Self, AgentError> {
        let trust_domain = TrustDomain::parse(trust_domain)
            .map_err(|e| AgentError::Config(format!("trust_domain: {e}")))?;
        Ok(Self {
            key,
            key_id,
            workload,
            workloads: Arc::new(Vec::new()),
            workload_status: None,
            clients: Arc::new(clients),
            trust_domain,
            status,
            entries,
            cache: Arc::new(Mutex::new(HashMap::new())),
            containers: None,
            k8s: None,
            metrics: Arc::default(),
        })
    }

    /// Count requests and connections into `metrics`, which also reads the SVIDs held (their
    /// number and the soonest expiry) from this source's cache when scraped.
    pub fn with_metrics(mut self, metrics: Arc<crate::AgentMetrics>) -> Self {
        let cache = Arc::downgrade(&self.cache);
        metrics.watch_svids(Box::new(move || {
            let cache = cache.upgrade()?;
            let held = cache.lock().ok()?;
            let n = held.values().map(|s| s.svids.len()).sum();
            held.values().map(|s| s.expires_at).min().map(|e| (e, n))
        }));
        self.metrics = metrics;
        self
    }

    /// Give callers `container:` selectors from the runtime `cfg` names (none when `None`).
    pub fn with_containers(mut self, cfg: Option<&crate::ContainerConfig>) -> Self {
        self.containers = cfg.map(|c| Arc::new(crate::ContainerAttestor::new(c.clone())));
        self
    }

    /// Declared workloads, each with the selectors a caller must all carry to be that
    /// workload (its SVIDs then need that workload's own attestation affirming at the
    /// verifier); the first that matches wins, a caller matching none is the node's workload.
    /// `status` carries each declared workload's latest status (see
    /// `Agent::workload_status`): while a caller's workload is not affirming, it gets nothing.
    pub fn with_workloads(
        mut self,
        workloads: Vec<(String, Vec<String>)>,
        status: watch::Receiver<std::collections::BTreeMap<String, NodeStatus>>,
    ) -> Self {
        self.workloads = Arc::new(workloads);
        self.workload_status = Some(status);
        self
    }

    /// For a caller that is a declared workload: `Unavailable` before that workload's first
    /// attestation, `PermissionDenied` while it is not affirming (checked before any cached
    /// SVID is served, as the node's status is).
    fn workload_ok(&self, selectors: &[String]) -> Result<(), Status> {
        let name = self.workload_for(selectors);
        if name == self.workload {
            return Ok(());
        }
        let Some(st) = &self.workload_status else {
            return Ok(());
        };
        match st.borrow().get(name) {
            Some(NodeStatus::Affirming) => Ok(()),
            None | Some(NodeStatus::Unattested) => Err(Status::unavailable(format!(
                "workload {name} has not been attested yet; retry shortly"
            ))),
            Some(NodeStatus::Refused(why)) => Err(Status::permission_denied(format!(
                "workload {name} gets no identities: {}",
                why.replace("the node's attestation", "its attestation")
            ))),
        }
    }

    /// The workload a caller with `selectors` is: the first declared workload whose
    /// selectors it all carries (and that declares any), else the node's.
    pub fn workload_for(&self, selectors: &[String]) -> &str {
        self.workloads
            .iter()
            .find(|(_, want)| !want.is_empty() && want.iter().all(|w| selectors.contains(w)))
            .map(|(name, _)| name.as_str())
            .unwrap_or(&self.workload)
    }

    /// Give callers `k8s:` selectors from the kubelet `cfg` names (none when `None`).
    pub fn with_k8s(mut self, cfg: Option<&crate::K8sConfig>) -> Result<Self, AgentError> {
        self.k8s = match cfg {
            Some(c) => Some(Arc::new(
                crate::K8sAttestor::new(c.clone())
                    .map_err(|e| AgentError::Config(e.to_string()))?,
            )),
            None => None,
        };
        Ok(self)
    }

    /// `Unavailable` before the first attestation, `PermissionDenied` while the node is not
    /// affirming.
    fn node_ok(&self) -> Result<(), Status> {
        match &*self.status.borrow() {
            NodeStatus::Affirming => Ok(()),
            NodeStatus::Unattested => Err(Status::unavailable(
                "this agent has not attested its node yet; retry shortly",
            )),
            NodeStatus::Refused(why) => Err(Status::permission_denied(format!(
                "this node gets no identities: {why}"
            ))),
        }
    }

    async fn each_client<T, F, Fut>(&self, f: F) -> Result<T, AgentError>
    where
        F: Fn(VerifierClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentError>>,
    {
        let mut last = None;
        for c in self.clients.iter() {
            match f(c.clone()).await {
                Err(e) if crate::agent::failover_worthy(&e) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| AgentError::Config("no verifier configured".into())))
    }

    /// The caller's X.509-SVIDs: from the cache until half their lifetime, then newly issued
    /// (with a new key). While no verifier answers, still-valid SVIDs keep being served.
    async fn x509(&self, selectors: &[String]) -> Result<X509Set, Status> {
        self.node_ok()?;
        if let Err(e) = self.workload_ok(selectors) {
            if let Ok(mut c) = self.cache.lock() {
                c.remove(selectors);
            }
            return Err(e);
        }
        let now = unix_now();
        let cached = self
            .cache
            .lock()
            .map_err(|_| Status::internal("cache poisoned"))?
            .get(selectors)
            .cloned();
        if let Some(c) = &cached
            && now < c.refresh_at
            && c.entries_rev == *self.entries.borrow()
        {
            return Ok(c.clone());
        }
        match self.issue_x509(selectors, now).await {
            Ok(set) => {
                self.cache
                    .lock()
                    .map_err(|_| Status::internal("cache poisoned"))?
                    .insert(selectors.to_vec(), set.clone());
                Ok(set)
            }
            // No verifier reachable, or none able to answer for now (a 503 while its store
            // fails over): keep serving what is still valid.
            Err(e) if crate::agent::failover_worthy(&e) => match cached {
                Some(c) if now < c.expires_at => {
                    tracing::warn!("{e}; serving the cached SVIDs until they expire");
                    Ok(c)
                }
                _ => Err(refusal(e)),
            },
            Err(e) => {
                // The verifier withdrew the identity: forget it.
                if let Ok(mut c) = self.cache.lock() {
                    c.remove(selectors);
                }
                Err(refusal(e))
            }
        }
    }

    async fn issue_x509(&self, selectors: &[String], now: u64) -> Result<X509Set, AgentError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AgentError::Config(format!("generating an SVID key: {e}")))?;
        let public_key =
            URL_SAFE_NO_PAD.encode(rcgen::PublicKeyData::subject_public_key_info(&key));
        let workload = self.workload_for(selectors);
        let signature = self.key.sign_b64(&svid_signing_input(
            &self.key_id,
            workload,
            &public_key,
            selectors,
        ));
        let req = SvidRequest {
            key_id: self.key_id.clone(),
            workload: workload.to_string(),
            public_key,
            selectors: selectors.to_vec(),
            signature,
        };
        let resp = self
            .each_client(|c| {
                let req = req.clone();
                async move { c.svid(&req).await }
            })
            .await?;
        let mut svids = Vec::new();
        let mut expires_at = u64::MAX;
        for s in &resp.svids {
            let id = SpiffeId::parse(&s.spiffe_id)
                .map_err(|e| AgentError::Protocol(format!("SVID for {}: {e}", s.spiffe_id)))?;
            if id.trust_domain() != &self.trust_domain {
                return Err(AgentError::Protocol(format!(
                    "the verifier issued {id}, outside trust domain {}",
                    self.trust_domain
                )));
            }
            let der = URL_SAFE_NO_PAD
                .decode(&s.x509_svid)
                .map_err(|_| AgentError::Protocol("x509_svid is not base64url".into()))?;
            expires_at = expires_at.min(s.expires_at);
            svids.push((id.to_string(), der));
        }
        let mut bundle = Vec::new();
        for b in &resp.bundle {
            bundle.extend(
                URL_SAFE_NO_PAD
                    .decode(b)
                    .map_err(|_| AgentError::Protocol("bundle is not base64url".into()))?,
            );
        }
        let mut federated = HashMap::new();
        for (td, certs) in &resp.federated_bundles {
            let mut der = Vec::new();
            for c in certs {
                der.extend(URL_SAFE_NO_PAD.decode(c).map_err(|_| {
                    AgentError::Protocol("federated bundle is not base64url".into())
                })?);
            }
            federated.insert(td.clone(), der);
        }
        let lifetime = expires_at.saturating_sub(now);
        Ok(X509Set {
            svids,
            key_pkcs8: key.serialize_der(),
            bundle,
            federated,
            refresh_at: now + lifetime / 2,
            expires_at,
            entries_rev: *self.entries.borrow(),
        })
    }

    async fn bundle(&self) -> Result<Bundle, Status> {
        let jwks = self
            .each_client(|c| async move { c.bundle().await })
            .await
            .map_err(refusal)?;
        let mut x509 = Vec::new();
        let mut jwt = Vec::new();
        for k in jwks["keys"].as_array().into_iter().flatten() {
            match k["use"].as_str() {
                Some("x509-svid") => {
                    for c in k["x5c"].as_array().into_iter().flatten() {
                        let der = c
                            .as_str()
                            .and_then(|c| STANDARD.decode(c).ok())
                            .ok_or_else(|| Status::internal("bundle x5c is not base64"))?;
                        x509.extend(der);
                    }
                }
                Some("jwt-svid") => jwt.push(k.clone()),
                _ => {}
            }
        }
        let mut federated = Vec::new();
        let fed = self
            .each_client(|c| async move { c.federation().await })
            .await
            .map_err(refusal)?;
        for (td, b) in fed.as_object().into_iter().flatten() {
            let mut der = Vec::new();
            for c in b["x509"].as_array().into_iter().flatten() {
                der.extend(
                    c.as_str()
                        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
                        .ok_or_else(|| Status::internal("federated bundle is not base64url"))?,
                );
            }
            federated.push((td.clone(), der, b["jwks"].clone()));
        }
        Ok(Bundle {
            x509,
            jwt: serde_json::json!({ "keys": jwt }),
            federated,
        })
    }

    async fn jwt(
        &self,
        selectors: &[String],
        audience: Vec<String>,
    ) -> Result<Vec<vouch_core::wire::IssuedJwtSvid>, Status> {
        self.node_ok()?;
        self.workload_ok(selectors)?;
        // Signed afresh for every verifier tried: each request carries its own time and
        // random jti, which the verifier uses up (no extra round trip for a challenge).
        self.each_client(|c| {
            let req = self.jwt_request(selectors, &audience);
            async move { c.jwt_svid(&req?).await }
        })
        .await
        .map_err(refusal)
    }

    /// A signed JWT-SVID request dated now, with a random jti.
    fn jwt_request(
        &self,
        selectors: &[String],
        audience: &[String],
    ) -> Result<JwtSvidRequest, AgentError> {
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| AgentError::Config("no randomness for a JWT-SVID request id".into()))?;
        let jti = URL_SAFE_NO_PAD.encode(random);
        let iat = unix_now();
        let workload = self.workload_for(selectors);
        let signature = self.key.sign_b64(&jwt_svid_signing_input(
            &self.key_id,
            workload,
            audience,
            selectors,
            iat,
            &jti,
        ));
        Ok(JwtSvidRequest {
            key_id: self.key_id.clone(),
            workload: workload.to_string(),
            audience: audience.to_vec(),
            selectors: selectors.to_vec(),
            iat,
            jti,
            signature,
        })
    }
}

/// The Workload API service.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    src: IdentitySource,
}

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl WorkloadApi {
    /// A stream of the trust bundles, rendered by `msg`: the first message at once, then one
    /// whenever the bundles change (polled every [`BUNDLE_POLL`]).
    async fn bundle_stream<T, F>(&self, msg: F) -> Result<Stream2<T>, Status>
    where
        T: Clone + PartialEq + Send + Sync + 'static,
        F: Fn(Bundle) -> T + Clone + Send + Sync + 'static,
    {
        let first = msg(self.src.bundle().await?);
        let src = self.src.clone();
        Ok(spawn_stream(
            first,
            move || {
                let src = src.clone();
                let msg = msg.clone();
                async move { Ok((msg(src.bundle().await?), BUNDLE_POLL)) }
            },
            self.src.status.clone(),
            self.src.entries.clone(),
        ))
    }
}

fn check_header<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get(SECURITY_HEADER).map(|v| v.to_str()) {
        Some(Ok("true")) => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "security header missing from request: {SECURITY_HEADER}: true"
        ))),
    }
}

fn caller_of<T>(req: &Request<T>) -> Result<Arc<Caller>, Status> {
    req.extensions()
        .get::<CallerInfo>()
        .map(|c| c.0.clone())
        .ok_or_else(|| {
            Status::permission_denied("the caller's credentials are unknown (not a Unix socket)")
        })
}

/// The caller's selectors, after checking it is still the process that connected (the
/// secret socket's callers' too).
pub(crate) async fn selectors(
    src: &IdentitySource,
    caller: &Caller,
) -> Result<Vec<String>, Status> {
    let mut out = caller.selectors().map_err(|e| {
        tracing::warn!("Workload API: {e}; nothing issued");
        Status::permission_denied(format!("{e}: reconnect"))
    })?;
    if let Some(c) = &src.containers {
        out.extend(crate::container::caller_selectors(c, caller).await?);
    }
    if let Some(k) = &src.k8s {
        out.extend(crate::k8s::caller_selectors(k, caller).await?);
    }
    Ok(out)
}

fn json_to_struct(v: &serde_json::Value) -> prost_types::Struct {
    fn value(v: &serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(*b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Kind::StringValue(s.clone()),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(value).collect(),
            }),
            serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(v)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    prost_types::Struct {
        fields: v
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), value(v))).collect())
            .unwrap_or_default(),
    }
}

/// Send `first`, then run `next` at its refresh time, when the node's status changes or when
/// the verifier's registration entries changed, forwarding what changed, until the caller goes
/// away or `next` fails (the failure is the stream's last message).
fn spawn_stream<T, F, Fut>(
    first: T,
    mut next: F,
    mut status: watch::Receiver<NodeStatus>,
    mut entries: watch::Receiver<u64>,
) -> Stream2<T>
where
    T: Clone + PartialEq + Send + Sync + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(T, Duration), Status>> + Send,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last = first.clone();
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut wait = Duration::from_secs(0);
        loop {
            if !wait.is_zero() {
                // Wake at the refresh time, or at once when the node's status changes.
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(wait) => {}
                    r = status.changed() => {
                        if r.is_err() {
                            return;
                        }
                    }
                    r = entries.changed() => {
                        if r.is_err() {
                            return;
                        }
                    }
                }
            }
            match next().await {
                Ok((msg, again)) => {
                    if msg != last {
                        last = msg.clone();
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    wait = again.max(Duration::from_secs(1));
                }
                Err(s) if s.code() == tonic::Code::Unavailable => wait = RETRY,
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = Stream2<proto::X509svidResponse>;
    type FetchX509BundlesStream = Stream2<proto::X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream2<proto::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<proto::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let r = self.fetch_x509svid_inner(req).await;
        self.src
            .metrics
            .rpc("FetchX509SVID", r.as_ref().err().map(Status::code));
        r
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<proto::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let r = self.fetch_x509_bundles_inner(req).await;
        self.src
            .metrics
            .rpc("FetchX509Bundles", r.as_ref().err().map(Status::code));
        r
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<proto::JwtsvidRequest>,
    ) -> Result<Response<proto::JwtsvidResponse>, Status> {
        let r = self.fetch_jwtsvid_inner(req).await;
        self.src
            .metrics
            .rpc("FetchJWTSVID", r.as_ref().err().map(Status::code));
        r
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<proto::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let r = self.fetch_jwt_bundles_inner(req).await;
        self.src
            .metrics
            .rpc("FetchJWTBundles", r.as_ref().err().map(Status::code));
        r
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<proto::ValidateJwtsvidRequest>,
    ) -> Result<Response<proto::ValidateJwtsvidResponse>, Status> {
        let r = self.validate_jwtsvid_inner(req).await;
        self.src
            .metrics
            .rpc("ValidateJWTSVID", r.as_ref().err().map(Status::code));
        r
    }
}

impl WorkloadApi {
    async fn fetch_x509svid_inner(
        &self,
        req: Request<proto::X509svidRequest>,
    ) -> Result<Response<Stream2<proto::X509svidResponse>>, Status> {
        check_header(&req)?;
        let caller = caller_of(&req)?;
        let sel = selectors(&self.src, &caller).await?;
        let first = self.src.x509(&sel).await?;
        // Issued for the process that connected: it must still be that process to get them.
        selectors(&self.src, &caller).await?;
        tracing::info!(selectors = ?sel, svids = first.svids.len(), "X.509-SVIDs served");
        let src = self.src.clone();
        let refresh = |s: &X509Set| Duration::from_secs(s.refresh_at.saturating_sub(unix_now()));
        let status = self.src.status.clone();
        let entries = self.src.entries.clone();
        let stream = spawn_stream(
            first.response(),
            move || {
                let src = src.clone();
                let caller = caller.clone();
                async move {
                    let set = src.x509(&selectors(&src, &caller).await?).await?;
                    selectors(&src, &caller).await?;
                    Ok((set.response(), refresh(&set)))
                }
            },
            status,
            entries,
        );
        Ok(Response::new(stream))
    }

    async fn fetch_x509_bundles_inner(
        &self,
        req: Request<proto::X509BundlesRequest>,
    ) -> Result<Response<Stream2<proto::X509BundlesResponse>>, Status> {
        check_header(&req)?;
        let td = self.src.trust_domain.id_string();
        let msg = move |b: Bundle| proto::X509BundlesResponse {
            crl: Vec::new(),
            bundles: std::iter::once((td.clone(), b.x509))
                .chain(b.federated.into_iter().map(|(t, der, _)| (t, der)))
                .collect(),
        };
        Ok(Response::new(self.bundle_stream(msg).await?))
    }

    async fn fetch_jwtsvid_inner(
        &self,
        req: Request<proto::JwtsvidRequest>,
    ) -> Result<Response<proto::JwtsvidResponse>, Status> {
        check_header(&req)?;
        let caller = caller_of(&req)?;
        let sel = selectors(&self.src, &caller).await?;
        let r = req.into_inner();
        if r.audience.is_empty() || r.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if !r.spiffe_id.is_empty() {
            SpiffeId::parse(&r.spiffe_id)
                .map_err(|e| Status::invalid_argument(format!("spiffe_id: {e}")))?;
        }
        let issued = self.src.jwt(&sel, r.audience).await?;
        selectors(&self.src, &caller).await?;
        let svids: Vec<proto::Jwtsvid> = issued
            .into_iter()
            .filter(|s| r.spiffe_id.is_empty() || s.spiffe_id == r.spiffe_id)
            .map(|s| proto::Jwtsvid {
                spiffe_id: s.spiffe_id,
                svid: s.token,
                hint: String::new(),
            })
            .collect();
        if svids.is_empty() {
            return Err(Status::permission_denied(format!(
                "no identity issued for {}",
                r.spiffe_id
            )));
        }
        Ok(Response::new(proto::JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles_inner(
        &self,
        req: Request<proto::JwtBundlesRequest>,
    ) -> Result<Response<Stream2<proto::JwtBundlesResponse>>, Status> {
        check_header(&req)?;
        let td = self.src.trust_domain.id_string();
        let msg = move |b: Bundle| proto::JwtBundlesResponse {
            bundles: std::iter::once((td.clone(), b.jwt.to_string().into_bytes()))
                .chain(
                    b.federated
                        .into_iter()
                        .map(|(t, _, jwks)| (t, jwks.to_string().into_bytes())),
                )
                .collect(),
        };
        Ok(Response::new(self.bundle_stream(msg).await?))
    }

    async fn validate_jwtsvid_inner(
        &self,
        req: Request<proto::ValidateJwtsvidRequest>,
    ) -> Result<Response<proto::ValidateJwtsvidResponse>, Status> {
        check_header(&req)?;
        let r = req.into_inner();
        if r.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if r.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        // The token's claims as they were signed; `sub` names the trust domain whose JWT
        // bundle must verify it (this one, or a federated one).
        let claims = r
            .svid
            .split('.')
            .nth(1)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
            .ok_or_else(|| {
                Status::invalid_argument("svid is not a compact JWS with JSON claims")
            })?;
        let td = claims["sub"]
            .as_str()
            .and_then(|s| SpiffeId::parse(s).ok())
            .map(|id| id.trust_domain().clone())
            .ok_or_else(|| Status::invalid_argument("svid has no SPIFFE ID in sub"))?;
        let bundle = self.src.bundle().await?;
        let jwks = if td == self.src.trust_domain {
            bundle.jwt
        } else {
            bundle
                .federated
                .into_iter()
                .find(|(t, _, _)| *t == td.id_string())
                .map(|(_, _, jwks)| jwks)
                .ok_or_else(|| {
                    Status::invalid_argument(format!("no JWT bundle for trust domain {td}"))
                })?
        };
        let validator = JwtSvidValidator::from_bundle(&td, &jwks)
            .map_err(|e| Status::internal(e.to_string()))?;
        let (id, _) = validator
            .validate(&r.svid, &r.audience, unix_now())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(proto::ValidateJwtsvidResponse {
            spiffe_id: id.to_string(),
            claims: Some(json_to_struct(&claims)),
        }))
    }
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, AgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| AgentError::Io { what, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing the stale socket")(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(io("setting permissions of"))?;
    tracing::info!(
        "SPIFFE Workload API listening: SPIFFE_ENDPOINT_SOCKET=unix://{}",
        path.display()
    );
    Ok(listener)
}

/// Limits of the Workload API socket: connections in all and per caller uid (0: no limit), and
/// how long a connection may make no progress (HTTP/2 keep-alive pings, sent at a quarter of
/// it, keep a quiet but live stream open: the caller's answers count as progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadApiLimits {
    /// Most connections held at once.
    pub max_connections: usize,
    /// Most connections held at once by processes of one uid.
    pub max_connections_per_uid: usize,
    /// How long a connection may make no progress before it is closed.
    pub idle_timeout: Duration,
}

impl Default for WorkloadApiLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_uid: 128,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A caller's connection: the socket, watched for stalls, holding its slot, and the process
/// pinned when it was accepted.
struct CallerConn(vouch_net::Guarded<tokio::net::UnixStream>, Arc<Caller>);

impl tonic::transport::server::Connected for CallerConn {
    type ConnectInfo = CallerInfo;

    fn connect_info(&self) -> CallerInfo {
        CallerInfo(self.1.clone())
    }
}

impl tokio::io::AsyncRead for CallerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CallerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Accepted callers, each given a slot by uid (a caller over its uid's share, or past the
/// total, is closed at once), as the stream tonic serves.
struct Callers {
    listener: tokio::net::UnixListener,
    limiter: vouch_net::ConnLimiter<u32>,
    idle: Duration,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    refused_logged: Option<std::time::Instant>,
    metrics: Arc<crate::AgentMetrics>,
}

impl Stream for Callers {
    type Item = Result<CallerConn, std::io::Error>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(p) = &mut this.pause {
                if p.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            let stream = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((s, _))) => s,
                Poll::Ready(Err(e)) if vouch_net::is_resource_exhaustion(&e) => {
                    tracing::warn!("Workload API: accepting a connection: {e}; pausing 100 ms");
                    this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(100))));
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!("Workload API: accepting a connection: {e}");
                    continue;
                }
            };
            let Ok(cred) = stream.peer_cred() else {
                tracing::debug!("Workload API: a caller without credentials; closed");
                continue;
            };
            match this.limiter.try_acquire(cred.uid()) {
                Ok(permit) => {
                    this.metrics.connection(true);
                    // Pinned now, at accept: what the caller is from here on is checked
                    // against this before every issuance.
                    let caller = Caller::pin(cred.uid(), cred.gid(), cred.pid());
                    let io = vouch_net::Guarded::new(stream, Some(this.idle)).holding(permit);
                    return Poll::Ready(Some(Ok(CallerConn(io, Arc::new(caller)))));
                }
                Err(why) => {
                    this.metrics.connection(false);
                    if this
                        .refused_logged
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                    {
                        this.refused_logged = Some(std::time::Instant::now());
                        tracing::warn!(uid = cred.uid(), "Workload API connection refused: {why}");
                    }
                }
            }
        }
    }
}

async fn serve(
    src: IdentitySource,
    listener: tokio::net::UnixListener,
    limits: WorkloadApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let idle = limits.idle_timeout.max(Duration::from_secs(4));
    let callers = Callers {
        listener,
        limiter: vouch_net::ConnLimiter::new(
            limits.max_connections,
            limits.max_connections_per_uid,
        ),
        idle,
        pause: None,
        refused_logged: None,
        metrics: src.metrics.clone(),
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(idle / 4))
        .http2_keepalive_timeout(Some(idle / 4))
        .max_concurrent_streams(Some(64))
        .http2_max_header_list_size(Some(16 * 1024))
        .http2_max_pending_accept_reset_streams(Some(32))
        .timeout(Duration::from_secs(60))
        .add_service(SpiffeWorkloadApiServer::new(WorkloadApi { src }))
        .serve_with_incoming_shutdown(callers, shutdown)
        .await
        .map_err(|e| AgentError::Config(format!("Workload API server: {e}")))
}

/// Serve the Workload API on the Unix socket at `path` (replacing a stale socket file) until
/// `shutdown` resolves. The socket is world-connectable: what a caller receives depends only
/// on its kernel-reported credentials and the registration entries.
pub async fn serve_workload_api(
    src: IdentitySource,
    path: &Path,
    limits: WorkloadApiLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    serve(src, bind(path)?, limits, shutdown).await
}

/// A Workload API served in the background; stopped by [`WorkloadApiHandle::stop`] or when
/// dropped.
#[derive(Debug)]
pub struct WorkloadApiHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AgentError>>>,
}

impl WorkloadApiHandle {
    /// Stop serving and wait for the server to finish.
    pub async fn stop(mut self) -> Result<(), AgentError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t
                .await
                .map_err(|e| AgentError::Config(format!("Workload API task: {e}")))?,
            None => Ok(()),
        }
    }
}

impl Drop for WorkloadApiHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Bind the socket at `path` now (so callers can connect as soon as this returns) and serve
/// the Workload API in the background.
pub fn spawn_workload_api(
    src: IdentitySource,
    path: &Path,
) -> Result<WorkloadApiHandle, AgentError> {
    spawn_workload_api_with(src, path, WorkloadApiLimits::default())
}

/// [`spawn_workload_api`] with its limits.
pub fn spawn_workload_api_with(
    src: IdentitySource,
    path: &Path,
    limits: WorkloadApiLimits,
) -> Result<WorkloadApiHandle, AgentError> {
    let listener = bind(path)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(src, listener, limits, async {
        let _ = stopped.await;
    }));
    Ok(WorkloadApiHandle {
        stop: Some(stop),
        task: Some(task),
    })
}

/// A Workload API client over the Unix socket at `path` (for `vouch` subcommands and tests;
/// workloads use any SPIFFE client library).
pub async fn connect(
    path: &Path,
) -> Result<
    proto::spiffe_workload_api_client::SpiffeWorkloadApiClient<tonic::transport::Channel>,
    AgentError,
> {
    Ok(proto::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel(path).await?))
}

/// A gRPC channel to the Unix socket at `path`.
pub async fn channel(path: &Path) -> Result<tonic::transport::Channel, AgentError> {
    let path = path.to_path_buf();
    // The URI is required by the HTTP/2 layer and ignored by the connector.
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .map_err(|e| AgentError::Config(format!("connecting to the Workload API: {e}")))?;
    Ok(channel)
}

/// A request carrying the Workload API security header.
pub fn request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    r
}
