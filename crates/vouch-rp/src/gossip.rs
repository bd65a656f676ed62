//! Revocations by gossip: verifiers and relying parties of a trust domain form one
//! [chitchat](https://docs.rs/chitchat) cluster (scuttlebutt anti-entropy over UDP). Verifier
//! replicas publish each signed revocation record under `r:<epoch>` and a signed head under
//! `head` in their own node state; every node replicates every node's state, so a record
//! reaches a relying party through any path, including other relying parties, and a node that
//! was down or cut off catches up when it can talk again. What arrives is only kept after
//! [`RevocationSet`] checked its signature against the trust bundle, so a gossip peer can delay
//! a revocation but never forge or withdraw one.
//!
//! chitchat itself trusts every datagram: anyone who can reach a member's UDP port could make
//! it (and through it the verifier) stop taking new state. So members authenticate every
//! datagram with the cluster's gossip key ([`GossipKey`], HMAC-SHA256) and drop the rest
//! before chitchat reads them. Members holding the key are trusted not to do that; what bounds
//! the damage of one that does is the relying parties' staleness limit
//! ([`RevocationSet::set_max_age`]): a member that hears no fresh head refuses.

mod transport;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, spawn_chitchat};
use tokio::sync::{mpsc, watch};

use crate::{RevocationSet, RevocationView};
pub use transport::{Dropped, GossipKey, GossipKeys, open as open_datagram};

/// Key prefix of revocation records in a node's state.
pub const RECORD_PREFIX: &str = "r:";
/// Key of a verifier's signed head.
pub const HEAD_KEY: &str = "head";

/// How a member authenticates gossip datagrams.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GossipAuth {
    /// Sign every datagram with the current key and drop those no held key verifies.
    Keys(GossipKeys),
    /// No authentication at all: anyone who can send this member a UDP datagram can make it
    /// ignore every later record and head. For development on one machine only.
    Insecure,
}

/// How to join the gossip cluster.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address other nodes reach this one at (often the same as `listen`).
    pub advertise: SocketAddr,
    /// `host:port` of nodes to contact first; any live member will do.
    pub seeds: Vec<String>,
    /// The cluster name: nodes of other clusters are ignored (use the trust domain).
    pub cluster_id: String,
    /// Time between gossip rounds.
    pub interval: Duration,
    /// How datagrams are authenticated ([`Gossip::join`]; [`Gossip::join_with`] takes the
    /// transport as given).
    pub auth: GossipAuth,
}

impl GossipConfig {
    /// A node named `node_id` of cluster `cluster_id` on `listen`, gossiping every 500 ms,
    /// authenticating datagrams as `auth` says.
    pub fn new(
        node_id: &str,
        cluster_id: &str,
        listen: SocketAddr,
        seeds: Vec<String>,
        auth: GossipAuth,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            listen,
            advertise: listen,
            seeds,
            cluster_id: cluster_id.into(),
            interval: Duration::from_millis(500),
            auth,
        }
    }
}

/// Errors joining the cluster or reading a gossip key.
#[derive(Debug, thiserror::Error)]
#[error("gossip: {0}")]
pub struct GossipError(String);

