//! Kubernetes workload attestation: which pod and container a Workload API caller runs in, and
//! what the kubelet says that pod is.
//!
//! Two sources, neither of them the caller (as SPIRE's `k8s` workload attestor):
//!
//! 1. **The kernel**, for *which* container: `/proc/<pid>/cgroup`. The container ids are read
//!    as [`crate::container`] reads them (every runtime, cgroup v1, v2 and hybrid); the pod
//!    uid, when the path shows it, from the kubelet's pod cgroup: `…/kubepods/<qos>/pod<uid>/…`
//!    (cgroupfs driver) or `…/kubepods-<qos>-pod<uid with _>.slice/…` (systemd driver). Inside
//!    a cgroup namespace (cgroup v2, `0::/../crio-<id>.scope`) only the container id shows;
//!    it alone then decides.
//! 2. **The kubelet**, for *what* that pod is: `GET <kubelet_url>/pods` on its authenticated
//!    port (10250) with the agent's service-account token, the kubelet's certificate checked
//!    against a configured CA (or, opted out explicitly as SPIRE's
//!    `skip_kubelet_verification`, not checked). The pod whose container status names the
//!    caller's container id (`<runtime>://<id>`, in `containerStatuses`,
//!    `initContainerStatuses` or `ephemeralContainerStatuses`) is the caller's; if the cgroup
//!    showed a pod uid, that pod must have it. Two pods naming the container is refused.
//!
//! The list is reused for [`K8sConfig::cache_ms`]; a container not in it is looked for once
//! more in a list fetched anew (a pod that just started), at most every
//! [`K8sConfig::refetch_min_ms`], so a caller cannot make the agent hammer its kubelet.
//!
//! Selectors: `k8s:ns:`, `k8s:sa:`, `k8s:pod-name:`, `k8s:pod-uid:`, `k8s:pod-label:<k>:<v>`,
//! `k8s:container-name:`, `k8s:container-image-digest:sha256:<hex>` (the repo digest in the
//! status's `imageID`; an image id without one gives none) and `k8s:node-name:`. A caller in
//! no container gets none; one whose cgroup is a pod's but whom the kubelet does not list is
//! refused.
//!
//! The kubelet's answer is untrusted input: at most [`MAX_POD_LIST_BYTES`], within
//! [`K8sConfig::timeout_ms`], parsed into the few fields used; values that cannot form a
//! selector are left out, and at most [`MAX_POD_LABELS`] labels are taken.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::container::{ContainerId, container_ids_from_cgroup};

/// Largest kubelet pod list read.
pub const MAX_POD_LIST_BYTES: usize = 32 * 1024 * 1024;
/// Largest service-account token file read.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Most pod labels turned into selectors. The verifier takes at most 64 selectors a request:
/// 4 `unix:`, up to 34 `container:` and 7 other `k8s:` ones leave room for 16.
pub const MAX_POD_LABELS: usize = 16;
/// Longest selector value the verifier accepts.
const MAX_SELECTOR_VALUE: usize = 256;
/// Largest `/proc/<pid>/cgroup` read.
const MAX_CGROUP_BYTES: usize = 64 * 1024;

/// Where the agent asks the kubelet about its callers' pods (`[k8s]` in the agent's
/// configuration; off unless present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct K8sConfig {
    /// The kubelet's authenticated endpoint. Its certificate must name the host: with a
    /// verified kubelet use the node's name (`https://$(NODE_NAME):10250`, from the downward
    /// API).
    pub kubelet_url: String,
    /// The agent's service-account token, sent as `Authorization: Bearer` (read at each fetch:
    /// the kubelet rotates projected tokens).
    pub token_path: PathBuf,
    /// CA certificates (PEM) the kubelet's certificate must chain to.
    pub kubelet_ca: Option<PathBuf>,
    /// Do not check the kubelet's certificate (SPIRE's `skip_kubelet_verification`): anyone
    /// who can answer on the kubelet's address can then name any pod.
    pub skip_kubelet_verification: bool,
    /// Milliseconds one pod-list fetch may take.
    pub timeout_ms: u64,
    /// Milliseconds a fetched pod list is reused.
    pub cache_ms: u64,
    /// Fewest milliseconds between two fetches made because a container was not listed.
    pub refetch_min_ms: u64,
}

