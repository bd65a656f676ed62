use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which algorithm signs attestation results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SigningAlg {
    /// Ed25519 (JWS `EdDSA`), the default.
    #[default]
    EdDSA,
    /// ECDSA P-256 with SHA-256 (JWS `ES256`).
    ES256,
}

impl SigningAlg {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }
}

/// Verifier configuration: defaults, then the config file, then `VOUCH_*` environment variables
/// (applied by the `vouch` binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the database, keys and generated TLS material.
    pub data_dir: PathBuf,
    /// SQLite database file (default `<data_dir>/vouch.db`).
    pub database: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://user@host:port/db`): use PostgreSQL instead of SQLite, so
    /// several replicas share one store. Give every replica the same `nonce_key` file. May list
    /// a primary and its standbys, libpq style (`postgres://user@db1:5432,db2:5432/db?
    /// target_session_attrs=read-write&connect_timeout=2`): the verifier writes to whichever
    /// is the read-write primary and follows a promoted standby by itself (docs/PRODUCTION.md,
    /// "Store failover").
    pub database_url: Option<String>,
    /// TLS certificate chain (PEM). When unset, a CA and a loopback server certificate are
    /// generated under `<data_dir>/tls/`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS. Refused unless `listen` is a loopback address.
    pub insecure_http: bool,
    /// The audience nonces are issued for: the name of this verifier cluster.
    pub audience: String,
    /// Cluster nonce key file (32+ secret bytes), shared by all replicas
    /// (default `<data_dir>/keys/nonce.key`, created when missing).
    pub nonce_key: Option<PathBuf>,
    /// Seconds a nonce stays valid.
    pub nonce_ttl: u64,
    /// Allowed clock skew between replicas and agents, seconds.
    pub clock_skew: u64,
    /// Seconds an attestation result stays valid.
    pub result_ttl: u64,
    /// Expected seconds between attestations of one workload.
    pub attest_interval: u64,
    /// A workload missing this many intervals is marked contraindicated.
    pub deadline_intervals: u64,
    /// Largest request body accepted, bytes.
    pub body_limit: usize,
    /// Accept `sample` evidence (development only: it carries no signature, so anyone who
    /// knows an enrolled key id could submit it). Even then its results are recorded under
    /// `<node>/sample:<name>`, never as the enrolled workload's status. `vouch dev` sets it.
    pub allow_sample_evidence: bool,
    /// Appraisals kept for reuse (0: every attestation is appraised afresh). An appraisal is
    /// reused only for claims, policy version and reference values byte-identical to one made
    /// before; signature, nonce and freshness are checked every time.
    pub appraisal_cache_entries: usize,
    /// Bytes of measurement parts (package lists, process tables, …) kept so agents may send
    /// unchanged ones by digest (0: agents always send everything). Content-addressed and
    /// shared by all nodes; past it the oldest go first.
    pub parts_cache_bytes: usize,
    /// Most connections held open at once (0: no limit). Past it, new connections are closed
    /// at once until one ends.
    pub max_connections: usize,
    /// Most connections held open at once from one client IP address (0: no limit), so one
    /// client cannot take every slot. Agents behind one NAT share this.
    pub max_connections_per_client: usize,
    /// Seconds a client gets to complete the TLS handshake.
    pub handshake_timeout: u64,
    /// Seconds a client gets to send a request's headers, and that a kept-alive connection
    /// may wait for its next request.
    pub header_read_timeout: u64,
    /// Seconds a request gets, from its headers to its answer (its body included); it is
    /// answered `408 request_timeout` after that.
    pub request_timeout: u64,
    /// Seconds a connection may make no progress at all (a client that stops reading its
    /// answer) before it is closed.
    pub idle_timeout: u64,
    /// Most agents holding `POST /v1/entries/watch` open at once on this verifier (each holds a
    /// connection, so keep it under `max_connections`); past it a watch is refused
    /// `overloaded` and the agent falls back to its attestation interval.
    pub max_entry_watchers: usize,
    /// Most entry watches one agent key holds open at once.
    pub max_entry_watchers_per_key: usize,
    /// Seconds an entry watch waits for a change before it answers `changed: false` (the agent
    /// then watches again). Kept under `idle_timeout`; it is not bound by `request_timeout`.
    pub entries_watch_timeout: u64,
    /// Largest request header section (request line and headers), bytes; larger ones are
    /// answered `431 headers_too_large`.
    pub max_header_bytes: usize,
    /// Algorithm for newly generated result-signing keys.
    pub signing_alg: SigningAlg,
    /// Seconds a retired signing key stays in the JWKS, so results it signed still verify.
    pub retired_key_grace: u64,
    /// Add an ML-DSA-65 (FIPS 204) signature to every result beside the classical one
    /// (`result_pq`: JWS JSON with both signatures; the key is `keys/mldsa65.p8`, published
    /// in the JWKS as an `AKP` key). On by default; costs one ML-DSA-65 signature per result.
    pub pq_signatures: bool,
    /// Directory of trusted TPM manufacturer CA certificates (PEM or DER) for EK certificates.
    pub tpm_ca_dir: Option<PathBuf>,
    /// Accept TPMs without a valid EK certificate (development only: the EK is then trusted
    /// on first use).
    pub tpm_allow_uncertified_ek: bool,
    /// Accept SHA-1 quote signatures and PCR banks (legacy TPMs). Off: SHA-1 is a downgrade.
    pub tpm_allow_sha1: bool,
    /// The SPIFFE trust domain this verifier issues identities in.
    pub trust_domain: String,
    /// Lifetime of X.509-SVIDs, seconds.
    pub svid_ttl: u64,
    /// Lifetime of a SPIFFE CA, seconds; the next CA is prepared at half of it and activated
    /// at five sixths.
    pub svid_ca_ttl: u64,
    /// Foreign trust domains to federate with (SPIFFE `https_web` bundle endpoints).
    pub federation: Vec<crate::FederatedDomain>,
    /// Keep the SPIFFE CA key in a PKCS#11 token instead of `data_dir/spiffe/ca.key`.
    pub svid_ca_pkcs11: Option<vouch_identity::Pkcs11Config>,
    /// The trust domain's CA directory (default `<data_dir>/spiffe`). Replicas of one trust
    /// domain point at the same directory (or copies of it), as they share the nonce key.
    pub spiffe_dir: Option<PathBuf>,
    /// Join the trust domain's gossip cluster and publish revocations to it.
    pub gossip: Option<GossipSettings>,
    /// Take part in quorum results (FROST t-of-n): this verifier's key share and its peers.
    pub quorum: Option<crate::QuorumSettings>,
    /// Vendor roots for TEE evidence, kept locally (no vendor service is contacted): AMD ARKs,
    /// the Intel SGX Root CA, the AWS Nitro root, as .pem/.der files.
    pub tee_roots_dir: Option<PathBuf>,
    /// The offline TEE store: DCAP collateral (one .json per FMSPC) for judging SGX/TDX TCB
    /// status, SEV-SNP VCEKs and ASK/ASVKs (.der/.pem) so agents need not send them, and AMD
    /// CRLs (.crl) that SEV-SNP chains are checked against.
    pub tee_collateral_dir: Option<PathBuf>,
    /// How nodes may join (see `vouch_nodeattest::METHODS`): `join_token` (a one-time token
    /// from `vouch token create`), `tpm` (an EK certificate chaining to `tpm_ca_dir`, then
    /// credential activation, no token), and the document methods `k8s_psat`, `aws_iid`,
    /// `gcp_iit`, `azure_imds`, each configured by its `[node_attestor.<method>]` table.
    pub node_attestors: Vec<String>,
    /// Settings of each document method listed in `node_attestors`, by method name.
    pub node_attestor: std::collections::BTreeMap<String, serde_json::Value>,
    /// Cosign signatures checked for the container image digests workloads report
    /// (`input.images`; `[image_signatures]`, docs/SECURITY.md "Image signatures").
    pub image_signatures: Option<crate::ImageSignatureSettings>,
    /// The admission webhook: how the API server authenticates to it and what it requires
    /// (`[admission]`; without it every review is refused `401`).
    pub admission: Option<crate::AdmissionSettings>,
    /// Further tenants this verifier serves beside `default` (`[[tenants]]`): each with its
    /// own store, keys, trust domain and policy under `data_dir/tenants/<name>`, at
    /// `/t/<name>/…`.
    pub tenants: Vec<TenantConfig>,
    /// The tenant this configuration serves: `None` for `default`. Set by the verifier for
    /// each `[[tenants]]` entry; never read from the file.
    #[serde(skip)]
    pub serving_tenant: Option<String>,
}

