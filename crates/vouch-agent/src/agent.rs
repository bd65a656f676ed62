use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vouch_core::ErrorKind;
use vouch_core::wire::{AttestRequest, AttestationResult, EnrollRequest, enroll_signing_input};
use vouch_evidence::{AgentKey, CollectConfig, SoftwareCollector, sign_software_evidence};

use crate::{AgentError, VerifierClient};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub(crate) mod secret;

/// Agent configuration: defaults, then the config file, then `VOUCH_*` environment variables
/// (applied by the `vouch` binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Verifier base URLs (`https://host:port`); the first that answers is used.
    pub servers: Vec<String>,
    /// The tenant this node belongs to at the verifier: its requests go to
    /// `<server>/t/<tenant>/…` and its results name it. Unset: the verifier's default tenant.
    pub tenant: Option<String>,
    /// CA certificate (PEM) to trust for the verifier; system roots when unset.
    pub ca_cert: Option<PathBuf>,
    /// Directory for the agent key, enrollment state and the latest result.
    pub data_dir: PathBuf,
    /// One-time join token for the first enrollment.
    #[serde(skip_serializing)]
    pub join_token: Option<String>,
    /// Join without a join token, on a document this node's platform signed about it (a
    /// zero-touch node attestation method the verifier accepts).
    pub node_attestation: Option<NodeAttestationConfig>,
    /// Name of the attested workload (unique on this node).
    pub workload_name: String,
    /// The workload's executable (default: this program).
    pub exe: Option<PathBuf>,
    /// Configuration files to measure.
    pub files: Vec<PathBuf>,
    /// Container image digest of the workload, when it runs from one.
    pub image_digest: Option<String>,
    /// More workloads on this node, each measured and attested on its own (its own result,
    /// its own status at the verifier) beside the node's workload above.
    pub workloads: Vec<WorkloadConfig>,
    /// Seconds between attestations.
    pub interval: u64,
    /// Audience to ask the verifier to put in results.
    pub result_audience: Option<String>,
    /// The SPIFFE trust domain the verifier issues identities in.
    pub trust_domain: String,
    /// Where to serve the SPIFFE Workload API (a Unix socket); not served when unset.
    pub workload_api_socket: Option<PathBuf>,
    /// Most Workload API connections held at once (0: no limit).
    pub workload_api_max_connections: usize,
    /// Most Workload API connections held at once by processes of one uid (0: no limit).
    pub workload_api_max_connections_per_uid: usize,
    /// Seconds a Workload API connection may make no progress before it is closed (live
    /// streams stay open: keep-alive pings answered count as progress).
    pub workload_api_idle_timeout: u64,
    /// Where to serve the secret socket (a Unix socket, one JSON line per request: `vouch
    /// secret get`, or any workload): a local caller asks for a secret by name, the agent
    /// attests for it with a one-time HPKE key and passes the caller's `unix:` selectors; not
    /// served when unset.
    pub secret_socket: Option<PathBuf>,
    /// Attest with the TPM (`tpm` evidence: measurements bound into a quote).
    #[cfg(feature = "tpm")]
    pub tpm: Option<crate::TpmConfig>,
    /// Attest with the TEE this machine runs in (configfs-tsm): `tee` evidence alone, or
    /// `composite` evidence (the TEE report binding the vTPM's AK) together with `tpm`.
    pub tee: Option<crate::TeeConfig>,
    /// Give Workload API callers `container:` selectors from this container runtime's own
    /// state (off when unset).
    pub container: Option<crate::ContainerConfig>,
    /// Give Workload API callers `k8s:` selectors from the kubelet's pod list (off when
    /// unset).
    pub k8s: Option<crate::K8sConfig>,
    /// Serve the agent's `/metrics` and `/healthz` over plain HTTP on this address (off when
    /// unset; a loopback address such as `127.0.0.1:9464` unless a scraper must reach it).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            servers: vec!["https://127.0.0.1:8443".into()],
            tenant: None,
            ca_cert: None,
            data_dir: PathBuf::from(".vouch/agent"),
            join_token: None,
            node_attestation: None,
            workload_name: "host".into(),
            exe: None,
            files: Vec::new(),
            image_digest: None,
            workloads: Vec::new(),
            interval: 30,
            result_audience: None,
            trust_domain: "vouch.local".into(),
            workload_api_socket: None,
            workload_api_max_connections: 512,
            workload_api_max_connections_per_uid: 128,
            workload_api_idle_timeout: 120,
            secret_socket: None,
            #[cfg(feature = "tpm")]
            tpm: None,
            tee: None,
            container: None,
            k8s: None,
            metrics_listen: None,
        }
    }
}

/// A workload declared in the agent's configuration (`[[workloads]]`): measured
/// continuously and attested on its own, so its result (an EAR naming it) and its status at
/// the verifier are its own. Workload API callers carrying all of `selectors` are this
/// workload: their SVIDs need its attestation affirming, not only the node's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Name (unique on this node; 1-128 of A-Z a-z 0-9 - _ .).
    pub name: String,
    /// The executable to measure.
    pub exe: PathBuf,
    /// Configuration files to measure.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Container image digest, when it runs from one.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Workload API callers with all of these selectors (`unix:path:…`, `container:label:…`)
    /// are this workload; empty: none are (it is attested, but issues no SVIDs itself).
    #[serde(default)]
    pub selectors: Vec<String>,
}

