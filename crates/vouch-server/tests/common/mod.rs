//! The test harness shared by the integration tests: a verifier on loopback TLS with its
//! store, agents with their own executables and configuration files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::path::PathBuf;
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, VerifierClient};
use vouch_core::NonceKey;
use vouch_policy::ReferenceValue;
use vouch_rp::{Requirements, ResultVerifier};
use vouch_server::{RunningServer, ServerConfig, create_join_token, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};

/// The relying party the harness's agents request their results for.
pub const RP_AUDIENCE: &str = "rp";

/// The default requirements of that relying party.
pub fn rp_requirements() -> Requirements {
    Requirements::for_audience(RP_AUDIENCE)
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub store: Arc<dyn Store>,
    pub cfg: ServerConfig,
}

impl Harness {
    pub async fn new(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("server"),
            ..ServerConfig::default()
        };
        tweak(&mut cfg);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
        let server = start_with_store(cfg.clone(), store.clone()).await.unwrap();
        Self {
            dir,
            server,
            store,
            cfg,
        }
    }

    pub fn client(&self) -> VerifierClient {
        VerifierClient::new(&self.server.base_url, self.server.ca_cert.as_deref())
            .unwrap()
            .with_read_token(self.read_token())
    }

    /// A relying party's view of the trust domain: its CA bundle, any ID in the domain.
    pub fn trust_bundle(&self) -> Arc<vouch_rp::SpiffeVerifier> {
        let td = vouch_identity::TrustDomain::parse(&self.cfg.trust_domain).unwrap();
        let ca =
            vouch_identity::CaSet::load_or_create(&self.cfg.spiffe_dir(), &td, 3600, unix_now())
                .unwrap();
        let auth: Vec<Vec<u8>> = ca
            .authorities(unix_now())
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        vouch_rp::SpiffeVerifier::new(&td, &auth, vouch_rp::AllowedIds::AnyInTrustDomain).unwrap()
    }

    /// The verifier's read token (`keys/read.token`).
    pub fn read_token(&self) -> String {
        std::fs::read_to_string(self.cfg.data_dir.join("keys/read.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub async fn agent(&self, name: &str) -> Agent {
        self.agent_with(name, |_| {}).await
    }

    /// An agent for workload `name`, its configuration adjusted by `tweak`.
    pub async fn agent_with(&self, name: &str, tweak: impl FnOnce(&mut AgentConfig)) -> Agent {
        let exe = self.path(&format!("{name}.bin"));
        std::fs::write(&exe, format!("binary of {name}")).unwrap();
        let conf = self.path(&format!("{name}.conf"));
        std::fs::write(&conf, "setting = 1\n").unwrap();
        let token = create_join_token(self.store.as_ref(), 600, None)
            .await
            .unwrap();
        let mut cfg = AgentConfig {
            servers: vec![self.server.base_url.clone()],
            ca_cert: self.server.ca_cert.clone(),
            data_dir: self.path(&format!("agent-{name}")),
            join_token: Some(token),
            workload_name: name.into(),
            exe: Some(exe),
            files: vec![conf],
            interval: 1,
            result_audience: Some(RP_AUDIENCE.into()),
            ..AgentConfig::default()
        };
        tweak(&mut cfg);
        Agent::new(cfg).await.unwrap()
    }

    /// Register an entry granting `spiffe_id` to workloads carrying all of `selectors`
    /// (600 s SVIDs); its id (unique: entries may grant one SPIFFE ID more than once).
    pub async fn add_entry<S: AsRef<str>>(&self, spiffe_id: &str, selectors: &[S]) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let e = vouch_identity::Entry::new(
            format!("e-{}-{n}", spiffe_id.rsplit('/').next().unwrap_or("x")),
            &vouch_identity::SpiffeId::parse(spiffe_id).unwrap(),
            selectors
                .iter()
                .map(|s| vouch_identity::Selector::parse(s.as_ref()).unwrap())
                .collect(),
            600,
            unix_now(),
        )
        .unwrap();
        self.store.add_entry(&e).await.unwrap();
        e.id
    }

    /// Add one reference value.
    pub async fn refvalue(&self, kind: &str, key: &str, value: &str) {
        self.store
            .add_reference_value(
                &ReferenceValue {
                    kind: kind.into(),
                    key: key.into(),
                    value: value.into(),
                },
                unix_now(),
            )
            .await
            .unwrap();
    }

    /// Register the agent's current measurements as reference values.
    pub async fn trust(&self, agent: &mut Agent) {
        let ev = agent.evidence("x").unwrap();
        let m: vouch_core::SoftwareMeasurements =
            serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
        let now = unix_now();
        self.store
            .add_reference_value(
                &ReferenceValue {
                    kind: "executable".into(),
                    key: m.workload.name.clone(),
                    value: m.workload.exe_sha256.clone(),
                },
                now,
            )
            .await
            .unwrap();
        for f in m.files {
            self.store
                .add_reference_value(
                    &ReferenceValue {
                        kind: "file".into(),
                        key: f.path,
                        value: f.sha256.unwrap(),
                    },
                    now,
                )
                .await
                .unwrap();
        }
    }

    pub fn nonce_key(&self) -> NonceKey {
        let b = std::fs::read(self.cfg.data_dir.join("keys/nonce.key")).unwrap();
        NonceKey::from_slice(&b).unwrap()
    }

    pub async fn rp(&self) -> ResultVerifier {
        ResultVerifier::from_jwks_json(&self.client().jwks().await.unwrap()).unwrap()
    }
}