impl Default for K8sConfig {
    fn default() -> Self {
        Self {
            kubelet_url: "https://127.0.0.1:10250".into(),
            token_path: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
            kubelet_ca: Some(PathBuf::from(
                "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            )),
            skip_kubelet_verification: false,
            timeout_ms: 5000,
            cache_ms: 5000,
            refetch_min_ms: 500,
        }
    }
}

/// Why a caller's pod could not be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// `/proc/<pid>/cgroup` could not be read or is not a cgroup file.
    #[error("cgroup file: {0}")]
    Cgroup(String),
    /// The configuration cannot be used (CA file, token file, URL).
    #[error("k8s: configuration: {0}")]
    Config(String),
    /// The kubelet could not be asked (connection, TLS, timeout, HTTP status).
    #[error("kubelet at {url}: {why}")]
    Kubelet {
        /// The URL asked.
        url: String,
        /// What failed.
        why: String,
    },
    /// The kubelet's answer is not a pod list this agent takes.
    #[error("kubelet's pod list: {0}")]
    Answer(String),
    /// Two pods name the caller's container.
    #[error("container {0} is listed in two pods ({1} and {2})")]
    Ambiguous(String, String, String),
    /// The pod that lists the container is not the pod the cgroup names.
    #[error("container {container} is listed in pod {listed}, but its cgroup is pod {cgroup}'s")]
    PodMismatch {
        /// The container.
        container: String,
        /// The pod uid the kubelet lists it under.
        listed: String,
        /// The pod uid the cgroup path names.
        cgroup: String,
    },
    /// The caller's cgroup is a pod's, but the kubelet lists none of its containers.
    #[error("the caller runs in container {0} of a pod the kubelet does not list (yet)")]
    NotListed(String),
    /// The kernel gave no pid for the caller.
    #[error("the caller's pid is unknown, so its pod cannot be told")]
    NoPid,
}

impl K8sError {
    /// Whether asking again later may succeed (the kubelet did not answer, or does not list
    /// the container yet).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Kubelet { .. } | Self::NotListed(_))
    }
}

/// What a `/proc/<pid>/cgroup` file says about a process's pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodCgroup {
    /// The pod uid the kubelet's pod cgroup names, when the path shows it.
    pub pod_uid: Option<String>,
    /// The container ids, outermost first (see
    /// [`crate::container::container_ids_from_cgroup`]); empty: in no container.
    pub containers: Vec<ContainerId>,
    /// Whether a path runs through the kubelet's `kubepods` cgroups.
    pub kubepods: bool,
}

/// `s` if it is a pod uid (a UUID: 8-4-4-4-12 lowercase hex digits).
fn uuid(s: &str) -> Option<String> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    ok.then(|| s.to_string())
}

/// The pod uid one path component names: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd).
fn pod_component(c: &str) -> Option<String> {
    if let Some(u) = c.strip_prefix("pod") {
        return uuid(u);
    }
    let s = c.strip_suffix(".slice")?;
    if !s.starts_with("kubepods") {
        return None;
    }
    let (_, u) = s.rsplit_once("-pod")?;
    uuid(&u.replace('_', "-"))
}

/// What `/proc/<pid>/cgroup` text says about the process's pod: its container ids (as
/// [`container_ids_from_cgroup`] reads them) and the pod uid in a kubepods path. Lines naming
/// two different pods are refused.
pub fn pod_of_cgroup(text: &str) -> Result<PodCgroup, K8sError> {
    let containers =
        container_ids_from_cgroup(text).map_err(|e| K8sError::Cgroup(e.to_string()))?;
    let mut pod_uid: Option<String> = None;
    let mut kubepods = false;
    for line in text.lines() {
        let Some(path) = line.trim().splitn(3, ':').nth(2) else {
            continue;
        };
        let mut under_kubepods = false;
        for c in path.split('/') {
            if c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-") {
                under_kubepods = true;
                kubepods = true;
            }
            if !under_kubepods {
                continue;
            }
            if let Some(u) = pod_component(c) {
                match &pod_uid {
                    Some(p) if *p != u => {
                        return Err(K8sError::Cgroup(format!(
                            "the cgroup file places the process in two pods: {p} and {u}"
                        )));
                    }
                    _ => pod_uid = Some(u),
                }
            }
        }
    }
    Ok(PodCgroup {
        pod_uid,
        containers,
        kubepods,
    })
}

