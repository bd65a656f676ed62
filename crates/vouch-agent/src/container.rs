//! Container workload attestation: which container a Workload API caller runs in, and what its
//! runtime says that container is.
//!
//! Two sources, neither of them the caller:
//!
//! 1. **The kernel**, for *which* container: `/proc/<pid>/cgroup`, read when the caller is
//!    pinned (see [`crate::Caller`]) and checked again before every issuance. Every runtime
//!    names the cgroup it puts a container in after the container's id (64 hex): podman
//!    `libpod-<id>` (cgroupfs) or `libpod-<id>.scope` (systemd), docker `/docker/<id>` or
//!    `docker-<id>.scope`, CRI-O `crio-<id>.scope`, containerd `cri-containerd-<id>.scope`,
//!    `…slice:cri-containerd:<id>` or a bare `/kubepods/…/pod<uid>/<id>`. cgroup v1, v2 and
//!    hybrid files are read alike: each line's path gives the ids it holds, outermost first;
//!    the lines must agree (one line's ids a prefix of another's: the unified line of a hybrid
//!    host often stops above the container), else the caller is refused. The runtime's monitor
//!    (`libpod-conmon-<id>`, `crio-conmon-<id>`) is not in the container: ids from there on
//!    are not taken.
//! 2. **The runtime's own state**, for *what* that container is: the Docker-compatible Engine
//!    API on its Unix socket (`GET /containers/<id>/json`, then `GET /images/<image id>/json`),
//!    which both `dockerd` and `podman system service` serve — the API SPIRE's docker workload
//!    attestor uses. One client for both runtimes, no runtime library linked in, and podman's
//!    answers come from libpod's own database (the same as `podman inspect`); reading
//!    podman's storage files directly would tie the agent to one storage layout and version.
//!
//! The candidates are asked outermost first and the first container the runtime knows is the
//! caller's: a process inside a container that can create cgroups below its own (cgroup
//! delegation) can name one after another container's id, but only *below* its own, which
//! the runtime knows first. The ids above (a kind node, a docker-in-docker host) that the
//! configured runtime does not know are passed over. A process whose cgroup names container
//! ids none of which the runtime knows is refused, not treated as a host process.
//!
//! Selectors: `container:id:<id>`, `container:image-digest:sha256:<hex>` (each repo digest of
//! the container's image: the manifest digest a registry serves; an image never pushed or
//! pulled has none with docker, podman gives locally built images one),
//! `container:image-name:<name>` (the image as the container was created from it) and
//! `container:label:<key>:<value>` (the container's labels, which include its image's).
//!
//! The runtime's answers are untrusted: at most [`MAX_RESPONSE_BYTES`] each, within
//! [`ContainerConfig::timeout_ms`], parsed into the few fields used; the answer must be about
//! the container asked for; values that cannot form a selector (spaces, control characters,
//! too long, a `:` in a label key) are left out, and at most [`MAX_LABELS`] labels are taken.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Largest `/proc/<pid>/cgroup` read.
pub const MAX_CGROUP_BYTES: usize = 64 * 1024;
/// Most container ids one cgroup path may name (nesting depth).
pub const MAX_CANDIDATES: usize = 8;
/// Largest runtime answer read.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Most labels turned into selectors (the verifier takes at most 64 selectors a request).
pub const MAX_LABELS: usize = 24;
/// Most image digests turned into selectors.
pub const MAX_DIGESTS: usize = 8;
/// Most questions to the runtime at once.
const MAX_ASKING: usize = 4;
/// Most containers whose runtime answers are cached.
const MAX_CACHED: usize = 4096;
/// Longest selector value the verifier accepts.
const MAX_SELECTOR_VALUE: usize = 256;

/// Where the agent asks a container runtime about its callers' containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerConfig {
    /// The runtime's Docker-compatible Engine API socket: `podman system service`'s
    /// (`/run/podman/podman.sock`) or dockerd's (`/var/run/docker.sock`).
    pub socket: PathBuf,
    /// Milliseconds one question to the runtime may take.
    pub timeout_ms: u64,
    /// Seconds a container's answer is reused (a container's image and labels are fixed when
    /// it is created; its image's repo digests may grow).
    pub cache_seconds: u64,
    /// Report every running container (its id and image digests) in the node's own
    /// workload's evidence, so the verifier appraises them all (`input.images`). Declared
    /// `[[workloads]]` with `container:` selectors report the running containers that carry
    /// all of them whether or not this is set.
    pub node_containers: bool,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/podman/podman.sock"),
            timeout_ms: 2000,
            cache_seconds: 30,
            node_containers: false,
        }
    }
}