/// A member of the trust domain's gossip cluster, feeding a shared [`RevocationSet`].
pub struct Gossip {
    handle: ChitchatHandle,
    set: Arc<RwLock<RevocationSet>>,
    view: watch::Receiver<RevocationView>,
    _listeners: Vec<chitchat::ListenerHandle>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<transport::Stats>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("node", self.handle.chitchat_id())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Gossip {
    /// Join over UDP, datagrams authenticated as `cfg.auth` says.
    pub async fn join(
        cfg: GossipConfig,
        set: Arc<RwLock<RevocationSet>>,
    ) -> Result<Self, GossipError> {
        match cfg.auth.clone() {
            GossipAuth::Keys(keys) => {
                let stats = Arc::new(transport::Stats::default());
                let t = transport::AuthenticatedUdp::new(keys, &cfg.cluster_id, stats.clone());
                Self::start(cfg, set, &t, stats).await
            }
            GossipAuth::Insecure => {
                tracing::warn!(
                    listen = %cfg.listen,
                    "gossip without authentication: anyone who reaches this UDP port can stop                      revocations from arriving (development only)"
                );
                Self::join_with(cfg, set, &UdpTransport).await
            }
        }
    }

    /// Join over any chitchat transport as it is (the in-process channel transport for
    /// simulations); `cfg.auth` is not used.
    pub async fn join_with(
        cfg: GossipConfig,
        set: Arc<RwLock<RevocationSet>>,
        transport: &dyn Transport,
    ) -> Result<Self, GossipError> {
        Self::start(cfg, set, transport, Arc::default()).await
    }

    async fn start(
        cfg: GossipConfig,
        set: Arc<RwLock<RevocationSet>>,
        transport: &dyn Transport,
        stats: Arc<transport::Stats>,
    ) -> Result<Self, GossipError> {
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(cfg.node_id.clone(), generation, cfg.advertise),
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: cfg.interval,
            listen_addr: cfg.listen,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: cfg.interval * 4,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(24 * 3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let handle = spawn_chitchat(config, Vec::new(), transport)
            .await
            .map_err(|e| GossipError(format!("starting on {}: {e}", cfg.listen)))?;
        // Key changes arrive under chitchat's lock: hand them to a task that checks them.
        let (tx, mut rx) = mpsc::unbounded_channel::<(bool, String)>();
        let listeners = {
            let c = handle.chitchat();
            let c = c.lock().await;
            let t1 = tx.clone();
            let records = c.subscribe_event(RECORD_PREFIX, move |ev| {
                let _ = t1.send((true, ev.value.to_string()));
            });
            let heads = c.subscribe_event(HEAD_KEY, move |ev| {
                let _ = tx.send((false, ev.value.to_string()));
            });
            vec![records, heads]
        };
        let initial = set.read().map(|s| s.view()).unwrap_or_default();
        let (view_tx, view) = watch::channel(initial);
        let task = {
            let set = set.clone();
            tokio::spawn(async move {
                while let Some((is_record, value)) = rx.recv().await {
                    let now = unix_now();
                    let Ok(mut s) = set.write() else { return };
                    let r = if is_record {
                        s.insert_record(&value, now)
                    } else {
                        s.insert_head(&value, now)
                    };
                    // A conflicting record is kept (and reported): the view changes then too.
                    let v = s.view();
                    drop(s);
                    if let Err(e) = r {
                        tracing::warn!("gossip: {e}");
                    }
                    view_tx.send_if_modified(|old| std::mem::replace(old, v) != v);
                }
            })
        };
        Ok(Self {
            handle,
            set,
            view,
            _listeners: listeners,
            task,
            stats,
        })
    }

    /// Publish a signed revocation record (verifier replicas).
    pub async fn publish_record(&self, epoch: u64, jws: &str) {
        let c = self.handle.chitchat();
        let mut c = c.lock().await;
        c.self_node_state()
            .set(format!("{RECORD_PREFIX}{epoch:020}"), jws);
    }

    /// Publish a signed head (verifier replicas).
    pub async fn publish_head(&self, jws: &str) {
        let c = self.handle.chitchat();
        let mut c = c.lock().await;
        c.self_node_state().set(HEAD_KEY, jws);
    }

    /// This member's chitchat identity: its name, generation and advertised address.
    pub fn chitchat_id(&self) -> &chitchat::ChitchatId {
        self.handle.chitchat_id()
    }

    /// Datagrams dropped unread so far: too short or long, of another format, under a key
    /// this member does not hold, or with a MAC that does not verify (plus authenticated ones
    /// that did not decode). Always 0 without authentication.
    pub fn dropped_datagrams(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed) + self.stats.undecodable.load(Ordering::Relaxed)
    }

    /// The revocation set this member feeds.
    pub fn set(&self) -> Arc<RwLock<RevocationSet>> {
        self.set.clone()
    }

    /// Changes of the set's view, as records and heads are accepted.
    pub fn watch(&self) -> watch::Receiver<RevocationView> {
        self.view.clone()
    }

    /// Names of the members this one currently believes alive (itself included).
    pub async fn live_members(&self) -> Vec<String> {
        let c = self.handle.chitchat();
        let c = c.lock().await;
        c.live_nodes().map(|id| id.node_id.to_string()).collect()
    }

    /// Leave the cluster.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.handle.shutdown().await;
    }
}
