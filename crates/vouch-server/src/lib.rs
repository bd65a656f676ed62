//! The Vouch verifier.
//!
//! `vouch server` runs [`start`]: an HTTP/JSON API (axum) over TLS (rustls with aws-lc-rs) that
//! issues nonces, enrolls agent keys with one-time join tokens, verifies evidence, appraises
//! claims against the active Rego policy and reference values, signs an EAR, records the
//! attestation durably, and publishes its result keys as a JWKS. A background sweeper marks
//! workloads that stop attesting as contraindicated.
//!
//! Errors become HTTP responses in exactly one place ([`ApiError`]'s `IntoResponse`), always
//! as `{"error": {"kind": "<stable kind>", "message": "..."}}`.
#![deny(missing_docs)]

mod admin;
mod admission;
mod anomaly;
mod audit;
mod auth;
mod config;
mod dashboard;
mod entries;
mod error;
mod federation;
mod images;
mod keys;
mod listener;
mod node;
pub mod quorum;
mod revocation;
mod routes;
mod secrets;
mod state;
mod svid;
mod telemetry;
mod timestamp;
mod tpm;
mod tpm_join;

pub use admission::AdmissionSettings;
pub use anomaly::{AnomalyBench, bench_anomalies};
pub use auth::{
    API_TOKENS_FILE, ApiTokenFile, ApiTokenRecord, DEFAULT_TENANT, Role, add_api_token,
    mint_api_token, read_token_file, valid_tenant_name,
};
pub use config::{GossipSettings, ServerConfig, SigningAlg, TenantConfig};
pub use entries::sign_entries_request;
pub use error::ApiError;
pub use federation::{FederatedBundle, FederatedDomain, parse_bundle};
pub use images::{ImageSignatureSettings, ImageSignatures, KeylessSigner};
pub use keys::{
    KeyError, Keyring, TlsFiles, ensure_dev_tls, load_or_create_nonce_key, random_bytes,
};
pub use quorum::QuorumSettings;
pub use revocation::revoke_offline;
pub use routes::OPENAPI;
pub use state::unix_now;
pub use svid::issued_svid_record;
pub use telemetry::{TelemetryBench, bench_telemetry};
pub use timestamp::TIMESTAMP_TYP;
pub use tpm::allow_tpm_reenrollment;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vouch_policy::{DEFAULT_POLICY, DEFAULT_POLICY_ID};
use vouch_store::{SqliteStore, Store};

/// Why the verifier could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Key material could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] vouch_store::StoreError),
    /// Binding or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A verifier that is serving.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// `https://…` (or `http://…` with `insecure_http`).
    pub base_url: String,
    /// The CA certificate clients should trust, when the verifier generated its own.
    pub ca_cert: Option<PathBuf>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stop accepting connections, finish in-flight requests (up to 5 s), and return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for b in &self.background {
            b.abort();
        }
        let _ = self.task.await;
    }

    /// Serve until the server stops on its own (an I/O error).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r.map_err(|source| ServerError::Io {
                what: "serving".into(),
                source,
            }),
            Err(e) => Err(ServerError::Config(format!("server task failed: {e}"))),
        }
    }
}

/// Open the configured store, creating a new database's schema but never migrating an
/// existing one: a database with migrations still to apply is refused
/// ([`vouch_store::StoreError::SchemaOutdated`]) until [`open_store_with`] applies them
/// (`vouch server --migrate`, `vouch migrate`).
pub async fn open_store(cfg: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    open_store_with(cfg, vouch_store::Migrations::RefuseOutdated).await
}

/// Open the configured store, doing what `migrations` says about an older schema.
pub async fn open_store_with(
    cfg: &ServerConfig,
    migrations: vouch_store::Migrations,
) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &cfg.database_url {
        Some(url) => Arc::new(
            vouch_store::PgStore::connect_with_schema(
                url,
                vouch_store::WriteOptions::default(),
                migrations,
            )
            .await?,
        ),
        None => Arc::new(
            SqliteStore::open_with_schema(
                &cfg.database_path(),
                vouch_store::WriteOptions::default(),
                migrations,
            )
            .await?,
        ),
    })
}