/// A container id: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// `s` if it is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        is_hex64(s).then(|| Self(s.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a caller's container could not be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// `/proc/<pid>/cgroup` could not be read or is not a cgroup file.
    #[error("cgroup file: {0}")]
    Cgroup(String),
    /// The cgroup hierarchies place the process in different containers.
    #[error("the cgroup file places the process in different containers: {0} and {1}")]
    Ambiguous(String, String),
    /// The runtime could not be asked (socket, timeout, HTTP).
    #[error("container runtime at {socket}: {why}")]
    Runtime {
        /// The runtime's socket.
        socket: String,
        /// What failed.
        why: String,
    },
    /// The runtime's answer is not one this agent takes.
    #[error("container runtime's answer about {id}: {why}")]
    Answer {
        /// The container asked about.
        id: String,
        /// What is wrong with the answer.
        why: String,
    },
    /// The cgroup names containers, none of which the runtime knows.
    #[error("the caller runs in container {0}, which the container runtime does not know")]
    Unknown(String),
    /// Container selectors are wanted but the kernel gave no pid for the caller.
    #[error(
        "the caller's pid is unknown, so its container cannot be told (does the agent share the host's pid namespace?)"
    )]
    NoPid,
}

impl ContainerError {
    /// Whether asking again later may succeed (the runtime did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Runtime { .. })
    }
}

/// One path component: a container's id, or the runtime's monitor of one.
enum Part {
    Id(ContainerId),
    Monitor,
}

fn classify(component: &str) -> Option<Part> {
    let c = component.strip_suffix(".scope").unwrap_or(component);
    // `…slice:cri-containerd:<id>` (systemd cgroup paths as containerd 1.4 wrote them on
    // cgroup v1), else `<prefix>-<id>`, else a bare `<id>`.
    let (prefix, id) = match c.rsplit_once(':') {
        Some((head, id)) => (head.rsplit_once(':').map_or(head, |(_, p)| p), id),
        None => c.rsplit_once('-').unwrap_or(("", c)),
    };
    let id = ContainerId::parse(id)?;
    Some(match prefix {
        "libpod-conmon" | "crio-conmon" => Part::Monitor,
        _ => Part::Id(id),
    })
}

fn path_ids(path: &str) -> Result<Vec<ContainerId>, ContainerError> {
    let mut out: Vec<ContainerId> = Vec::new();
    for component in path.split('/') {
        match classify(component) {
            Some(Part::Id(id)) if out.last() != Some(&id) => {
                if out.len() == MAX_CANDIDATES {
                    return Err(ContainerError::Cgroup(format!(
                        "more than {MAX_CANDIDATES} nested container ids"
                    )));
                }
                out.push(id);
            }
            Some(Part::Monitor) => break,
            Some(Part::Id(_)) | None => {}
        }
    }
    Ok(out)
}

/// The container ids a `/proc/<pid>/cgroup` file places its process in, outermost first;
/// empty when it is in no container. Lines of every hierarchy (`<id>:<controllers>:<path>`)
/// are read; the longest list is taken when every other is a prefix of it, and the file is
/// refused when two lines name different containers.
pub fn container_ids_from_cgroup(text: &str) -> Result<Vec<ContainerId>, ContainerError> {
    if text.len() > MAX_CGROUP_BYTES {
        return Err(ContainerError::Cgroup(format!(
            "longer than {MAX_CGROUP_BYTES} bytes"
        )));
    }
    let mut best: Vec<ContainerId> = Vec::new();
    let mut lines = 0usize;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(_controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(ContainerError::Cgroup(format!(
                "line {lines} is not <hierarchy>:<controllers>:<path>"
            )));
        };
        if hierarchy.is_empty() || !hierarchy.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ContainerError::Cgroup(format!(
                "line {lines}: hierarchy {hierarchy:?} is not a number"
            )));
        }
        if !path.starts_with('/') {
            return Err(ContainerError::Cgroup(format!(
                "line {lines}: the path does not start with /"
            )));
        }
        let ids = path_ids(path)?;
        let (short, long) = if ids.len() <= best.len() {
            (&ids, &best)
        } else {
            (&best, &ids)
        };
        if let Some(i) = short.iter().zip(long.iter()).position(|(a, b)| a != b) {
            return Err(ContainerError::Ambiguous(
                short[i].to_string(),
                long[i].to_string(),
            ));
        }
        if ids.len() > best.len() {
            best = ids;
        }
    }
    if lines == 0 {
        return Err(ContainerError::Cgroup("empty".into()));
    }
    Ok(best)
}

/// The container ids of process `pid` (see [`container_ids_from_cgroup`]).
pub fn container_ids_of(pid: i32) -> Result<Vec<ContainerId>, ContainerError> {
    use std::io::Read as _;
    let path = format!("/proc/{pid}/cgroup");
    let f =
        std::fs::File::open(&path).map_err(|e| ContainerError::Cgroup(format!("{path}: {e}")))?;
    let mut buf = Vec::new();
    f.take(MAX_CGROUP_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ContainerError::Cgroup(format!("{path}: {e}")))?;
    // A component that is not UTF-8 is no container id; it may stay garbled.
    container_ids_from_cgroup(&String::from_utf8_lossy(&buf))
}

/// What the runtime says a container is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInfo {
    /// The container's id.
    pub id: String,
    /// The image as the container was created from it (`localhost/app:1`).
    pub image_name: Option<String>,
    /// The image's config digest (`sha256:…`), the runtime's image id.
    pub image_id: Option<String>,
    /// The image's repo digests (`sha256:…`), deduplicated, at most 8.
    pub image_digests: Vec<String>,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct InspectJson {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Config", default)]
    config: Option<InspectConfigJson>,
}