/// One `[[tenants]]` entry of the verifier's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name: 1-63 of `a-z`, `0-9`, `-`, starting with a letter; its routes are
    /// `/t/<name>/…` and its results carry `vouch.tenant = <name>`.
    pub name: String,
    /// The SPIFFE trust domain its identities are issued in.
    pub trust_domain: String,
    /// Its own PostgreSQL database (when the verifier uses PostgreSQL): a database, or a
    /// schema through `?options=-c%20search_path%3D<schema>`. Required when `database_url`
    /// is set, so no two tenants share tables; unset with SQLite
    /// (`data_dir/tenants/<name>/vouch.db`).
    #[serde(default)]
    pub database_url: Option<String>,
}

/// Gossip membership of a verifier replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipSettings {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address peers reach this replica at (default: `listen`).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// `host:port` of other members (verifiers or relying parties).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// This member's name (default `verifier-<signing key id>`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Milliseconds between gossip rounds, and between publications of the signed head.
    #[serde(default = "default_gossip_interval")]
    pub interval_ms: u64,
    /// The cluster's gossip key (32+ secret bytes, mode 0600), the same file on every
    /// verifier and relying party: every datagram is signed with it and those that do not
    /// verify are dropped. Created with 32 random bytes when the file is missing (copy it to
    /// the other members). Required unless `insecure_unauthenticated`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Keys still accepted (never used to sign) while the cluster moves to a new `key_file`.
    #[serde(default)]
    pub accept_key_files: Vec<PathBuf>,
    /// Gossip with no authentication: anyone who can send this replica a UDP datagram can stop
    /// revocations from spreading. Development only; refused together with `key_file`.
    #[serde(default)]
    pub insecure_unauthenticated: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from(".vouch/server"),
            database: None,
            database_url: None,
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            audience: "vouch".into(),
            nonce_key: None,
            nonce_ttl: 60,
            clock_skew: 5,
            result_ttl: 90,
            attest_interval: 30,
            deadline_intervals: 3,
            body_limit: 6 * 1024 * 1024,
            allow_sample_evidence: false,
            appraisal_cache_entries: vouch_verifier::cache::DEFAULT_ENTRIES,
            parts_cache_bytes: vouch_verifier::parts::DEFAULT_BYTES,
            max_connections: 1024,
            max_connections_per_client: 128,
            handshake_timeout: 10,
            header_read_timeout: 15,
            request_timeout: 30,
            idle_timeout: 60,
            max_entry_watchers: 768,
            max_entry_watchers_per_key: 2,
            entries_watch_timeout: 50,
            max_header_bytes: 64 * 1024,
            signing_alg: SigningAlg::EdDSA,
            retired_key_grace: 86_400,
            pq_signatures: true,
            tpm_ca_dir: None,
            tpm_allow_uncertified_ek: false,
            tpm_allow_sha1: false,
            trust_domain: "vouch.local".into(),
            svid_ttl: 3600,
            svid_ca_ttl: 365 * 86_400,
            federation: Vec::new(),
            svid_ca_pkcs11: None,
            spiffe_dir: None,
            gossip: None,
            quorum: None,
            tee_roots_dir: None,
            tee_collateral_dir: None,
            node_attestors: vec!["join_token".into()],
            node_attestor: std::collections::BTreeMap::new(),
            image_signatures: None,
            admission: None,
            tenants: Vec::new(),
            serving_tenant: None,
        }
    }
}