/// What `/proc/<pid>/cgroup` says about process `pid`'s pod (see [`pod_of_cgroup`]).
pub fn pod_of(pid: i32) -> Result<PodCgroup, K8sError> {
    use std::io::Read as _;
    let path = format!("/proc/{pid}/cgroup");
    let f = std::fs::File::open(&path).map_err(|e| K8sError::Cgroup(format!("{path}: {e}")))?;
    let mut buf = Vec::new();
    f.take(MAX_CGROUP_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| K8sError::Cgroup(format!("{path}: {e}")))?;
    pod_of_cgroup(&String::from_utf8_lossy(&buf))
}

#[derive(Deserialize)]
struct ListJson {
    kind: Option<String>,
    #[serde(default)]
    items: Vec<PodJson>,
}

#[derive(Deserialize)]
struct PodJson {
    metadata: MetaJson,
    #[serde(default)]
    spec: SpecJson,
    #[serde(default)]
    status: StatusJson,
}

#[derive(Deserialize)]
struct MetaJson {
    name: String,
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecJson {
    node_name: Option<String>,
    service_account_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusJson {
    #[serde(default)]
    container_statuses: Vec<StatusEntry>,
    #[serde(default)]
    init_container_statuses: Vec<StatusEntry>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<StatusEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusEntry {
    name: String,
    #[serde(rename = "containerID")]
    container_id: Option<String>,
    #[serde(rename = "imageID")]
    image_id: Option<String>,
}

/// One container of a listed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    id: ContainerId,
    name: String,
    image_digest: Option<String>,
}

/// One pod of the kubelet's list, reduced to what selectors are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pod {
    name: String,
    namespace: String,
    uid: String,
    labels: BTreeMap<String, String>,
    node_name: Option<String>,
    service_account: Option<String>,
    containers: Vec<Container>,
}

/// The kubelet's pod list, reduced to what selectors are made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodList {
    pods: Vec<Pod>,
}

/// `sha256:<hex>` from an image reference's `@sha256:<hex>` (a repo digest).
fn repo_digest(image_id: &str) -> Option<String> {
    let (_, d) = image_id.rsplit_once('@')?;
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| d.to_string())
}

/// The container id of a status's `containerID` (`<runtime>://<id>`).
fn status_container_id(s: &str) -> Option<ContainerId> {
    let (_, id) = s.split_once("://")?;
    ContainerId::parse(id)
}

/// Parse the kubelet's `/pods` answer (a `PodList`), at most [`MAX_POD_LIST_BYTES`].
pub fn parse_pod_list(body: &[u8]) -> Result<PodList, K8sError> {
    if body.len() > MAX_POD_LIST_BYTES {
        return Err(K8sError::Answer(format!(
            "{} bytes (at most {MAX_POD_LIST_BYTES})",
            body.len()
        )));
    }
    let list: ListJson =
        serde_json::from_slice(body).map_err(|e| K8sError::Answer(e.to_string()))?;
    if let Some(k) = &list.kind
        && k != "PodList"
        && k != "List"
    {
        return Err(K8sError::Answer(format!("kind {k:?}, not a PodList")));
    }
    let pods = list
        .items
        .into_iter()
        .map(|p| {
            let containers = p
                .status
                .container_statuses
                .into_iter()
                .chain(p.status.init_container_statuses)
                .chain(p.status.ephemeral_container_statuses)
                .filter_map(|s| {
                    // A container not yet started has no id: nothing to match.
                    let id = status_container_id(s.container_id.as_deref()?)?;
                    Some(Container {
                        id,
                        name: s.name,
                        image_digest: s.image_id.as_deref().and_then(repo_digest),
                    })
                })
                .collect();
            Pod {
                name: p.metadata.name,
                namespace: p.metadata.namespace,
                uid: p.metadata.uid,
                labels: p.metadata.labels,
                node_name: p.spec.node_name,
                service_account: p.spec.service_account_name,
                containers,
            }
        })
        .collect();
    Ok(PodList { pods })
}