#[derive(Deserialize)]
struct InspectConfigJson {
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ImageJson {
    #[serde(rename = "RepoDigests", default)]
    repo_digests: Option<Vec<String>>,
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

/// Parse the Engine API's answer to `GET /containers/<id>/json`, which must be about `id`.
pub fn parse_container_json(
    id: &ContainerId,
    body: &[u8],
) -> Result<ContainerInfo, ContainerError> {
    let bad = |why: String| ContainerError::Answer {
        id: id.to_string(),
        why,
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(bad(format!("longer than {MAX_RESPONSE_BYTES} bytes")));
    }
    let j: InspectJson = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if j.id != id.as_str() {
        return Err(bad(format!("it is about container {:?}", j.id)));
    }
    let (image_name, labels) = match j.config {
        Some(c) => (c.image, c.labels.unwrap_or_default()),
        None => (None, BTreeMap::new()),
    };
    Ok(ContainerInfo {
        id: j.id,
        image_name,
        image_id: j.image.filter(|i| is_digest(i)),
        image_digests: Vec::new(),
        labels,
    })
}

/// Parse the Engine API's answer to `GET /images/<id>/json`: the repo digests
/// (`name@sha256:…`) as `sha256:…`, deduplicated, at most 8.
pub fn parse_image_json(body: &[u8]) -> Result<Vec<String>, ContainerError> {
    let bad = |why: String| ContainerError::Answer {
        id: "image".into(),
        why,
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(bad(format!("longer than {MAX_RESPONSE_BYTES} bytes")));
    }
    let j: ImageJson = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let mut out: Vec<String> = Vec::new();
    for d in j.repo_digests.unwrap_or_default() {
        let Some((_, digest)) = d.rsplit_once('@') else {
            continue;
        };
        if is_digest(digest) && !out.iter().any(|o| o == digest) && out.len() < MAX_DIGESTS {
            out.push(digest.to_string());
        }
    }
    Ok(out)
}

/// Most running containers read from one listing of the runtime (as many as evidence may
/// carry for one workload).
pub const MAX_LISTED: usize = vouch_core::MAX_WORKLOAD_CONTAINERS;

#[derive(Deserialize)]
struct ListedJson {
    #[serde(rename = "Id")]
    id: String,
}

/// Parse the Engine API's answer to `GET /containers/json` (the running containers): their
/// ids, at most [`MAX_LISTED`] (more is refused: the agent would not see them all); an entry
/// whose id is not 64 hex is refused.
pub fn parse_container_list(body: &[u8]) -> Result<Vec<ContainerId>, ContainerError> {
    let bad = |why: String| ContainerError::Answer {
        id: "list".into(),
        why,
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(bad(format!("longer than {MAX_RESPONSE_BYTES} bytes")));
    }
    let list: Vec<ListedJson> = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if list.len() > MAX_LISTED {
        return Err(bad(format!(
            "{} running containers, more than {MAX_LISTED}",
            list.len()
        )));
    }
    list.into_iter()
        .map(|c| {
            ContainerId::parse(&c.id)
                .ok_or_else(|| bad(format!("container id {:?} is not 64 hex", clip(&c.id))))
        })
        .collect()
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The running containers that are the workload with `selectors`: those whose selectors
/// include every one of its `container:` selectors, each as its id and image digests; none
/// when it has no `container:` selector.
pub fn workload_containers(
    running: &[Arc<ContainerInfo>],
    selectors: &[String],
) -> Vec<vouch_core::ContainerImage> {
    let wanted: Vec<&String> = selectors
        .iter()
        .filter(|s| s.starts_with("container:"))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    running
        .iter()
        .filter(|c| {
            let have = c.selectors();
            wanted.iter().all(|w| have.contains(w))
        })
        .map(|c| c.image())
        .collect()
}

/// Whether `value` may stand after `container:` in a selector the verifier accepts.
fn selector_value_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SELECTOR_VALUE
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl ContainerInfo {
    /// The container's id and image digests, as evidence reports them.
    pub fn image(&self) -> vouch_core::ContainerImage {
        vouch_core::ContainerImage {
            id: self.id.clone(),
            image_digests: self.image_digests.clone(),
        }
    }

    /// The `container:` selectors (see the module documentation); values that could not form
    /// a valid selector are left out.
    pub fn selectors(&self) -> Vec<String> {
        let mut out = vec![format!("container:id:{}", self.id)];
        for d in &self.image_digests {
            out.push(format!("container:image-digest:{d}"));
        }
        if let Some(n) = &self.image_name {
            let v = format!("image-name:{n}");
            if selector_value_ok(&v) {
                out.push(format!("container:{v}"));
            }
        }
        let mut labels = 0;
        for (k, v) in &self.labels {
            if labels == MAX_LABELS {
                tracing::debug!(
                    container = %self.id,
                    "more than {MAX_LABELS} labels; the rest give no selectors"
                );
                break;
            }
            let value = format!("label:{k}:{v}");
            if !k.is_empty() && !k.contains(':') && selector_value_ok(&value) {
                out.push(format!("container:{value}"));
                labels += 1;
            }
        }
        out
    }
}

/// Asks a container runtime what its callers' containers are, and remembers the answers for a
/// while.
#[derive(Debug)]
pub struct ContainerAttestor {
    cfg: ContainerConfig,
    cache: Mutex<HashMap<ContainerId, Cached>>,
    asking: tokio::sync::Semaphore,
}

/// A runtime answer and when it came (`None`: the runtime does not know the container).
type Cached = (Instant, Option<Arc<ContainerInfo>>);

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ContainerAttestor {
    /// An attestor asking the runtime `cfg` names.
    pub fn new(cfg: ContainerConfig) -> Self {
        Self {
            cfg,
            cache: Mutex::new(HashMap::new()),
            asking: tokio::sync::Semaphore::new(MAX_ASKING),
        }
    }

    fn runtime_error(&self, why: impl std::fmt::Display) -> ContainerError {
        ContainerError::Runtime {
            socket: self.cfg.socket.display().to_string(),
            why: why.to_string(),
        }
    }

    /// `GET path` on the runtime's socket: the status and at most [`MAX_RESPONSE_BYTES`] of
    /// body, within the configured timeout.
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), ContainerError> {
        use hyper::body::Body as _;
        let ask = async {
            let stream = tokio::net::UnixStream::connect(&self.cfg.socket)
                .await
                .map_err(|e| self.runtime_error(e))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| self.runtime_error(e))?;
            let _conn = AbortOnDrop(tokio::spawn(async move {
                let _ = conn.await;
            }));
            let req = hyper::Request::get(path)
                .header(hyper::header::HOST, "localhost")
                .body(String::new())
                .map_err(|e| self.runtime_error(e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.runtime_error(e))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let frame = frame.map_err(|e| self.runtime_error(e))?;
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > MAX_RESPONSE_BYTES {
                        return Err(self.runtime_error(format!(
                            "answer to {path} longer than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                    out.extend_from_slice(&data);
                }
            }
            Ok((status, out))
        };
        tokio::time::timeout(Duration::from_millis(self.cfg.timeout_ms.max(1)), ask)
            .await
            .map_err(|_| {
                self.runtime_error(format!("no answer to {path} in {} ms", self.cfg.timeout_ms))
            })?
    }

    /// What the runtime says container `id` is; `None` when it does not know it.
    pub async fn inspect(&self, id: &ContainerId) -> Result<Option<ContainerInfo>, ContainerError> {
        let (status, body) = self.get(&format!("/containers/{id}/json")).await?;
        match status {
            200 => {}
            404 => return Ok(None),
            s => {
                return Err(self.runtime_error(format!(
                    "container {id}: HTTP {s}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )));
            }
        }
        let mut info = parse_container_json(id, &body)?;
        if let Some(image) = &info.image_id {
            let (status, body) = self.get(&format!("/images/{image}/json")).await?;
            match status {
                200 => info.image_digests = parse_image_json(&body)?,
                // The image was removed while the container runs: no digest to claim.
                404 => {}
                s => return Err(self.runtime_error(format!("image {image}: HTTP {s}"))),
            }
        }
        Ok(Some(info))
    }

    fn cache_hit(&self, id: &ContainerId) -> Option<Option<Arc<ContainerInfo>>> {
        let ttl = Duration::from_secs(self.cfg.cache_seconds);
        let cache = self.cache.lock().ok()?;
        let (at, info) = cache.get(id)?;
        (at.elapsed() < ttl).then(|| info.clone())
    }

    async fn cached(&self, id: &ContainerId) -> Result<Option<Arc<ContainerInfo>>, ContainerError> {
        let ttl = Duration::from_secs(self.cfg.cache_seconds);
        if let Some(info) = self.cache_hit(id) {
            return Ok(info);
        }
        // At most MAX_ASKING questions at once, however many callers arrive; whoever waited
        // finds the answer the one before it cached.
        let _turn = tokio::time::timeout(
            Duration::from_millis(self.cfg.timeout_ms.max(1)),
            self.asking.acquire(),
        )
        .await
        .map_err(|_| self.runtime_error("too many questions waiting for the runtime"))?
        .map_err(|e| self.runtime_error(e))?;
        if let Some(info) = self.cache_hit(id) {
            return Ok(info);
        }
        let info = self.inspect(id).await?.map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(id.clone(), (Instant::now(), info.clone()));
        }
        Ok(info)
    }

    /// The running containers the runtime lists (`GET /containers/json`), each as the
    /// runtime says it is (answers cached as for Workload API callers), in the runtime's
    /// order; a container removed between the listing and its inspection is left out.
    pub async fn running(&self) -> Result<Vec<Arc<ContainerInfo>>, ContainerError> {
        let (status, body) = self.get("/containers/json").await?;
        if status != 200 {
            return Err(self.runtime_error(format!(
                "listing containers: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        let mut out = Vec::new();
        for id in parse_container_list(&body)? {
            if let Some(info) = self.cached(&id).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The `container:` selectors of a process the cgroup file places in `ids` (outermost
    /// first): those of the first container the runtime knows. None for no ids (not in a
    /// container); an error when the runtime knows none of them.
    pub async fn selectors(&self, ids: &[ContainerId]) -> Result<Vec<String>, ContainerError> {
        for id in ids {
            if let Some(info) = self.cached(id).await? {
                return Ok(info.selectors());
            }
        }
        match ids.last() {
            None => Ok(Vec::new()),
            Some(id) => Err(ContainerError::Unknown(id.to_string())),
        }
    }
}

/// The `container:` selectors of a Workload API caller, from the container ids pinned with it
/// (see [`crate::Caller`]). Refused (`PermissionDenied`) when its container cannot be told;
/// `Unavailable` when the runtime did not answer.
pub(crate) async fn caller_selectors(
    attestor: &ContainerAttestor,
    caller: &crate::Caller,
) -> Result<Vec<String>, tonic::Status> {
    let refuse = |e: ContainerError| {
        tracing::warn!("Workload API: {e}; nothing issued");
        if e.is_transient() {
            tonic::Status::unavailable(e.to_string())
        } else {
            tonic::Status::permission_denied(e.to_string())
        }
    };
    match caller.containers() {
        None => Err(refuse(ContainerError::NoPid)),
        Some(Err(e)) => Err(refuse(e.clone())),
        Some(Ok(ids)) => attestor.selectors(ids).await.map_err(refuse),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Real `/proc/<pid>/cgroup` files (testdata/SOURCES.md says where each comes from).
    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../../testdata/cgroup/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn ids(name: &str) -> Vec<String> {
        container_ids_from_cgroup(&sample(name))
            .unwrap()
            .into_iter()
            .map(|i| i.0)
            .collect()
    }

    #[test]
    fn real_cgroup_files_of_every_runtime_give_the_container_id() {
        for (file, want) in [
            // podman + runc, cgroupfs manager, hybrid v1/v2 (recorded here)
            (
                "podman_cgroupfs_hybrid.txt",
                &["9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93"][..],
            ),
            // docker, cgroupfs, a bare /<id> and /docker/<id>
            (
                "docker_debian_cgroupfs.txt",
                &["4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970"],
            ),
            (
                "docker_ubuntu_cgroupfs.txt",
                &["31cb02944da7a12196a193cf0e0f6c226d7c453a1db62e65ba98287593a2ee30"],
            ),
            // docker, systemd: docker-<id>.scope
            (
                "docker_centos_systemd.txt",
                &["9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"],
            ),
            (
                "spire_systemd_cgroups_pid_in_pod.txt",
                &["9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"],
            ),
            // docker in docker: outer first
            (
                "docker_in_docker_rancheros.txt",
                &[
                    "a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413",
                    "ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a",
                ],
            ),
            // containerd: cri-containerd-<id>.scope (v1 + v2), the 1.4 `slice:cri-containerd:id`
            // form, kubepods cgroupfs
            (
                "containerd_bottlerocket_systemd.txt",
                &["f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830"],
            ),
            (
                "containerd_1_4_systemd_v1.txt",
                &["d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e"],
            ),
            (
                "spire_cgroups_init_pid_in_pod.txt",
                &["34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41"],
            ),
            // a sub-cgroup the container made below its own
            (
                "kubepods_kube_proxy_subcgroup.txt",
                &["c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903"],
            ),
            // kind: containerd inside a docker container; the unified line stops at the node
            (
                "spire_cgroups_pid_in_kind_pod.txt",
                &[
                    "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26",
                    "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6",
                ],
            ),
            // CRI-O: crio-<id>.scope, on v1 with the unified line elsewhere, and v2 seen from
            // another cgroup namespace (`/../`)
            (
                "crio_1_19_systemd.txt",
                &["d6d725b909f37c3e232aadfbafa950a58bfe7baa579ba8c47a12be88bb921607"],
            ),
            (
                "spire_systemd_crio_cgroups_pid_in_pod.txt",
                &["09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"],
            ),
            (
                "spire_cgroups_pid_in_crio_pod.txt",
                &["09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"],
            ),
            // docker 20.10 (Debian's docker.io), cgroupfs, hybrid (recorded here)
            (
                "docker_cgroupfs_hybrid.txt",
                &["bd2f9fbf7e8c38f95da977e71b971ed508c3c95b94ac87fd4c2d179a0275696f"],
            ),
            // a host process: none
            ("host_process.txt", &[]),
        ] {
            assert_eq!(ids(file), want, "{file}");
        }
        // This test's own process (not in a container here, or in one: either parses).
        container_ids_of(std::process::id() as i32).unwrap();
    }

    #[test]
    fn the_runtime_monitor_and_nested_cgroups_do_not_become_another_container() {
        let podman = sample("podman_cgroupfs_hybrid.txt");
        let id = "9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93";
        let other = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
        // conmon, podman's monitor, on the host with the systemd manager
        let conmon = format!("0::/machine.slice/libpod-conmon-{id}.scope\n");
        assert!(container_ids_from_cgroup(&conmon).unwrap().is_empty());
        // A process in the container names a cgroup below its own after another container:
        // the real container stays first.
        let nested = podman.replace(id, &format!("{id}/docker-{other}.scope"));
        let got = container_ids_from_cgroup(&nested).unwrap();
        assert_eq!(got[0].as_str(), id);
        assert_eq!(got[1].as_str(), other);
        // Moved in one hierarchy only, to another container: refused.
        let moved = podman.replacen(id, other, 1);
        assert_eq!(
            container_ids_from_cgroup(&moved).unwrap_err(),
            ContainerError::Ambiguous(id.into(), other.into())
        );
        // Not cgroup files.
        for bad in [
            "",
            "\n\n",
            "no colons here",
            "x:cpu:/docker",
            "1:cpu:docker/relative",
        ] {
            assert!(
                matches!(
                    container_ids_from_cgroup(bad),
                    Err(ContainerError::Cgroup(_))
                ),
                "{bad:?}"
            );
        }
        assert!(container_ids_from_cgroup(&"1:cpu:/\n".repeat(10_000)).is_err());
        let deep = format!("0::{}", format!("/docker-{id}/docker-{other}").repeat(5));
        assert!(container_ids_from_cgroup(&deep).is_err());
        // Uppercase or short ids are not container ids.
        assert!(
            container_ids_from_cgroup(&format!("0::/docker/{}\n", id.to_uppercase()))
                .unwrap()
                .is_empty()
        );
        assert!(
            container_ids_from_cgroup(&format!("0::/docker/{}\n", &id[1..]))
                .unwrap()
                .is_empty()
        );
    }

    fn recorded(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../testdata/container/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_real_podman_answer_gives_the_selectors_and_a_tampered_one_is_refused() {
        let id =
            ContainerId::parse("9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93")
                .unwrap();
        let body = recorded("podman_4.3.1_container_inspect.json");
        let mut info = parse_container_json(&id, &body).unwrap();
        assert_eq!(info.image_name.as_deref(), Some("localhost/alpha:1"));
        assert_eq!(
            info.image_id.as_deref(),
            Some("sha256:3d68bea08cc58e3ea1840f31d93804ba5d43b9251b4878220b5bce1c40a3a9c8")
        );
        info.image_digests =
            parse_image_json(&recorded("podman_4.3.1_image_inspect.json")).unwrap();
        assert_eq!(
            info.image_digests,
            ["sha256:3e14aed46fcdb20a820c50335db0c4c0fce5d2ea5fbe65c74e70392f307b24e3"]
        );
        assert_eq!(
            info.selectors(),
            [
                format!("container:id:{id}"),
                "container:image-digest:sha256:3e14aed46fcdb20a820c50335db0c4c0fce5d2ea5fbe65c74e70392f307b24e3".into(),
                "container:image-name:localhost/alpha:1".into(),
                "container:label:app:alpha".into(),
                "container:label:io.buildah.version:1.28.2".into(),
                // `team=pay ments` has a space: no selector can carry it
            ]
        );
        // One byte of the id changed: the answer is about another container.
        let text = String::from_utf8(body.clone()).unwrap();
        let flipped = text.replacen("\"Id\":\"9f53", "\"Id\":\"9f54", 1);
        assert!(matches!(
            parse_container_json(&id, flipped.as_bytes()),
            Err(ContainerError::Answer { .. })
        ));
        // Truncated, not JSON, too large.
        let json = body.trim_ascii_end();
        assert!(parse_container_json(&id, &json[..json.len() - 1]).is_err());
        assert!(parse_container_json(&id, b"<html>").is_err());
        let mut big = body.clone();
        big.resize(MAX_RESPONSE_BYTES + 1, b' ');
        assert!(parse_container_json(&id, &big).is_err());
        // A digest that is not sha256:<64 hex> is not taken; duplicates once.
        let img = br#"{"RepoDigests":["a@sha256:zz","b@md5:00","c@sha256:3e14aed46fcdb20a820c50335db0c4c0fce5d2ea5fbe65c74e70392f307b24e3","d@sha256:3e14aed46fcdb20a820c50335db0c4c0fce5d2ea5fbe65c74e70392f307b24e3","nodigest"]}"#;
        assert_eq!(parse_image_json(img).unwrap().len(), 1);
    }

    #[test]
    fn no_one_byte_change_to_the_real_samples_makes_another_container_or_a_panic() {
        let id = "9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93";
        let cgroup = sample("podman_cgroupfs_hybrid.txt").into_bytes();
        let json = recorded("podman_4.3.1_container_inspect.json");
        let cid = ContainerId::parse(id).unwrap();
        let (mut refused, mut same) = (0, 0);
        for i in 0..cgroup.len() {
            for mask in [0x01u8, 0x20, 0x80] {
                let mut b = cgroup.clone();
                b[i] ^= mask;
                // One line can change, never all ten: the container stays the same one, or
                // the file is refused (ambiguous, malformed).
                match container_ids_from_cgroup(&String::from_utf8_lossy(&b)) {
                    Ok(ids) => {
                        assert_eq!(ids, std::slice::from_ref(&cid), "byte {i} ^ {mask:#x}");
                        same += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(refused > 0 && same > 0);
        for i in 0..json.len() {
            for mask in [0x01u8, 0x20, 0x80] {
                let mut b = json.clone();
                b[i] ^= mask;
                if let Ok(info) = parse_container_json(&cid, &b) {
                    assert_eq!(info.id, id);
                    for sel in info.selectors() {
                        vouch_identity::Selector::parse(&sel).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn a_real_dockerd_answer_gives_the_selectors_without_a_digest_it_does_not_have() {
        let id =
            ContainerId::parse("bd2f9fbf7e8c38f95da977e71b971ed508c3c95b94ac87fd4c2d179a0275696f")
                .unwrap();
        let mut info =
            parse_container_json(&id, &recorded("dockerd_20.10.24_container_inspect.json"))
                .unwrap();
        assert_eq!(
            info.image_id.as_deref(),
            Some("sha256:0e18df9b41fb806a96eda0dc238acb2b96ed4716633b95ce0cf62bbdc0fcc452")
        );
        // An imported image: dockerd has no repo digest for it.
        info.image_digests =
            parse_image_json(&recorded("dockerd_20.10.24_image_inspect.json")).unwrap();
        assert_eq!(
            info.selectors(),
            [
                format!("container:id:{id}"),
                "container:image-name:localhost/dk-alpha:1".into(),
                "container:label:app:alpha".into(),
            ]
        );
    }

    #[test]
    fn hostile_labels_are_bounded() {
        let mut info = ContainerInfo {
            id: "ab".repeat(32),
            image_name: Some(format!("x{}", "y".repeat(300))),
            ..Default::default()
        };
        for i in 0..100 {
            info.labels.insert(format!("k{i:03}"), "v".into());
        }
        info.labels.insert("a:b".into(), "c".into());
        info.labels.insert("ctl".into(), "a\u{7}b".into());
        info.labels.insert("".into(), "empty".into());
        let s = info.selectors();
        assert_eq!(s.len(), 1 + MAX_LABELS, "{s:?}");
        for sel in &s {
            vouch_identity::Selector::parse(sel).unwrap();
        }
        assert!(
            !s.iter()
                .any(|x| x.contains("a:b") || x.contains("image-name"))
        );
    }

    /// A scripted runtime on a Unix socket: `answer` maps each request path to the raw HTTP
    /// response written back.
    fn hostile_runtime(
        path: &std::path::Path,
        answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::UnixListener::bind(path).unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req).to_string();
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let _ = s.write_all(&answer(&path)).await;
                    let _ = s.shutdown().await;
                });
            }
        })
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn hostile_runtime_answers_are_refused_and_unknown_outer_containers_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let inner = "9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93";
        let outer = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26";
        let huge = "a1".repeat(32);
        let liar = "b2".repeat(32);
        let broken = "c3".repeat(32);
        let container = recorded("podman_4.3.1_container_inspect.json");
        let (h2, l2, b2) = (huge.clone(), liar.clone(), broken.clone());
        let sock = dir.path().join("runtime.sock");
        let _rt = hostile_runtime(&sock, move |path| {
            if path == format!("/containers/{inner}/json") {
                http("200 OK", &container)
            } else if path == format!("/containers/{h2}/json") {
                // Chunked, more than 1 MiB in all.
                let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..20 {
                    r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    r.extend_from_slice(&chunk);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            } else if path == format!("/containers/{l2}/json") {
                // The answer about another container.
                http("200 OK", &container)
            } else if path == format!("/containers/{b2}/json") {
                http("500 Internal Server Error", b"{\"message\":\"boom\"}")
            } else {
                http("404 Not Found", b"{\"message\":\"no such container\"}")
            }
        });
        let a = ContainerAttestor::new(ContainerConfig {
            socket: sock,
            ..Default::default()
        });
        let id = |s: &str| ContainerId::parse(s).unwrap();
        // The outer id (a kind node) is unknown to this runtime: the inner container's
        // selectors; its image is unknown (404): no digest selector.
        let s = a.selectors(&[id(outer), id(inner)]).await.unwrap();
        assert_eq!(s[0], format!("container:id:{inner}"));
        assert!(!s.iter().any(|x| x.contains("image-digest")), "{s:?}");
        assert!(s.contains(&"container:label:app:alpha".to_string()));
        // Known to nobody: refused, not a host process.
        assert_eq!(
            a.selectors(&[id(outer)]).await.unwrap_err(),
            ContainerError::Unknown(outer.into())
        );
        let e = a.selectors(&[id(&huge)]).await.unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let e = a.selectors(&[id(&liar)]).await.unwrap_err();
        assert!(matches!(e, ContainerError::Answer { .. }), "{e}");
        let e = a.selectors(&[id(&broken)]).await.unwrap_err();
        assert!(e.to_string().contains("HTTP 500"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_callers_asks_the_runtime_a_bounded_number_of_times() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let inner = "9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93";
        let container = recorded("podman_4.3.1_container_inspect.json");
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let sock = dir.path().join("runtime.sock");
        let _rt = hostile_runtime(&sock, move |path| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            if path == format!("/containers/{inner}/json") {
                http("200 OK", &container)
            } else {
                http("404 Not Found", b"{}")
            }
        });
        let a = Arc::new(ContainerAttestor::new(ContainerConfig {
            socket: sock,
            ..Default::default()
        }));
        let id = ContainerId::parse(inner).unwrap();
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let (a, id) = (a.clone(), id.clone());
                tokio::spawn(async move { a.selectors(&[id]).await })
            })
            .collect();
        for c in calls {
            assert_eq!(
                c.await.unwrap().unwrap()[0],
                format!("container:id:{inner}")
            );
        }
        // Two requests (container, image) per question; at most MAX_ASKING questions were
        // under way when the first answer was cached.
        let n = asked.load(Ordering::SeqCst);
        assert!(n <= 2 * MAX_ASKING, "{n} requests for 64 callers");
    }

    /// A caller pinned on the host that is then moved into a cgroup named after a container
    /// gets nothing more (needs a writable cgroup hierarchy: root).
    #[test]
    fn a_caller_moved_into_a_containers_cgroup_is_no_longer_the_caller() {
        let id = "cd".repeat(32);
        let Some(hier) = [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .into_iter()
        .map(std::path::Path::new)
        .find(|h| h.join("cgroup.procs").exists()) else {
            eprintln!("\n*** SKIPPED: no cgroup hierarchy mounted ***\n");
            return;
        };
        let parent = hier.join(format!("vouch-test-{}", std::process::id()));
        let cg = parent.join(format!("docker-{id}.scope"));
        if let Err(e) = std::fs::create_dir_all(&cg) {
            eprintln!(
                "\n*** SKIPPED: cannot create {} ({e}): not root? ***\n",
                cg.display()
            );
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(50));
        let c = crate::Caller::pin(0, 0, Some(pid));
        let before = c.containers().unwrap().clone().unwrap();
        c.check().unwrap();
        std::fs::write(cg.join("cgroup.procs"), pid.to_string()).unwrap();
        let moved = c.check();
        let again = crate::Caller::pin(0, 0, Some(pid));
        let after = again.containers().unwrap().clone().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_dir(&cg);
        let _ = std::fs::remove_dir(&parent);
        assert_eq!(moved, Err(crate::CallerChanged::Moved(pid)));
        assert!(!before.iter().any(|i| i.as_str() == id));
        assert_eq!(after.last().map(ContainerId::as_str), Some(id.as_str()));
    }

    #[tokio::test]
    async fn an_absent_or_silent_runtime_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContainerId::parse(&"ab".repeat(32)).unwrap();
        // No socket.
        let a = ContainerAttestor::new(ContainerConfig {
            socket: dir.path().join("none.sock"),
            ..Default::default()
        });
        let e = a.selectors(std::slice::from_ref(&id)).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        // A socket that accepts and never answers: the timeout.
        let path = dir.path().join("silent.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let a = ContainerAttestor::new(ContainerConfig {
            socket: path,
            timeout_ms: 200,
            ..Default::default()
        });
        let t = Instant::now();
        let e = a.selectors(&[id]).await.unwrap_err();
        assert!(e.to_string().contains("no answer"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        // No ids: no selectors, no question asked.
        assert!(a.selectors(&[]).await.unwrap().is_empty());
    }

    #[test]
    fn running_containers_are_listed_bounded_and_matched_to_workloads() {
        let id = |c: char| c.to_string().repeat(64);
        let list = |n: usize| {
            serde_json::to_vec(
                &(0..n)
                    .map(|_| serde_json::json!({"Id": id('a'), "Names": ["/x"]}))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        };
        assert_eq!(parse_container_list(&list(256)).unwrap().len(), 256);
        let e = parse_container_list(&list(257)).unwrap_err();
        assert!(e.to_string().contains("257 running containers"), "{e}");
        let e = parse_container_list(br#"[{"Id": "../../etc"}]"#).unwrap_err();
        assert!(e.to_string().contains("not 64 hex"), "{e}");
        assert!(parse_container_list(b"{}").is_err());
        assert!(parse_container_list(&vec![b' '; MAX_RESPONSE_BYTES + 1]).is_err());

        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let web = Arc::new(ContainerInfo {
            id: id('a'),
            image_digests: vec![digest('1')],
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        });
        let db = Arc::new(ContainerInfo {
            id: id('b'),
            image_digests: vec![digest('2'), digest('3')],
            labels: [("app".to_string(), "db".to_string())].into(),
            ..Default::default()
        });
        let running = [web, db];
        let got = workload_containers(&running, &["container:label:app:db".into()]);
        assert_eq!(
            got,
            vec![vouch_core::ContainerImage {
                id: id('b'),
                image_digests: vec![digest('2'), digest('3')]
            }]
        );
        // Every container: selector must hold; other kinds of selector are not the runtime's.
        let got = workload_containers(
            &running,
            &[
                "unix:uid:0".into(),
                "container:label:app:web".into(),
                format!("container:image-digest:{}", digest('1')),
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id('a'));
        assert!(workload_containers(&running, &["container:label:app:none".into()]).is_empty());
        // A workload without container: selectors has no containers.
        assert!(workload_containers(&running, &["unix:uid:0".into()]).is_empty());
    }
}