/// Install the default policy when the store has no policy at all.
pub async fn ensure_default_policy(store: &dyn Store) -> Result<(), ServerError> {
    if store.policies().await?.is_empty() {
        let version = store
            .add_policy(DEFAULT_POLICY_ID, DEFAULT_POLICY, true, unix_now())
            .await?;
        let sha256 = <sha2::Sha256 as sha2::Digest>::digest(DEFAULT_POLICY.as_bytes());
        let event = vouch_store::AuditEvent {
            time: unix_now(),
            kind: "policy.add".into(),
            actor: "verifier".into(),
            subject: DEFAULT_POLICY_ID.into(),
            body: serde_json::json!({
                "version": version, "sha256": hex::encode(sha256), "active": true, "default": true,
            }),
        };
        store.append_audit(&event).await?;
        tracing::info!("installed the default policy as {DEFAULT_POLICY_ID} v1");
    } else if store.active_policy_id().await?.is_none() {
        store.activate_policy(DEFAULT_POLICY_ID).await.ok();
    }
    Ok(())
}

/// The listener's TLS configuration; with `client_ca` (`[admission] client_ca`) it asks each
/// client for a certificate, lets one that presents none through, and refuses one whose
/// certificate does not chain to `client_ca`.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<rustls::ServerConfig, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| ServerError::Config(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&format!("reading {}", cert.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&format!("parsing {}", cert.display()), &e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(&format!("reading {}", key.display()), &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let what = format!("[admission] client_ca {}", ca.display());
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&what, &e))? {
                roots
                    .add(c.map_err(|e| bad(&what, &e))?)
                    .map_err(|e| bad(&what, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(&what, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("TLS certificate", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Start a verifier on the configured SQLite store.
pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServerError> {
    let store = open_store(&cfg).await?;
    start_with_store(cfg, store).await
}

/// Start a verifier on `store`.
pub async fn start_with_store(
    cfg: ServerConfig,
    store: Arc<dyn Store>,
) -> Result<RunningServer, ServerError> {
    if cfg.insecure_http && !cfg.listen.ip().is_loopback() {
        return Err(ServerError::Config(format!(
            "insecure_http is only allowed on a loopback address, not {}; configure tls_cert and tls_key",
            cfg.listen
        )));
    }
    if cfg.audience.is_empty() || cfg.audience.len() > 255 {
        return Err(ServerError::Config("audience must be 1-255 bytes".into()));
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::Io {
        what: format!("creating data directory {}", cfg.data_dir.display()),
        source,
    })?;
    let admission = Arc::new(
        admission::Admission::new(
            cfg.admission.as_ref(),
            !cfg.insecure_http,
            cfg.image_signatures.as_ref().is_some_and(|s| s.provenance),
        )
        .map_err(ServerError::Config)?,
    );
    let client_ca = cfg.admission.as_ref().and_then(|a| a.client_ca.as_deref());
    let (tls, ca_cert) = if cfg.insecure_http {
        (None, None)
    } else {
        match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => (Some(tls_config(c, k, client_ca)?), None),
            (None, None) => {
                let files = ensure_dev_tls(&cfg.data_dir.join("tls"))?;
                (
                    Some(tls_config(&files.cert, &files.key, client_ca)?),
                    Some(files.ca_cert),
                )
            }
            _ => {
                return Err(ServerError::Config(
                    "set both tls_cert and tls_key, or neither".into(),
                ));
            }
        }
    };

    let listener = std::net::TcpListener::bind(cfg.listen).map_err(|source| ServerError::Io {
        what: format!("binding {}", cfg.listen),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "reading bound address".into(),
        source,
    })?;
    let tee_roots = match &cfg.tee_roots_dir {
        Some(dir) => {
            let mut roots = vouch_tee::TeeRoots::from_dir(dir)
                .map_err(|e| ServerError::Config(format!("tee_roots_dir: {e}")))?;
            if let Some(c) = &cfg.tee_collateral_dir {
                let fmspcs = roots
                    .add_store_dir(c)
                    .map_err(|e| ServerError::Config(format!("tee_collateral_dir: {e}")))?;
                tracing::info!(?fmspcs, "DCAP collateral loaded");
            }
            Some(roots)
        }
        None => None,
    };
    let main = start_tenant(&cfg, store, tee_roots.clone(), None).await?;
    let state = main.state.clone();
    let (td, federation_dir) = (main.td.clone(), main.federation_dir.clone());
    let mut background = main.background;
    let mut app = routes::router(state.clone());
    for tcfg in tenant_configs(&cfg)? {
        let tstore = open_store(&tcfg).await?;
        let t = start_tenant(
            &tcfg,
            tstore,
            tee_roots.clone(),
            Some(state.api_tokens.clone()),
        )
        .await?;
        tracing::info!(tenant = %t.state.tenant, trust_domain = %tcfg.trust_domain, "tenant served");
        app = app.nest(
            &format!("/t/{}", t.state.tenant),
            routes::router(t.state.clone()),
        );
        background.extend(t.background);
    }
    // The admission webhook's settings, for every tenant's route.
    let app = app.layer(axum::Extension(admission));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|source| ServerError::Io {
            what: "starting listener".into(),
            source,
        })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(listener::serve(
        listener,
        tls.map(|t| tokio_rustls::TlsAcceptor::from(Arc::new(t))),
        app,
        cfg.listener_limits(),
        state.clone(),
        stopped,
    ));

    let gossip = match &cfg.gossip {
        Some(g) => Some(start_gossip(&state, g, &td).await?),
        None => None,
    };
    tracing::info!(
        "verifier listening on {scheme}://{addr} (audience {})",
        cfg.audience
    );
    Ok(RunningServer {
        addr,
        base_url: format!("{scheme}://{addr}"),
        ca_cert,
        stop,
        task,
        background: {
            let mut b = background;
            if let Some((g, interval)) = &gossip {
                b.push(tokio::spawn(revocation::publish(
                    state.clone(),
                    g.clone(),
                    *interval,
                )));
            }
            for d in cfg.federation.clone() {
                b.push(tokio::spawn(federation::maintain(
                    state.clone(),
                    d,
                    federation_dir.clone(),
                )));
            }
            b
        },
    })
}

/// What one tenant's state needs running: its state and its background tasks.
struct TenantParts {
    state: Arc<state::State>,
    td: vouch_identity::TrustDomain,
    federation_dir: PathBuf,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Build the state of the tenant `cfg` serves on `store` (the default tenant's, or a
/// `[[tenants]]` entry's from [`tenant_configs`]) and start its background tasks: deadline
/// sweeper, key reload, entries poll. `api_tokens`: the table every tenant shares (`None`: the
/// default tenant reads it).
async fn start_tenant(
    cfg: &ServerConfig,
    store: Arc<dyn Store>,
    tee_roots: Option<vouch_tee::TeeRoots>,
    api_tokens: Option<Arc<auth::ApiTokens>>,
) -> Result<TenantParts, ServerError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServerError::Io {
        what: format!("creating data directory {}", cfg.data_dir.display()),
        source,
    })?;
    let keys_dir = cfg.data_dir.join("keys");
    let nonce_path = cfg
        .nonce_key
        .clone()
        .unwrap_or_else(|| keys_dir.join("nonce.key"));
    let nonce_key = load_or_create_nonce_key(&nonce_path)?;
    let keyring = Keyring::load_or_create(&keys_dir, cfg.signing_alg, unix_now())?;
    ensure_default_policy(store.as_ref()).await?;
    tpm::record_missing_ek_keys(store.as_ref()).await?;
    let mut state = state::State::new(
        cfg.clone(),
        store.clone(),
        vec![nonce_key],
        tee_roots,
        keyring,
        keys_dir.clone(),
    );
    if cfg.pq_signatures {
        let pq = keys::PqKey::load_or_create(&keys_dir)?;
        tracing::info!(kid = pq.kid(), "results co-signed with ML-DSA-65");
        state.pq_key = Some(Arc::new(pq));
    }
    state.admin_token = keys::load_or_create_admin_token(&keys_dir.join("admin.token"))?;
    state.read_token = keys::load_or_create_read_token(&keys_dir.join("read.token"))?;
    state.tenant = cfg.tenant_name().to_string();
    state.api_tokens = match api_tokens {
        Some(t) => t,
        None => Arc::new(
            auth::ApiTokens::open(keys_dir.join(API_TOKENS_FILE))
                .map_err(|e| ServerError::Config(e.message))?,
        ),
    };
    for (role, name, token) in [
        (Role::Admin, "admin-api", &state.admin_token),
        (Role::Auditor, "read-token", &state.read_token),
    ] {
        state.api_tokens.register(&state.tenant, role, name, token);
    }
    state.node_attestors = node::build(cfg).map_err(ServerError::Config)?;
    if let Some(dir) = &cfg.tpm_ca_dir {
        let trust = vouch_tpm::EkTrustStore::from_dir(dir)
            .map_err(|e| ServerError::Config(format!("tpm_ca_dir: {e}")))?;
        if trust.is_empty() {
            return Err(ServerError::Config(format!(
                "tpm_ca_dir {} holds no certificate",
                dir.display()
            )));
        }
        state.ek_trust = Some(trust);
    }
    let td = vouch_identity::TrustDomain::parse(&cfg.trust_domain)
        .map_err(|e| ServerError::Config(format!("trust_domain: {e}")))?;
    let ca = state::open_ca_set(cfg, &td, unix_now())
        .map_err(|e| ServerError::Config(format!("SPIFFE CA: {e}")))?;
    state.svid_ca = Some(std::sync::RwLock::new(ca));
    state.jwt_signer = Some(
        vouch_identity::JwtSvidSigner::load_or_create(&cfg.spiffe_dir().join("jwt.key"))
            .map_err(|e| ServerError::Config(format!("JWT-SVID key: {e}")))?,
    );
    if let Some(q) = &cfg.quorum {
        state.quorum = Some(
            quorum::Quorum::new(q.clone())
                .map_err(|e| ServerError::Config(format!("quorum: {e}")))?,
        );
    }
    let federation_dir = cfg.data_dir.join("spiffe/federated");
    if let Ok(mut m) = state.federated.write() {
        *m = federation::load_saved(&federation_dir, &cfg.federation);
    }
    if let Some(s) = &cfg.image_signatures {
        let images = Arc::new(images::ImageSignatures::new(s).map_err(ServerError::Config)?);
        tracing::info!(keys = ?images.key_ids(), "image signatures checked");
        state.verifier.set_image_hook(images.clone());
        state.images = Some(images);
    }
    let state = Arc::new(state);
    let anomaly_writer = state.anomalies.start(store.clone(), unix_now()).await?;
    state.verifier.set_anomaly_hook(state.anomalies.clone());
    // The registration-entry index is read once here, so the first SVID request does not
    // pay for it; a store that cannot answer is retried by the poller.
    let loading = std::time::Instant::now();
    match state.refresh_entries().await {
        Ok(revision) => tracing::info!(
            entries = state.entries_held(),
            revision,
            ms = loading.elapsed().as_millis() as u64,
            "registration entries loaded"
        ),
        Err(e) => tracing::warn!("registration entries not loaded at start: {}", e.message),
    }
    let sweeper = {
        let st = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match st.store.mark_overdue(unix_now(), st.cfg.clock_skew).await {
                    Ok(ids) => {
                        for id in ids {
                            st.metrics
                                .overdue
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(workload = %id, "missed its attestation deadline: contraindicated");
                        }
                    }
                    Err(e) => {
                        st.metrics.store_error();
                        tracing::error!("deadline sweep failed: {e}");
                    }
                }
                // Issued SVIDs past their notAfter (and the skew) can stamp nothing: forget
                // them, a bounded number a pass.
                let expired = unix_now().saturating_sub(st.cfg.clock_skew);
                if let Err(e) = st
                    .store
                    .prune_issued_svids(expired, ISSUED_SVIDS_PRUNED_PER_SWEEP)
                    .await
                {
                    st.metrics.store_error();
                    tracing::error!("issued SVIDs sweep failed: {e}");
                }
            }
        })
    };
    let key_watch = {
        let st = state.clone();
        let idx = keys_dir.join("signing.json");
        tokio::spawn(async move {
            let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let mut last = stamp(&idx);
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let now = stamp(&idx);
                if now != last {
                    last = now;
                    st.reload_keys();
                }
                // One table for every tenant: the default tenant's task re-reads it.
                if st.cfg.serving_tenant.is_some() {
                    continue;
                }
                if let Err(e) = st.api_tokens.reload() {
                    tracing::error!(
                        "scoped API tokens not reloaded, keeping the old ones: {}",
                        e.message
                    );
                }
            }
        })
    };
    let background = vec![
        sweeper,
        key_watch,
        anomaly_writer,
        tokio::spawn(entries::poll(state.clone(), Duration::from_secs(1))),
    ];
    Ok(TenantParts {
        state,
        td,
        federation_dir,
        background,
    })
}