/// Where the agent gets the document its node attestation method sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestationConfig {
    /// The method (`k8s_psat`, `aws_iid`, `gcp_iit`, `azure_imds`).
    pub method: String,
    /// Read the document from this file (for `k8s_psat`, the projected service-account
    /// token, e.g. `/var/run/secrets/tokens/vouch-agent`).
    #[serde(default)]
    pub data_file: Option<PathBuf>,
    /// Or fetch it from this URL (a cloud metadata service), with `{nonce}` and
    /// `{audience}` replaced by the verifier's challenge and audience as the method carries
    /// them (`vouch_core::wire::node_attest_nonce`, `node_attest_audience`), URL-encoded. For
    /// `aws_iid`, EC2's `/latest/dynamic/instance-identity/rsa2048` (sent as `{"rsa2048": …}`);
    /// for `gcp_iit`, the `identity?audience={audience}&format=full` token; for `azure_imds`,
    /// `/metadata/attested/document?api-version=2020-09-01&nonce={nonce}`.
    #[serde(default)]
    pub url: Option<String>,
    /// Headers for `url` (GCP: `Metadata-Flavor = "Google"`; Azure: `Metadata = "true"`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The most bytes of a node attestation document the agent reads.
const MAX_NODE_DOCUMENT: u64 = 64 * 1024;

impl NodeAttestationConfig {
    /// The document, read from its file or fetched from its URL for `challenge`.
    pub async fn document(
        &self,
        challenge: &vouch_core::wire::ChallengeResponse,
    ) -> Result<Vec<u8>, AgentError> {
        match (&self.data_file, &self.url) {
            (Some(path), None) => {
                use std::io::Read as _;
                let f = std::fs::File::open(path).map_err(|source| AgentError::Io {
                    what: format!("reading the node attestation document {}", path.display()),
                    source,
                })?;
                let mut out = Vec::new();
                f.take(MAX_NODE_DOCUMENT + 1)
                    .read_to_end(&mut out)
                    .map_err(|source| AgentError::Io {
                        what: format!("reading {}", path.display()),
                        source,
                    })?;
                if out.len() as u64 > MAX_NODE_DOCUMENT {
                    return Err(AgentError::Config(format!(
                        "{} is over {MAX_NODE_DOCUMENT} bytes: not a node attestation document",
                        path.display()
                    )));
                }
                // A token file ends with a newline when written by hand.
                while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    out.pop();
                }
                Ok(out)
            }
            (None, Some(url)) => {
                let enc = |s: &str| {
                    s.bytes()
                        .map(|b| match b {
                            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                                (b as char).to_string()
                            }
                            _ => format!("%{b:02X}"),
                        })
                        .collect::<String>()
                };
                use vouch_core::wire::{node_attest_audience, node_attest_nonce};
                let url = url
                    .replace(
                        "{nonce}",
                        &enc(&node_attest_nonce(&self.method, &challenge.nonce)),
                    )
                    .replace(
                        "{audience}",
                        &enc(&node_attest_audience(
                            &self.method,
                            &challenge.audience,
                            &challenge.nonce,
                        )),
                    );
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| AgentError::Config(format!("HTTP client: {e}")))?;
                let mut req = client.get(&url);
                for (k, v) in &self.headers {
                    req = req.header(k, v);
                }
                let unreachable = |e: reqwest::Error| AgentError::Unreachable {
                    url: url.clone(),
                    source: e,
                };
                let mut res = req.send().await.map_err(unreachable)?;
                if !res.status().is_success() {
                    return Err(AgentError::Protocol(format!(
                        "the metadata service at {url} answered {}",
                        res.status()
                    )));
                }
                let mut out = Vec::new();
                while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
                    out.extend_from_slice(&chunk);
                    if out.len() as u64 > MAX_NODE_DOCUMENT {
                        return Err(AgentError::Protocol(format!(
                            "the document from {url} is over {MAX_NODE_DOCUMENT} bytes"
                        )));
                    }
                }
                if self.method == "aws_iid" && !out.starts_with(b"{") {
                    // EC2's `/rsa2048` answer is the PKCS#7 that holds the document.
                    let pkcs7 = String::from_utf8_lossy(&out).trim().to_string();
                    out = serde_json::to_vec(&serde_json::json!({ "rsa2048": pkcs7 }))
                        .map_err(|e| AgentError::Config(e.to_string()))?;
                }
                Ok(out)
            }
            _ => Err(AgentError::Config(format!(
                "node_attestation ({}) needs exactly one of data_file and url",
                self.method
            ))),
        }
    }
}

/// What enrollment left on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The node this agent is.
    pub node_id: String,
    /// The enrolled key's id.
    pub key_id: String,
}

/// A running attester.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    key: Arc<AgentKey>,
    status: tokio::sync::watch::Sender<NodeStatus>,
    /// The verifier's registration-entry revision, as of the latest result.
    entries: Arc<tokio::sync::watch::Sender<u64>>,
    enrollment: Enrollment,
    /// The node's workload first, then the declared ones.
    collectors: Vec<SoftwareCollector>,
    /// Lists the running containers whose images each round reports (`container`).
    container_runtime: Option<crate::ContainerAttestor>,
    /// Which collector the round in progress measures.
    active: usize,
    /// The latest status of each declared workload, by name.
    workload_status: tokio::sync::watch::Sender<std::collections::BTreeMap<String, NodeStatus>>,
    clients: Vec<VerifierClient>,
    current: usize,
    /// Per verifier: consecutive failures and the time before which it is not tried again.
    backoff: Vec<(u32, Option<std::time::Instant>)>,
    /// Per verifier and workload (`verifier * workloads + workload`): the measurement parts
    /// it said it holds (name to digest), which are sent by digest while they do not change.
    held: Vec<std::collections::BTreeMap<String, String>>,
    /// Per verifier: the nonce its last result gave for the next round, if any.
    next_nonce: Vec<Option<vouch_core::wire::ChallengeResponse>>,
    #[cfg(feature = "tpm")]
    tpm: Option<crate::Tpm>,
    /// IMA entries the verifier has replayed; the next slice starts here.
    #[cfg(feature = "tpm")]
    ima_sent: u64,
    /// The AK's TPM name, read once (composite evidence binds it).
    #[cfg(feature = "tpm")]
    ak_name: Option<Vec<u8>>,
    /// What `/metrics` and `/healthz` report.
    metrics: Arc<crate::AgentMetrics>,
    /// While a secret release is being measured: the one-time HPKE key the measurements bind.
    release_key: Option<String>,
}