impl ServerConfig {
    /// The tenant this configuration serves (`default` unless it is a `[[tenants]]` entry's).
    pub fn tenant_name(&self) -> &str {
        self.serving_tenant
            .as_deref()
            .unwrap_or(crate::auth::DEFAULT_TENANT)
    }

    /// Whether nodes may join with `method` (`join_token`, `tpm`, `k8s_psat`, ...).
    pub fn accepts_node_attestor(&self, method: &str) -> bool {
        self.node_attestors.iter().any(|m| m == method)
    }

    /// The trust domain's CA directory.
    pub fn spiffe_dir(&self) -> PathBuf {
        self.spiffe_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spiffe"))
    }

    /// The database path.
    pub fn database_path(&self) -> PathBuf {
        self.database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("vouch.db"))
    }

    /// The limits of the API listener.
    pub(crate) fn listener_limits(&self) -> crate::listener::Limits {
        let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
        crate::listener::Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            handshake_timeout: secs(self.handshake_timeout),
            header_read_timeout: secs(self.header_read_timeout),
            idle_timeout: secs(self.idle_timeout),
            max_header_bytes: self.max_header_bytes,
        }
    }

    /// Seconds after an attestation at which its workload is overdue.
    pub fn deadline_secs(&self) -> u64 {
        self.attest_interval
            .saturating_mul(self.deadline_intervals.max(1))
    }

    /// What the appraisal pipeline takes from this configuration.
    pub fn verifier_config(&self) -> vouch_verifier::VerifierConfig {
        vouch_verifier::VerifierConfig {
            audience: self.audience.clone(),
            nonce_ttl: self.nonce_ttl,
            clock_skew: self.clock_skew,
            result_ttl: self.result_ttl,
            deadline_secs: self.deadline_secs(),
            allow_sample_evidence: self.allow_sample_evidence,
            tpm_allow_sha1: self.tpm_allow_sha1,
            appraisal_cache_entries: self.appraisal_cache_entries,
            parts_cache_bytes: self.parts_cache_bytes,
            tenant: Some(self.tenant_name().to_string()),
        }
    }
}

fn default_gossip_interval() -> u64 {
    500
}
