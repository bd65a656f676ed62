//! The Vouch agent (the RATS attester).
//!
//! It holds an Ed25519 key, enrolls it once with a one-time join token, and then attests its
//! workload: ask a verifier for a nonce, measure, sign, send, and keep the signed result. In
//! continuous mode it re-attests every interval and at once when a measured file changes.
//!
//! It serves the SPIFFE Workload API on a Unix socket ([`serve_workload_api`]): callers are
//! identified by their peer credentials and get the X.509- and JWT-SVIDs their registration
//! entries grant, only while the node's latest attestation is affirming.
#![deny(missing_docs)]

mod agent;
mod caller;
mod client;
mod container;
mod entries;
mod error;
mod k8s;
mod metrics;
mod tee;
#[cfg(feature = "tpm")]
mod tpm;
#[cfg(feature = "tpm")]
mod tpm_join;
mod workload_api;

pub use agent::secret::ask_secret_socket;
pub use agent::{
    Agent, AgentConfig, Enrollment, NodeAttestationConfig, NodeStatus, WorkloadConfig,
};
pub use caller::{Caller, CallerChanged};
pub use client::{MAX_FEED_PAGE, MAX_FEED_PAGES, VerifierClient};
pub use container::{
    ContainerAttestor, ContainerConfig, ContainerError, ContainerId, ContainerInfo,
    container_ids_from_cgroup, container_ids_of, parse_container_json, parse_container_list,
    parse_image_json, workload_containers,
};
pub use entries::{EntryMirror, signed as signed_entries_request};
pub use error::AgentError;
pub use k8s::{
    K8sAttestor, K8sConfig, K8sError, MAX_POD_LABELS as K8S_MAX_POD_LABELS,
    MAX_POD_LIST_BYTES as K8S_MAX_POD_LIST_BYTES, PodCgroup, PodList, parse_pod_list, pod_of,
    pod_of_cgroup,
};
pub use metrics::{AgentMetrics, serve_metrics};
pub use tee::{TeeConfig, TeeReportBlob, report as tee_report};
#[cfg(feature = "tpm")]
pub use tpm::{Tpm, TpmConfig, TpmIdentity, TpmQuote};
pub use workload_api::{
    CallerInfo, IdentitySource, SECURITY_HEADER, WorkloadApiHandle, WorkloadApiLimits,
    caller_selectors, channel, connect, proto, request, serve_workload_api, spawn_workload_api,
    spawn_workload_api_with,
};