/// Most expired issued-SVID rows the once-a-second sweeper deletes in one pass.
const ISSUED_SVIDS_PRUNED_PER_SWEEP: u32 = 1_000;

/// Open every `[[tenants]]` store of `cfg` as `migrations` says (`vouch server --migrate`,
/// `vouch migrate` apply pending migrations to each, as to the default tenant's); the stores'
/// descriptions.
pub async fn migrate_tenants(
    cfg: &ServerConfig,
    migrations: vouch_store::Migrations,
) -> Result<Vec<String>, ServerError> {
    let mut done = Vec::new();
    for tcfg in tenant_configs(cfg)? {
        std::fs::create_dir_all(&tcfg.data_dir).map_err(|source| ServerError::Io {
            what: format!("creating data directory {}", tcfg.data_dir.display()),
            source,
        })?;
        open_store_with(&tcfg, migrations).await?;
        done.push(match &tcfg.database_url {
            Some(_) => format!("tenant {}'s PostgreSQL store", tcfg.tenant_name()),
            None => format!(
                "tenant {}'s store {}",
                tcfg.tenant_name(),
                tcfg.database_path().display()
            ),
        });
    }
    Ok(done)
}

/// The configuration of each `[[tenants]]` entry of `cfg`: its own data directory
/// (`data_dir/tenants/<name>`: store, keys, SPIFFE CA), trust domain and database; no gossip,
/// quorum or federation (those serve the default tenant only). Refused: a bad or repeated
/// name, `default`, a trust domain another tenant has, a shared PostgreSQL database.
pub fn tenant_configs(cfg: &ServerConfig) -> Result<Vec<ServerConfig>, ServerError> {
    let mut names = std::collections::BTreeSet::new();
    let mut domains = std::collections::BTreeSet::from([cfg.trust_domain.clone()]);
    let mut urls: std::collections::BTreeSet<String> = cfg.database_url.iter().cloned().collect();
    let mut out = Vec::new();
    for t in &cfg.tenants {
        let bad = |why: String| ServerError::Config(format!("[[tenants]] {:?}: {why}", t.name));
        if !valid_tenant_name(&t.name) || t.name == DEFAULT_TENANT {
            return Err(bad(
                "a tenant name is 1-63 of a-z, 0-9 and -, starting with a letter, and not \
                 \"default\""
                    .into(),
            ));
        }
        if !names.insert(t.name.clone()) {
            return Err(bad("named twice".into()));
        }
        vouch_identity::TrustDomain::parse(&t.trust_domain)
            .map_err(|e| bad(format!("trust_domain: {e}")))?;
        if !domains.insert(t.trust_domain.clone()) {
            return Err(bad(format!(
                "trust domain {} is another tenant's: each tenant has its own",
                t.trust_domain
            )));
        }
        match (&cfg.database_url, &t.database_url) {
            (Some(_), None) => {
                return Err(bad(
                    "the verifier uses PostgreSQL: give each tenant its own database_url".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "database_url with a SQLite verifier: set the verifier's database_url too"
                        .into(),
                ));
            }
            (_, Some(u)) if !urls.insert(u.clone()) => {
                return Err(bad("database_url is another tenant's".into()));
            }
            _ => {}
        }
        let data_dir = cfg.data_dir.join("tenants").join(&t.name);
        out.push(ServerConfig {
            data_dir,
            database: None,
            database_url: t.database_url.clone(),
            nonce_key: None,
            trust_domain: t.trust_domain.clone(),
            spiffe_dir: None,
            svid_ca_pkcs11: None,
            federation: Vec::new(),
            gossip: None,
            quorum: None,
            tenants: Vec::new(),
            serving_tenant: Some(t.name.clone()),
            ..cfg.clone()
        });
    }
    Ok(out)
}