/// What the agent last heard from the verifier about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// No attestation has completed since the agent started.
    Unattested,
    /// The latest attestation was affirming.
    Affirming,
    /// The latest attestation was not affirming, or the verifier refused the evidence.
    Refused(String),
}

impl NodeStatus {
    fn of(r: &Result<AttestationResult, AgentError>) -> Option<Self> {
        match r {
            Ok(r) if r.status == vouch_core::ArStatus::Affirming => Some(Self::Affirming),
            Ok(r) => Some(Self::Refused(format!(
                "the node's attestation is {}: {}",
                r.status,
                r.reasons.join("; ")
            ))),
            // An unreachable verifier, or one that cannot answer for now (its store is
            // unavailable during a database failover, it is overloaded, …), says nothing about
            // the node: keep what we knew, so still-valid SVIDs keep being served meanwhile.
            Err(e) if failover_worthy(e) => None,
            Err(e) => Some(Self::Refused(format!(
                "the node's evidence was refused: {e}"
            ))),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Where an agent starts in the verifier list: spread by its key id.
fn start_index(key_id: &str, n: usize) -> usize {
    let h = key_id
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    usize::try_from(h % n.max(1) as u64).unwrap_or(0)
}

/// The base URL of `tenant`'s routes at the verifier `server` (`server` itself for none).
pub fn tenant_base(server: &str, tenant: Option<&str>) -> Result<String, AgentError> {
    let server = server.trim_end_matches('/');
    match tenant {
        None => Ok(server.to_string()),
        Some(t)
            if (1..=63).contains(&t.len())
                && t.starts_with(|c: char| c.is_ascii_lowercase())
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            Ok(format!("{server}/t/{t}"))
        }
        Some(t) => Err(AgentError::Config(format!(
            "tenant {t:?}: 1-63 of a-z, 0-9 and -, starting with a letter"
        ))),
    }
}

/// Errors after which another verifier may do better (and which say nothing about the node).
pub(crate) fn failover_worthy(e: &AgentError) -> bool {
    matches!(e, AgentError::Unreachable { .. }) || e.kind().is_some_and(ErrorKind::is_retryable)
}

impl Agent {
    /// Load (or create) the key, enroll when not yet enrolled, and get ready to attest.
    pub async fn new(cfg: AgentConfig) -> Result<Self, AgentError> {
        if cfg.servers.is_empty() {
            return Err(AgentError::Config("no verifier server configured".into()));
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| AgentError::Io {
            what: format!("creating {}", cfg.data_dir.display()),
            source,
        })?;
        let key = Arc::new(AgentKey::load_or_create(&cfg.data_dir.join("agent.key"))?);
        let clients = cfg
            .servers
            .iter()
            .map(|s| {
                VerifierClient::new(
                    &tenant_base(s, cfg.tenant.as_deref())?,
                    cfg.ca_cert.as_deref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state_path = cfg.data_dir.join("enrollment.json");
        let enrollment = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                AgentError::Config(format!("{} is corrupt: {e}", state_path.display()))
            })?,
            Err(_) => {
                let e = match (&cfg.join_token, &cfg.node_attestation) {
                    (Some(token), _) => Self::enroll(&clients, &key, token).await?,
                    (None, Some(n)) => Self::attest_node(&clients, &key, n).await?,
                    #[cfg(feature = "tpm")]
                    (None, None) if cfg.tpm.is_some() => {
                        crate::tpm_join::join_configured(&cfg, &clients, &key).await?
                    }
                    (None, None) => return Err(AgentError::NotEnrolled),
                };
                write_atomic(
                    &state_path,
                    &serde_json::to_vec_pretty(&e)
                        .map_err(|e| AgentError::Config(e.to_string()))?,
                )?;
                tracing::info!(node = %e.node_id, key = %e.key_id, "enrolled");
                e
            }
        };
        let exe = match &cfg.exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|source| AgentError::Io {
                what: "finding this program's executable".into(),
                source,
            })?,
        };
        let mut collectors = vec![SoftwareCollector::new(CollectConfig {
            workload_name: cfg.workload_name.clone(),
            exe,
            files: cfg.files.clone(),
            image_digest: cfg.image_digest.clone(),
            root: PathBuf::from("/"),
        })];
        for w in &cfg.workloads {
            if w.name == cfg.workload_name
                || cfg.workloads.iter().filter(|o| o.name == w.name).count() > 1
            {
                return Err(AgentError::Config(format!(
                    "workload {:?} is declared twice (names are unique on a node)",
                    w.name
                )));
            }
            for sel in &w.selectors {
                if !sel
                    .split_once(':')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
                {
                    return Err(AgentError::Config(format!(
                        "workload {}: selector {sel:?} is not type:value",
                        w.name
                    )));
                }
            }
            collectors.push(SoftwareCollector::new(CollectConfig {
                workload_name: w.name.clone(),
                exe: w.exe.clone(),
                files: w.files.clone(),
                image_digest: w.image_digest.clone(),
                root: PathBuf::from("/"),
            }));
        }
        #[cfg(feature = "tpm")]
        let tpm = cfg
            .tpm
            .clone()
            .map(|t| crate::Tpm::new(t, &cfg.data_dir.join("tpm")));
        let start = start_index(&enrollment.key_id, clients.len());
        let container_runtime = cfg.container.clone().map(crate::ContainerAttestor::new);
        #[cfg_attr(not(feature = "tpm"), allow(unused_mut))]
        let mut agent = Self {
            metrics: Arc::new(crate::AgentMetrics::new(cfg.interval)),
            release_key: None,
            cfg,
            key,
            status: tokio::sync::watch::Sender::new(NodeStatus::Unattested),
            entries: Arc::new(tokio::sync::watch::Sender::new(0)),
            enrollment,
            active: 0,
            workload_status: tokio::sync::watch::Sender::new(Default::default()),
            // Agents spread over the verifiers: each starts at one picked by its key id.
            current: start,
            backoff: vec![(0, None); clients.len()],
            held: vec![Default::default(); clients.len() * collectors.len()],
            collectors,
            container_runtime,
            next_nonce: vec![None; clients.len()],
            clients,
            #[cfg(feature = "tpm")]
            tpm,
            #[cfg(feature = "tpm")]
            ima_sent: 0,
            #[cfg(feature = "tpm")]
            ak_name: None,
        };
        #[cfg(feature = "tpm")]
        agent.ensure_tpm_enrolled().await?;
        Ok(agent)
    }