/// Whether `value` may stand in a selector the verifier accepts.
fn value_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SELECTOR_VALUE
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Add `k8s:<kind>:<value>` when the verifier would take it (everything after `k8s:` is the
/// selector's value).
fn push(out: &mut Vec<String>, kind: &str, value: &str) {
    let v = format!("{kind}:{value}");
    if !value.is_empty() && value_ok(&v) {
        out.push(format!("k8s:{v}"));
    }
}

impl PodList {
    /// How many pods the list holds.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the list holds no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The `k8s:` selectors of the container `cg` places a process in; `None` when no pod
    /// lists any of its containers. The candidates are asked outermost first (a process that
    /// can create cgroups below its own can name one after another container, but only below
    /// its own).
    pub fn selectors(&self, cg: &PodCgroup) -> Result<Option<Vec<String>>, K8sError> {
        for id in &cg.containers {
            let mut found: Option<(&Pod, &Container)> = None;
            for pod in &self.pods {
                let Some(c) = pod.containers.iter().find(|c| c.id == *id) else {
                    continue;
                };
                if let Some((other, _)) = found
                    && other.uid != pod.uid
                {
                    return Err(K8sError::Ambiguous(
                        id.to_string(),
                        other.uid.clone(),
                        pod.uid.clone(),
                    ));
                }
                found = Some((pod, c));
            }
            let Some((pod, c)) = found else { continue };
            if let Some(u) = &cg.pod_uid
                && *u != pod.uid
            {
                return Err(K8sError::PodMismatch {
                    container: id.to_string(),
                    listed: pod.uid.clone(),
                    cgroup: u.clone(),
                });
            }
            let mut out = Vec::new();
            push(&mut out, "ns", &pod.namespace);
            if let Some(sa) = &pod.service_account {
                push(&mut out, "sa", sa);
            }
            push(&mut out, "pod-name", &pod.name);
            push(&mut out, "pod-uid", &pod.uid);
            let mut labels = 0;
            for (k, v) in &pod.labels {
                if labels == MAX_POD_LABELS {
                    tracing::debug!(pod = %pod.uid, "more than {MAX_POD_LABELS} labels; the rest give no selectors");
                    break;
                }
                let before = out.len();
                if !k.is_empty() && !k.contains(':') {
                    push(&mut out, "pod-label", &format!("{k}:{v}"));
                }
                labels += out.len() - before;
            }
            push(&mut out, "container-name", &c.name);
            if let Some(d) = &c.image_digest {
                push(&mut out, "container-image-digest", d);
            }
            if let Some(n) = &pod.node_name {
                push(&mut out, "node-name", n);
            }
            return Ok(Some(out));
        }
        Ok(None)
    }
}

/// Asks the kubelet which pods run on this node, and remembers the answer for a while.
#[derive(Debug)]
pub struct K8sAttestor {
    cfg: K8sConfig,
    url: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<(Instant, Arc<PodList>)>>,
}

impl K8sAttestor {
    /// An attestor asking the kubelet `cfg` names: its CA read now (a kubelet CA is required
    /// unless `skip_kubelet_verification`).
    pub fn new(cfg: K8sConfig) -> Result<Self, K8sError> {
        let base = cfg.kubelet_url.trim_end_matches('/');
        if !base.starts_with("https://") {
            return Err(K8sError::Config(format!(
                "kubelet_url {}: not an https:// URL",
                cfg.kubelet_url
            )));
        }
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vouch-agent/", env!("CARGO_PKG_VERSION")));
        if cfg.skip_kubelet_verification {
            tracing::warn!(
                "k8s: the kubelet's certificate is not checked (skip_kubelet_verification)"
            );
            b = b.tls_danger_accept_invalid_certs(true);
        } else {
            let Some(ca) = &cfg.kubelet_ca else {
                return Err(K8sError::Config(
                    "kubelet_ca is needed unless skip_kubelet_verification = true".into(),
                ));
            };
            let pem = std::fs::read(ca)
                .map_err(|e| K8sError::Config(format!("kubelet_ca {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| K8sError::Config(format!("kubelet_ca {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(K8sError::Config(format!(
                    "kubelet_ca {}: no certificate",
                    ca.display()
                )));
            }
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| K8sError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            url: format!("{base}/pods"),
            cfg,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    fn kubelet_error(&self, why: impl std::fmt::Display) -> K8sError {
        K8sError::Kubelet {
            url: self.url.clone(),
            why: why.to_string(),
        }
    }

    fn token(&self) -> Result<String, K8sError> {
        use std::io::Read as _;
        let p = &self.cfg.token_path;
        let mut buf = Vec::new();
        std::fs::File::open(p)
            .and_then(|f| f.take(MAX_TOKEN_BYTES as u64 + 1).read_to_end(&mut buf))
            .map_err(|e| K8sError::Config(format!("token {}: {e}", p.display())))?;
        let t = std::str::from_utf8(&buf)
            .ok()
            .map(str::trim)
            .filter(|t| buf.len() <= MAX_TOKEN_BYTES && !t.is_empty())
            .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                K8sError::Config(format!("token {}: not a bearer token", p.display()))
            })?;
        Ok(t.to_string())
    }

    /// Fetch the kubelet's pod list now.
    pub async fn fetch(&self) -> Result<PodList, K8sError> {
        let token = self.token()?;
        let mut res = self
            .http
            .get(&self.url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.kubelet_error(error_chain(&e)))?;
        if !res.status().is_success() {
            return Err(self.kubelet_error(format!("HTTP {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| self.kubelet_error(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_POD_LIST_BYTES {
                return Err(
                    self.kubelet_error(format!("pod list longer than {MAX_POD_LIST_BYTES} bytes"))
                );
            }
            body.extend_from_slice(&chunk);
        }
        parse_pod_list(&body)
    }

    /// The pod list: the cached one while younger than `max_age`, else fetched anew.
    async fn list(&self, max_age: Duration) -> Result<Arc<PodList>, K8sError> {
        // Held across the fetch: concurrent callers wait for one fetch instead of each making
        // their own.
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = &*cache
            && at.elapsed() < max_age
        {
            return Ok(list.clone());
        }
        let list = Arc::new(self.fetch().await?);
        *cache = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The `k8s:` selectors of a process `cg` describes: none when it runs in no container,
    /// or in a container outside any pod; an error when its cgroup is a pod's and the kubelet
    /// lists none of its containers, even in a list fetched anew.
    pub async fn selectors(&self, cg: &PodCgroup) -> Result<Vec<String>, K8sError> {
        if cg.containers.is_empty() {
            return Ok(Vec::new());
        }
        let list = self.list(Duration::from_millis(self.cfg.cache_ms)).await?;
        if let Some(s) = list.selectors(cg)? {
            return Ok(s);
        }
        // Not in the cached list: perhaps a pod that just started. Once more, with a list no
        // older than refetch_min_ms.
        let list = self
            .list(Duration::from_millis(self.cfg.refetch_min_ms))
            .await?;
        if let Some(s) = list.selectors(cg)? {
            return Ok(s);
        }
        if cg.kubepods || cg.pod_uid.is_some() {
            let id = cg
                .containers
                .last()
                .map(|c| c.to_string())
                .unwrap_or_default();
            return Err(K8sError::NotListed(id));
        }
        Ok(Vec::new())
    }

    /// The `k8s:` selectors of process `pid` (see [`K8sAttestor::selectors`]).
    pub async fn selectors_of(&self, pid: Option<i32>) -> Result<Vec<String>, K8sError> {
        let pid = pid.ok_or(K8sError::NoPid)?;
        self.selectors(&pod_of(pid)?).await
    }
}

/// An error and its sources, one line (reqwest's own message hides the TLS cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The `k8s:` selectors of a Workload API caller, or the refusal it gets: its cgroup read now
/// must name the containers it was pinned in when it connected.
pub(crate) async fn caller_selectors(
    attestor: &K8sAttestor,
    caller: &crate::Caller,
) -> Result<Vec<String>, tonic::Status> {
    let refuse = |e: K8sError| {
        tracing::warn!("Workload API: {e}; nothing issued");
        if e.is_transient() {
            tonic::Status::unavailable(e.to_string())
        } else {
            tonic::Status::permission_denied(e.to_string())
        }
    };
    let pid = caller.pid().ok_or_else(|| refuse(K8sError::NoPid))?;
    let cg = pod_of(pid).map_err(refuse)?;
    match caller.containers() {
        Some(Ok(pinned)) if *pinned == cg.containers => {}
        Some(Err(e)) => return Err(refuse(K8sError::Cgroup(e.to_string()))),
        _ => {
            return Err(refuse(K8sError::Cgroup(format!(
                "process {pid} is in other containers than when it connected"
            ))));
        }
    }
    attestor.selectors(&cg).await.map_err(refuse)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn pod_uids_are_read_from_both_drivers_paths_only() {
        let u = "2c48913c-b29f-11e7-9350-020968147796";
        assert_eq!(pod_component(&format!("pod{u}")).as_deref(), Some(u));
        assert_eq!(
            pod_component("kubepods-burstable-pod2c48913c_b29f_11e7_9350_020968147796.slice")
                .as_deref(),
            Some(u)
        );
        assert_eq!(
            pod_component("kubepods-pod2c48913c_b29f_11e7_9350_020968147796.slice").as_deref(),
            Some(u)
        );
        for not in [
            "pod2c48913c",
            "podXc48913c-b29f-11e7-9350-020968147796",
            "pod2C48913C-B29F-11E7-9350-020968147796",
            "user-pod2c48913c_b29f_11e7_9350_020968147796.slice",
            "kubepods-burstable.slice",
        ] {
            assert_eq!(pod_component(not), None, "{not}");
        }
        // A pod-shaped component outside kubepods is not a pod.
        let cg = pod_of_cgroup(&format!(
            "0::/user.slice/pod{u}/docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope"
        ))
        .unwrap();
        assert_eq!(cg.pod_uid, None);
        assert!(!cg.kubepods);
    }

    #[test]
    fn the_configuration_is_off_by_default_and_strict() {
        assert_eq!(crate::AgentConfig::default().k8s, None);
        let c: K8sConfig = serde_json::from_value(serde_json::json!({
            "kubelet_url": "https://node-1:10250",
            "skip_kubelet_verification": true,
        }))
        .unwrap();
        assert_eq!(c.timeout_ms, K8sConfig::default().timeout_ms);
        assert!(c.skip_kubelet_verification);
        assert!(
            serde_json::from_value::<K8sConfig>(serde_json::json!({"skip_verification": true}))
                .is_err()
        );
    }

    #[test]
    fn image_digests_are_repo_digests_only() {
        let h = "1e4c481d76e9ecbd3d8684891e0e46aa021a30920ca04936e1fdcc552747d941";
        assert_eq!(
            repo_digest(&format!("docker-pullable://quay.io/x@sha256:{h}")),
            Some(format!("sha256:{h}"))
        );
        // An image id (the config's digest, no repository) names no pushed manifest.
        assert_eq!(repo_digest(&format!("sha256:{h}")), None);
        assert_eq!(repo_digest("x@sha256:1234"), None);
    }

    #[tokio::test]
    async fn a_caller_on_this_host_in_no_container_gets_no_k8s_selectors() {
        let me = std::process::id() as i32;
        if !pod_of(me).unwrap().containers.is_empty() {
            // Running inside a container: the kubelet would be asked; tests/k8s.rs covers it.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        // No kubelet listens here: a process in no container never asks it.
        let k = K8sAttestor::new(K8sConfig {
            kubelet_url: "https://127.0.0.1:9".into(),
            token_path: token,
            kubelet_ca: None,
            skip_kubelet_verification: true,
            ..K8sConfig::default()
        })
        .unwrap();
        let caller = crate::Caller::pin(0, 0, Some(me));
        assert_eq!(
            caller_selectors(&k, &caller).await.unwrap(),
            Vec::<String>::new()
        );
        let nopid = crate::Caller::pin(0, 0, None);
        assert_eq!(
            caller_selectors(&k, &nopid).await.unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