/// Join the gossip cluster with a revocation set that checks what arrives against this
/// trust domain's bundle.
async fn start_gossip(
    state: &Arc<state::State>,
    g: &GossipSettings,
    td: &vouch_identity::TrustDomain,
) -> Result<(Arc<vouch_rp::gossip::Gossip>, Duration), ServerError> {
    let now = unix_now();
    let authorities: Vec<Vec<u8>> = match &state.svid_ca {
        Some(lock) => lock
            .read()
            .map(|set| {
                set.authorities(now)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let bundle =
        vouch_rp::SpiffeVerifier::new(td, &authorities, vouch_rp::AllowedIds::AnyInTrustDomain)
            .map_err(|e| ServerError::Config(format!("gossip trust bundle: {e}")))?;
    let set = Arc::new(std::sync::RwLock::new(vouch_rp::RevocationSet::new(bundle)));
    let node_id = match &g.node_id {
        Some(n) => n.clone(),
        None => format!(
            "verifier-{}",
            state
                .keyring()
                .active()
                .map(|k| k.kid().to_string())
                .unwrap_or_default()
        ),
    };
    let interval = Duration::from_millis(g.interval_ms.max(10));
    let mut gc = vouch_rp::gossip::GossipConfig::new(
        &node_id,
        td.as_str(),
        g.listen,
        g.seeds.clone(),
        gossip_auth(g)?,
    );
    gc.advertise = g.advertise.unwrap_or(g.listen);
    gc.interval = interval;
    let gossip = vouch_rp::gossip::Gossip::join(gc, set)
        .await
        .map_err(|e| ServerError::Config(e.to_string()))?;
    tracing::info!(node = %node_id, listen = %g.listen, "joined the gossip cluster");
    Ok((Arc::new(gossip), interval))
}

/// How gossip datagrams are authenticated: with `key_file` (created when missing), or not at
/// all when `insecure_unauthenticated` says so; neither is refused.
fn gossip_auth(g: &GossipSettings) -> Result<vouch_rp::gossip::GossipAuth, ServerError> {
    use vouch_rp::gossip::{GossipAuth, GossipKeys};
    match (&g.key_file, g.insecure_unauthenticated) {
        (Some(_), true) => Err(ServerError::Config(
            "[server.gossip]: key_file and insecure_unauthenticated together: choose one".into(),
        )),
        (None, false) => Err(ServerError::Config(
            "[server.gossip] needs key_file (the cluster's gossip key, 32+ secret bytes shared \
             by every member), or insecure_unauthenticated = true for development"
                .into(),
        )),
        (None, true) => Ok(GossipAuth::Insecure),
        (Some(p), false) => {
            if !p.exists() {
                keys::write_secret(p, &random_bytes::<32>())?;
                tracing::warn!(
                    "created the gossip key {}: copy it to every other verifier and relying party",
                    p.display()
                );
            }
            GossipKeys::from_files(p, &g.accept_key_files)
                .map(GossipAuth::Keys)
                .map_err(|e| ServerError::Config(e.to_string()))
        }
    }
}

/// Create a one-time join token valid for `ttl` seconds; only its SHA-256 is stored.
pub async fn create_join_token(
    store: &dyn Store,
    ttl: u64,
    node_name: Option<&str>,
) -> Result<String, ServerError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let token = format!(
        "vjt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<24>())
    );
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let now = unix_now();
    store
        .create_join_token(&hash, node_name, now, now.saturating_add(ttl))
        .await?;
    Ok(token)
}