    /// Enroll this node's TPM once: send EK, EK certificate and AK; activate the credential the
    /// verifier returns (proving the AK lives in the TPM that holds the EK).
    #[cfg(feature = "tpm")]
    async fn ensure_tpm_enrolled(&mut self) -> Result<(), AgentError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use vouch_core::wire::{TpmActivateRequest, TpmEnrollRequest, tpm_enroll_signing_input};
        let Some(tpm) = self.tpm.clone() else {
            return Ok(());
        };
        let marker = self.cfg.data_dir.join("tpm-enrollment.json");
        if marker.exists() {
            return Ok(());
        }
        let id = blocking(move || tpm.identity()).await?;
        let key_id = self.enrollment.key_id.clone();
        let ek_public = B64.encode(&id.ek_public);
        let ek_cert = id.ek_cert.as_ref().map(|c| B64.encode(c));
        let ak_public = B64.encode(&id.ak_public);
        let signature = self.key.sign_b64(&tpm_enroll_signing_input(
            &key_id,
            &[&ek_public, ek_cert.as_deref().unwrap_or(""), &ak_public],
        ));
        let client = self.client().clone();
        let challenge = client
            .tpm_enroll(&TpmEnrollRequest {
                key_id: key_id.clone(),
                ek_public,
                ek_cert,
                ak_public,
                signature,
            })
            .await?;
        let blob = B64
            .decode(&challenge.credential_blob)
            .map_err(|_| AgentError::Protocol("credential_blob is not base64url".into()))?;
        let secret = B64
            .decode(&challenge.encrypted_secret)
            .map_err(|_| AgentError::Protocol("encrypted_secret is not base64url".into()))?;
        let Some(tpm) = self.tpm.clone() else {
            return Ok(());
        };
        let recovered = blocking(move || tpm.activate_credential(&blob, &secret)).await?;
        let secret = B64.encode(&recovered);
        let signature = self
            .key
            .sign_b64(&tpm_enroll_signing_input(&key_id, &[&secret]));
        let done = client
            .tpm_activate(&TpmActivateRequest {
                key_id,
                secret,
                signature,
            })
            .await?;
        write_atomic(
            &marker,
            serde_json::json!({"ak_name": done.ak_name})
                .to_string()
                .as_bytes(),
        )?;
        tracing::info!(ak = %done.ak_name, "TPM enrolled: AK activated");
        Ok(())
    }

    /// Collect, quote and sign `tpm` evidence for `nonce`.
    #[cfg(feature = "tpm")]
    pub async fn tpm_evidence(&mut self, nonce: &str) -> Result<vouch_core::Evidence, AgentError> {
        let (payload, _) = self.tpm_payload(nonce).await?;
        self.sign_payload(vouch_core::EvidenceKind::Tpm, &payload)
    }

    /// Collect, quote, ask the TEE for a report binding the same nonce, agent key,
    /// measurements and the AK's name, and sign `composite` evidence for `nonce`.
    #[cfg(feature = "tpm")]
    pub async fn composite_evidence(
        &mut self,
        nonce: &str,
    ) -> Result<vouch_core::Evidence, AgentError> {
        let Some(tee) = self.cfg.tee.clone() else {
            return Err(AgentError::Config("no TEE configured".into()));
        };
        let ak_name = self.ak_name().await?;
        let (tpm, bytes) = self.tpm_payload(nonce).await?;
        let data =
            vouch_core::composite_report_data(nonce, self.key.public_key(), &bytes, &ak_name);
        let r = blocking(move || crate::tee::report(&tee, &data)).await?;
        let payload = vouch_core::CompositePayload {
            tpm,
            tee: vouch_core::TeeReport {
                tee: r.tee.into(),
                report: B64.encode(&r.report),
                certs: r.certs.iter().map(|c| B64.encode(c)).collect(),
            },
        };
        self.sign_payload(vouch_core::EvidenceKind::Composite, &payload)
    }

    /// The AK's TPM name (read from the TPM once).
    #[cfg(feature = "tpm")]
    async fn ak_name(&mut self) -> Result<Vec<u8>, AgentError> {
        if let Some(n) = &self.ak_name {
            return Ok(n.clone());
        }
        let Some(tpm) = self.tpm.clone() else {
            return Err(AgentError::Config("no TPM configured".into()));
        };
        let id = blocking(move || tpm.identity()).await?;
        let name = vouch_tpm::TpmtPublic::from_tpm2b(&id.ak_public)
            .map_err(|e| AgentError::Protocol(format!("the TPM's AK: {e}")))?
            .name();
        self.ak_name = Some(name.clone());
        Ok(name)
    }

    /// Measurements and a quote binding them: the `tpm` payload and the measurements' bytes.
    #[cfg(feature = "tpm")]
    async fn tpm_payload(
        &mut self,
        nonce: &str,
    ) -> Result<(vouch_core::TpmPayload, Vec<u8>), AgentError> {
        let Some(tpm) = self.tpm.clone() else {
            return Err(AgentError::Config("no TPM configured".into()));
        };
        let m = self.measure(nonce)?;
        let bytes = serde_json::to_vec(&m).map_err(|e| AgentError::Protocol(e.to_string()))?;
        let extra = vouch_core::tpm_extra_data(nonce, self.key.public_key(), &bytes);
        let start = self.ima_sent;
        let (q, ima, eventlog) = blocking(move || {
            let q = tpm.quote(&extra)?;
            let ima = tpm.ima_slice(start)?;
            Ok((q, ima, tpm.eventlog()?))
        })
        .await?;
        let payload = vouch_core::TpmPayload {
            measurements: B64.encode(&bytes),
            attest: B64.encode(&q.attest),
            quote_signature: B64.encode(&q.signature),
            pcrs: q.pcrs.to_hex(),
            ima,
            eventlog: eventlog.map(|l| B64.encode(l)),
        };
        Ok((payload, bytes))
    }

    /// Collect, ask the TEE for a report binding the nonce, agent key and measurements, and
    /// sign `tee` evidence for `nonce`.
    pub async fn tee_evidence(&mut self, nonce: &str) -> Result<vouch_core::Evidence, AgentError> {
        let Some(tee) = self.cfg.tee.clone() else {
            return Err(AgentError::Config("no TEE configured".into()));
        };
        let m = self.measure(nonce)?;
        let bytes = serde_json::to_vec(&m).map_err(|e| AgentError::Protocol(e.to_string()))?;
        let data = vouch_core::tee_report_data(nonce, self.key.public_key(), &bytes);
        let r = blocking(move || crate::tee::report(&tee, &data)).await?;
        let payload = vouch_core::TeePayload {
            tee: r.tee.into(),
            measurements: B64.encode(&bytes),
            report: B64.encode(&r.report),
            certs: r.certs.iter().map(|c| B64.encode(c)).collect(),
        };
        self.sign_payload(vouch_core::EvidenceKind::Tee, &payload)
    }

    /// Sign a kind's payload (JSON, base64url) with the agent key.
    fn sign_payload<T: serde::Serialize>(
        &self,
        kind: vouch_core::EvidenceKind,
        payload: &T,
    ) -> Result<vouch_core::Evidence, AgentError> {
        let payload = B64
            .encode(serde_json::to_vec(payload).map_err(|e| AgentError::Protocol(e.to_string()))?);
        let signature = self
            .key
            .sign_b64(&vouch_core::evidence_signing_input(kind, &payload));
        Ok(vouch_core::Evidence {
            kind,
            key_id: self.enrollment.key_id.clone(),
            payload,
            signature,
        })
    }

    async fn enroll(
        clients: &[VerifierClient],
        key: &AgentKey,
        token: &str,
    ) -> Result<Enrollment, AgentError> {
        let pk = key.public_key_b64();
        let req = EnrollRequest {
            join_token: token.to_string(),
            signature: key.sign_b64(&enroll_signing_input(token, &pk)),
            public_key: pk,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        };
        let mut last = None;
        for c in clients {
            match c.enroll(&req).await {
                Ok(r) => {
                    return Ok(Enrollment {
                        node_id: r.node_id,
                        key_id: r.key_id,
                    });
                }
                Err(e @ AgentError::Unreachable { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(AgentError::Config("no verifier".into())))
    }

    /// Join by node attestation: a fresh nonce, the platform's document, signed with the key
    /// to enroll; the first verifier that answers decides.
    async fn attest_node(
        clients: &[VerifierClient],
        key: &AgentKey,
        n: &NodeAttestationConfig,
    ) -> Result<Enrollment, AgentError> {
        let pk = key.public_key_b64();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let mut last = None;
        for c in clients {
            let challenge = match c.challenge().await {
                Ok(ch) => ch,
                Err(e @ AgentError::Unreachable { .. }) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let data = B64.encode(n.document(&challenge).await?);
            let req = vouch_core::wire::NodeAttestRequest {
                signature: key.sign_b64(&vouch_core::wire::node_attest_signing_input(
                    &n.method,
                    &data,
                    &pk,
                    &hostname,
                    &challenge.nonce,
                )),
                method: n.method.clone(),
                data,
                public_key: pk.clone(),
                hostname: hostname.clone(),
                nonce: challenge.nonce,
            };
            match c.node_attest(&req).await {
                Ok(r) => {
                    tracing::info!(method = %n.method, node = %r.node_id, "node attested");
                    return Ok(Enrollment {
                        node_id: r.node_id,
                        key_id: r.key_id,
                    });
                }
                Err(e @ AgentError::Unreachable { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(AgentError::Config("no verifier".into())))
    }

    /// This agent's enrollment.
    pub fn enrollment(&self) -> &Enrollment {
        &self.enrollment
    }

    /// This agent's key.
    pub fn key(&self) -> &AgentKey {
        &self.key
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The client currently in use.
    pub fn client(&self) -> &VerifierClient {
        &self.clients[self.current % self.clients.len()]
    }

    /// Collect the measurements for `nonce`, sending each part the current verifier holds
    /// unchanged by its digest instead of in full.
    fn measure(&mut self, nonce: &str) -> Result<vouch_core::SoftwareMeasurements, AgentError> {
        let mut m = self.collectors[self.active].collect(nonce, now())?;
        if let Some(held) = self.held.get(self.held_slot(self.current)) {
            vouch_core::send_held_parts_by_digest(&mut m, held);
        }
        m.release_key = self.release_key.clone();
        Ok(m)
    }

    /// Collect and sign evidence for `nonce` without sending it, every part in full.
    pub fn evidence(&mut self, nonce: &str) -> Result<vouch_core::Evidence, AgentError> {
        let m = self.collectors[self.active].collect(nonce, now())?;
        Ok(sign_software_evidence(
            &self.key,
            &self.enrollment.key_id,
            &m,
        )?)
    }

    /// Software evidence for `nonce` as a round sends it: unchanged parts the current
    /// verifier holds go by digest.
    fn round_evidence(&mut self, nonce: &str) -> Result<vouch_core::Evidence, AgentError> {
        let m = self.measure(nonce)?;
        Ok(sign_software_evidence(
            &self.key,
            &self.enrollment.key_id,
            &m,
        )?)
    }

    /// One round: challenge, collect, sign, attest. Fails over to the next verifier when one
    /// cannot be reached. The latest result is written to `<data_dir>/result.jwt` (and, signed with
    /// ML-DSA-65 too, `result.pq.json`). Then each
    /// declared workload (`workloads`) is attested the same way, on its own; the node's result
    /// is returned.
    pub async fn attest_once(&mut self) -> Result<AttestationResult, AgentError> {
        self.observe_containers().await;
        let r = self.attest_failover().await;
        self.metrics.round(&r);
        if let Ok(AttestationResult {
            entries_revision: Some(rev),
            ..
        }) = &r
        {
            self.entries.send_if_modified(|cur| {
                let changed = *cur != *rev;
                *cur = *rev;
                changed
            });
        }
        if let Some(s) = NodeStatus::of(&r) {
            self.status.send_if_modified(|cur| {
                let changed = *cur != s;
                *cur = s;
                changed
            });
        }
        if self.collectors.len() > 1 {
            self.attest_declared().await;
        }
        r
    }

    /// Ask the container runtime (`container`) which containers run now, and have each
    /// workload report its own with their image digests: a declared workload the running
    /// containers carrying all its `container:` selectors, the node's workload every running
    /// container when `node_containers` is set. A runtime that does not answer leaves the
    /// previous report in place (logged), marked `containers_unlisted` with the reason in each
    /// of those workloads' evidence until it answers again.
    async fn observe_containers(&mut self) {
        let Some(rt) = &self.container_runtime else {
            return;
        };
        let all = self
            .cfg
            .container
            .as_ref()
            .is_some_and(|c| c.node_containers);
        let wanted = all
            || self
                .cfg
                .workloads
                .iter()
                .any(|w| w.selectors.iter().any(|s| s.starts_with("container:")));
        if !wanted {
            // No workload reports containers: the runtime is not asked.
            return;
        }
        let running = match rt.running().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    "container runtime: {e}; the containers reported last stay, marked unlisted"
                );
                // Each workload asked to report its containers says it could not list them,
                // so the verifier does not take the last list (or none) as complete.
                let reason = e.to_string();
                for (k, c) in self.collectors.iter_mut().enumerate() {
                    let asked = match k.checked_sub(1) {
                        None => all,
                        Some(w) => self.cfg.workloads.get(w).is_some_and(|w| {
                            w.selectors.iter().any(|s| s.starts_with("container:"))
                        }),
                    };
                    if asked {
                        c.set_containers_unlisted(Some(reason.clone()));
                    }
                }
                return;
            }
        };
        for (k, c) in self.collectors.iter_mut().enumerate() {
            c.set_containers_unlisted(None);
            let images = match k.checked_sub(1) {
                None if all => running.iter().map(|i| i.image()).collect(),
                None => Vec::new(),
                Some(w) => self
                    .cfg
                    .workloads
                    .get(w)
                    .map(|w| crate::workload_containers(&running, &w.selectors))
                    .unwrap_or_default(),
            };
            c.set_containers(images);
        }
    }

    /// Where the parts verifier `i` holds for the active workload are kept.
    fn held_slot(&self, i: usize) -> usize {
        i * self.collectors.len() + self.active
    }

    /// Attest each declared workload once (after the node's own round): each gets its own
    /// result, written to `<data_dir>/results/<name>.jwt`, and its status is published.
    async fn attest_declared(&mut self) {
        for k in 1..self.collectors.len() {
            self.active = k;
            let name = self.collectors[k].config().workload_name.clone();
            let r = self.attest_failover().await;
            self.active = 0;
            if let Ok(res) = &r {
                let dir = self.cfg.data_dir.join("results");
                let written = std::fs::create_dir_all(&dir)
                    .map_err(|source| AgentError::Io {
                        what: format!("creating {}", dir.display()),
                        source,
                    })
                    .and_then(|()| {
                        write_atomic(&dir.join(format!("{name}.jwt")), res.result.as_bytes())
                    });
                if let Err(e) = written {
                    tracing::warn!(workload = %name, "{e}");
                }
                tracing::info!(workload = %name, status = %res.status, "workload attested");
            } else if let Err(e) = &r {
                tracing::warn!(workload = %name, "workload not attested: {e}");
            }
            if let Some(st) = NodeStatus::of(&r) {
                let changed = self.workload_status.send_if_modified(|m| {
                    let changed = m.get(&name) != Some(&st);
                    m.insert(name.clone(), st);
                    changed
                });
                if changed {
                    // Open Workload API streams look again (they wake on entry changes),
                    // so a workload that stopped affirming loses its SVIDs now.
                    self.entries.send_modify(|_| {});
                }
            }
        }
    }

    /// The latest status of each declared workload, by name, and its changes.
    pub fn workload_status(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::BTreeMap<String, NodeStatus>> {
        self.workload_status.subscribe()
    }

    /// The measurement parts the current verifier said it holds (name to SHA-256), which the
    /// next round sends by digest while they do not change.
    pub fn held_parts(&self) -> std::collections::BTreeMap<String, String> {
        self.held
            .get(self.current * self.collectors.len())
            .cloned()
            .unwrap_or_default()
    }

    /// The agent's metrics (what `metrics_listen` serves).
    pub fn metrics(&self) -> Arc<crate::AgentMetrics> {
        self.metrics.clone()
    }

    /// The node's status as of the latest attestation, and its changes.
    pub fn status(&self) -> tokio::sync::watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }

    /// A handle that obtains SVIDs for this node's workloads (the Workload API's backend).
    pub fn identity_source(&self) -> Result<crate::IdentitySource, AgentError> {
        crate::IdentitySource::new(
            self.key.clone(),
            self.enrollment.key_id.clone(),
            self.cfg.workload_name.clone(),
            self.clients.clone(),
            &self.cfg.trust_domain,
            self.status(),
            self.entries.subscribe(),
        )
        .map(|s| {
            s.with_containers(self.cfg.container.as_ref())
                .with_workloads(
                    self.cfg
                        .workloads
                        .iter()
                        .map(|w| (w.name.clone(), w.selectors.clone()))
                        .collect(),
                    self.workload_status.subscribe(),
                )
        })
        .and_then(|s| s.with_k8s(self.cfg.k8s.as_ref()))
        .map(|s| s.with_metrics(self.metrics.clone()))
    }

    /// Try the current verifier, and on an unreachable verifier or a retryable refusal
    /// (store unavailable, quorum unavailable, internal error) the next ones. A verifier that
    /// failed is backed off (1 s, doubling to 60 s) and, when its time comes, asked `/readyz`
    /// before it gets evidence again; when every verifier is backed off, the one due first is
    /// tried anyway.
    async fn attest_failover(&mut self) -> Result<AttestationResult, AgentError> {
        let mut last = None;
        let n = self.clients.len();
        for _ in 0..n {
            self.current = self.pick().await;
            let i = self.current;
            match self.round().await {
                Ok(r) => {
                    self.backoff[i] = (0, None);
                    if self.active == 0 {
                        // With the verifier's pq_signatures, also the result with its
                        // ML-DSA-65 signature (JWS JSON), for relying parties that require it.
                        if let Some(pq) = &r.result_pq {
                            write_atomic(&self.cfg.data_dir.join("result.pq.json"), pq.as_bytes())?;
                        }
                        write_atomic(&self.cfg.data_dir.join("result.jwt"), r.result.as_bytes())?;
                    }
                    return Ok(r);
                }
                Err(e) if failover_worthy(&e) => {
                    let (fails, _) = self.backoff[i];
                    let wait = Duration::from_secs((1u64 << fails.min(6)).min(60));
                    self.backoff[i] = (fails + 1, Some(std::time::Instant::now() + wait));
                    tracing::warn!(
                        "{e}; backing off {} for {wait:?}, trying the next verifier",
                        self.clients[i].base_url()
                    );
                    self.current = (i + 1) % n;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(AgentError::Config("no verifier".into())))
    }

    /// The first verifier from the current one on that is not backed off (and, when it was,
    /// answers its readiness check); the one due soonest when all are.
    async fn pick(&mut self) -> usize {
        let n = self.clients.len();
        let now = std::time::Instant::now();
        for k in 0..n {
            let i = (self.current + k) % n;
            match self.backoff[i] {
                (_, None) => return i,
                (_, Some(until)) if until <= now => {
                    if self.clients[i].ready().await {
                        return i;
                    }
                    let fails = self.backoff[i].0 + 1;
                    let wait = Duration::from_secs((1u64 << fails.min(6)).min(60));
                    self.backoff[i] = (fails, Some(now + wait));
                }
                _ => {}
            }
        }
        (0..n)
            .min_by_key(|i| self.backoff[*i].1)
            .unwrap_or(self.current)
    }

    async fn round(&mut self) -> Result<AttestationResult, AgentError> {
        let r = self.round_once().await;
        let i = self.held_slot(self.current);
        match &r {
            Ok(res) => {
                if let Some(h) = self.held.get_mut(i) {
                    *h = res.held_parts.clone();
                }
                if let Some(n) = self.next_nonce.get_mut(i) {
                    n.clone_from(&res.next_nonce);
                }
            }
            // The verifier no longer holds a part sent by digest (restarted, evicted it, or
            // another replica answered): send everything in full, at once.
            Err(e) if e.kind() == Some(ErrorKind::PartsUnknown) => {
                if let Some(h) = self.held.get_mut(i) {
                    h.clear();
                }
                let r = self.round_once().await;
                if let (Ok(res), Some(h)) = (&r, self.held.get_mut(i)) {
                    *h = res.held_parts.clone();
                }
                return r;
            }
            Err(_) => {}
        }
        r
    }

    async fn round_once(&mut self) -> Result<AttestationResult, AgentError> {
        let client = self.client().clone();
        // The nonce the last result gave, while it has a few seconds left; else ask.
        let given = self
            .next_nonce
            .get_mut(self.current)
            .and_then(Option::take)
            .filter(|n| n.expires_at > now().saturating_add(5));
        let ch = match given {
            Some(n) => n,
            None => client.challenge().await?,
        };
        #[cfg(feature = "tpm")]
        let evidence = match (self.tpm.is_some(), self.cfg.tee.is_some()) {
            (true, true) => self.composite_evidence(&ch.nonce).await?,
            (true, false) => self.tpm_evidence(&ch.nonce).await?,
            (false, true) => self.tee_evidence(&ch.nonce).await?,
            (false, false) => self.round_evidence(&ch.nonce)?,
        };
        #[cfg(not(feature = "tpm"))]
        let evidence = if self.cfg.tee.is_some() {
            self.tee_evidence(&ch.nonce).await?
        } else {
            self.round_evidence(&ch.nonce)?
        };
        let r = client
            .attest(&AttestRequest {
                evidence,
                result_audience: self.cfg.result_audience.clone(),
            })
            .await;
        #[cfg(feature = "tpm")]
        match &r {
            Ok(res) => self.ima_sent = res.ima_position.unwrap_or(self.ima_sent),
            // The verifier may have lost or reset its replay: start over from entry 0.
            Err(_) => self.ima_sent = 0,
        }
        r
    }

    /// Attest every interval and whenever a measured file changes, until `shutdown` resolves.
    /// `on_result` sees every outcome.
    pub async fn run<F>(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut on_result: F,
    ) -> Result<(), AgentError>
    where
        F: FnMut(&Result<AttestationResult, AgentError>),
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let _watcher = self.watch(tx)?;
        // The Workload API lives as long as this loop: dropping the handle stops it.
        let _api = match &self.cfg.workload_api_socket {
            Some(path) => Some(crate::spawn_workload_api_with(
                self.identity_source()?,
                path,
                crate::WorkloadApiLimits {
                    max_connections: self.cfg.workload_api_max_connections,
                    max_connections_per_uid: self.cfg.workload_api_max_connections_per_uid,
                    idle_timeout: Duration::from_secs(self.cfg.workload_api_idle_timeout),
                },
            )?),
            None => None,
        };
        let _metrics = match self.cfg.metrics_listen {
            Some(addr) => {
                let (addr, task) = crate::serve_metrics(addr, self.metrics.clone()).await?;
                tracing::info!(%addr, "serving /metrics and /healthz");
                Some(AbortOnDrop(task))
            }
            None => None,
        };
        let interval = Duration::from_secs(self.cfg.interval.max(1));
        // Entry changes pushed by the verifier (a long poll), not only at the next round.
        let follower = tokio::spawn(crate::entries::follow(
            self.clients.clone(),
            self.current,
            self.key.clone(),
            self.enrollment.key_id.clone(),
            self.entries.clone(),
            interval,
        ));
        let _follower = AbortOnDrop(follower);
        // Secrets asked for by local callers, answered between rounds (each is an attestation
        // of its own, for a fresh nonce and key).
        let (secret_tx, mut secret_rx) = tokio::sync::mpsc::channel(16);
        let _secrets = match &self.cfg.secret_socket {
            Some(path) => Some(AbortOnDrop(secret::serve_secret_socket(
                path,
                secret_tx,
                self.identity_source()?,
            )?)),
            None => None,
        };
        tokio::pin!(shutdown);
        loop {
            let r = self.attest_once().await;
            on_result(&r);
            let next = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep_until(next) => break,
                    Some(ask) = secret_rx.recv() => self.answer(ask).await,
                    Some(()) = rx.recv() => {
                        // Let a burst of writes settle, then measure once.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        while rx.try_recv().is_ok() {}
                        tracing::info!("a measured file changed; attesting now");
                        break;
                    }
                }
            }
        }
    }

    fn watch(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Result<Option<notify::RecommendedWatcher>, AgentError> {
        use notify::Watcher;
        let mut watched: Vec<PathBuf> = self.cfg.files.clone();
        for (k, c) in self.collectors.iter().enumerate() {
            watched.push(c.config().exe.clone());
            if k > 0 {
                watched.extend(c.config().files.iter().cloned());
            }
        }
        let targets = watched.clone();
        let handler = move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev
                && !matches!(ev.kind, notify::EventKind::Access(_))
                && ev.paths.iter().any(|p| targets.iter().any(|t| t == p))
            {
                let _ = tx.send(());
            }
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "file watching unavailable ({e}); re-attesting on the interval only"
                );
                return Ok(None);
            }
        };
        let mut dirs: Vec<PathBuf> = watched
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            if let Err(e) = w.watch(&d, notify::RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}", d.display());
            }
        }
        Ok(Some(w))
    }
}

/// Ends a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run a blocking TPM or TEE operation off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Config(format!("TPM task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_spread_over_the_verifiers() {
        let mut counts = [0usize; 3];
        for i in 0..300u32 {
            let id = format!(
                "ak-{:016x}",
                u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            counts[start_index(&id, 3)] += 1;
        }
        assert!(counts.iter().all(|c| *c >= 60), "{counts:?}");
        assert_eq!(start_index("anything", 1), 0);
    }

    #[test]
    fn only_unreachable_verifiers_and_retryable_refusals_fail_over() {
        let refused = |kind| AgentError::Refused {
            status: 503,
            kind,
            message: String::new(),
        };
        assert!(failover_worthy(&refused(ErrorKind::StoreUnavailable)));
        assert!(failover_worthy(&refused(ErrorKind::QuorumUnavailable)));
        assert!(!failover_worthy(&refused(ErrorKind::NonceReused)));
        assert!(!failover_worthy(&refused(ErrorKind::Revoked)));
    }
}
