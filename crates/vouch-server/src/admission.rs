//! The Kubernetes validating admission webhook: `POST /v1/admission/validate` (per tenant under
//! `/t/{tenant}` like the other routes).
//!
//! The API server sends an `AdmissionReview` (`admission.k8s.io/v1`) whose `request.object` is a
//! Pod, or a workload carrying a pod template (Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! Job, ReplicationController, CronJob). Every image of the pod spec — `containers`,
//! `initContainers`, `ephemeralContainers` — must name one of the `[image_signatures]`
//! repositories; a tag is resolved to its manifest digest in the registry on each review, and the
//! decision is for that digest: its cosign signature must verify with a trusted key
//! (`crate::images`). The answer is an `AdmissionReview` with `response.uid` = the request's uid,
//! `allowed`, and when denied `status.code` 403 with a message naming each refused image, its
//! digest when known, and why.
//!
//! A verifier without `[image_signatures]` denies every pod that has an image (it cannot check
//! them): a webhook pointed at it fails closed. The review is read by
//! [`vouch_core::admission::parse`] (no I/O, bounded, fuzzed): one that is not an
//! `AdmissionReview` v1 is a 400; a body over [`ADMISSION_BODY_LIMIT`] a 413.
//!
//! The API server authenticates the verifier by the webhook's `caBundle`; the verifier
//! authenticates the API server by what `[admission]` ([`AdmissionSettings`]) asks for — a
//! client certificate from `client_ca` (optionally with one of `client_names`), a bearer token
//! (`token_file`), or both — before the body is read, so an unauthenticated caller makes the
//! verifier contact no registry and is answered `401` (`gate`). Without `[admission]` every
//! review is a `401`: the webhook is off until it is configured. Even so the verifier
//! contacts only the configured repositories (an image elsewhere is denied without a
//! request), at most [`MAX_IMAGES`] images per review.
//!
//! With `require_digest`, an image named by tag alone is denied: the pod spec keeps the tag and
//! the kubelet pulls it again later, so the digest checked here is not bound to what runs.
//!
//! With `require_attested_node`, a pod may run only on a node attested affirming (`nodes`):
//! a Pod whose `spec.nodeName` is set (it bypasses the scheduler) is checked at its CREATE or
//! UPDATE, and a `Binding` (`pods/binding`, the scheduler's placement of a pod; also the
//! `bindings` resource) is checked for its `target.name`.

use axum::Json;
use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

use vouch_core::ErrorKind;
use vouch_core::admission::{API_VERSION, MAX_IMAGES, MAX_UID, Review, Subject};

use crate::ApiError;
use crate::routes::with_kind;
use crate::state::{State, unix_now};

/// Largest AdmissionReview read (the API server's own request limit is 3 MiB).
pub const ADMISSION_BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Longest denial message (each refused image's reason, joined), clipped beyond.
const MAX_MESSAGE: usize = 8192;

mod gate;
mod nodes;
mod provenance;

pub(crate) use gate::{Admission, ClientCertificate};

/// `[admission]`: how the API server authenticates to the admission webhook, and what the
/// webhook requires beyond signed images. Without it the webhook answers every review `401`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionSettings {
    /// PEM CA certificate(s) the API server's client certificate must chain to (the
    /// `client-certificate` of its admission kubeconfig). When set, the verifier's TLS listener
    /// asks every client for a certificate: one that presents none still connects (agents and
    /// CLIs do not), one that presents a certificate from another CA is refused at the
    /// handshake.
    pub client_ca: Option<PathBuf>,
    /// When not empty, the client certificate's subject common name or one of its
    /// subjectAltName DNS names must be one of these.
    pub client_names: Vec<String>,
    /// A file holding the bearer token the API server sends (the `token` of its admission
    /// kubeconfig), at least 16 bytes; compared in constant time.
    pub token_file: Option<PathBuf>,
    /// Answer reviews from anyone (development only); refused together with `client_ca` or
    /// `token_file`.
    pub insecure_unauthenticated: bool,
    /// Deny pods placed on a node that is not attested affirming (a Pod's `spec.nodeName`, a
    /// `Binding`'s target).
    pub require_attested_node: bool,
    /// The `k8s_psat` cluster name (`[node_attestor.k8s_psat]`) whose nodes the pods run on;
    /// required with `require_attested_node`.
    pub cluster: Option<String>,
    /// The node's own workload whose status is the node's (the agent's `workload_name`).
    pub node_workload: String,
    /// Deny images without SLSA provenance from one of `provenance_builders` (cosign's
    /// `sha256-<hex>.att` in the image's repository, verified with `[image_signatures]
    /// provenance_keys`; needs `[image_signatures] provenance = true`).
    pub require_provenance: bool,
    /// The builder ids (`runDetails.builder.id`, exact) whose provenance admits an image;
    /// required with `require_provenance`.
    pub provenance_builders: Vec<String>,
    /// Deny an image named by tag alone (`repo:tag`): only `repo@sha256:<hex>` (or
    /// `repo:tag@sha256:<hex>`, pulled by the digest) is admitted. A tag is resolved at review
    /// time, but the pod spec keeps the tag and the kubelet pulls it again when it starts the
    /// container (and on every restart on another node): whoever can push to the tag in
    /// between runs an image that was never checked. Off by default (existing tag-based
    /// manifests keep working); recommended on.
    pub require_digest: bool,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            client_ca: None,
            client_names: Vec::new(),
            token_file: None,
            insecure_unauthenticated: false,
            require_attested_node: false,
            cluster: None,
            node_workload: "host".into(),
            require_provenance: false,
            provenance_builders: Vec::new(),
            require_digest: false,
        }
    }
}

fn malformed(msg: impl Into<String>) -> Response {
    with_kind(ApiError::new(ErrorKind::MalformedRequest, msg))
}

/// `POST /v1/admission/validate`.
pub(crate) async fn validate(AxState(st): AxState<Arc<State>>, req: Request) -> Response {
    // Who is asking, before anything is read or looked up.
    let adm = req.extensions().get::<Arc<Admission>>().cloned();
    let cert = req
        .extensions()
        .get::<ClientCertificate>()
        .cloned()
        .unwrap_or_default();
    let adm = match adm {
        Some(a) => a,
        None => {
            return with_kind(ApiError::new(
                ErrorKind::Internal,
                "the admission webhook is not set up on this listener",
            ));
        }
    };
    if let Err(why) = adm.authenticate(req.headers(), &cert) {
        tracing::debug!("admission review refused: {why}");
        return with_kind(ApiError::new(ErrorKind::Unauthenticated, why));
    }
    let body = match axum::body::to_bytes(req.into_body(), ADMISSION_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return with_kind(ApiError::new(
                ErrorKind::BodyTooLarge,
                format!("AdmissionReview larger than {ADMISSION_BODY_LIMIT} bytes"),
            ));
        }
    };
    // The review's shape (vouch_core::admission, bounded, fuzzed); a 400 when it is not one.
    let review = match vouch_core::admission::parse(&body) {
        Ok(r) => r,
        Err(e) => return malformed(e.to_string()),
    };
    let (allowed, message) = decide(&st, &adm, &review).await;
    let mut response = serde_json::json!({ "uid": review.uid, "allowed": allowed });
    if !allowed {
        let message = vouch_core::clip(&message, MAX_MESSAGE);
        response["status"] =
            serde_json::json!({ "code": 403, "reason": "Forbidden", "message": message });
    }
    tracing::info!(
        uid = %vouch_core::clip(&review.uid, MAX_UID),
        kind = %vouch_core::clip(&review.kind, 64),
        allowed,
        "admission review"
    );
    Json(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }))
    .into_response()
}

/// `(allowed, message)` for a well-formed review.
async fn decide(st: &State, adm: &Admission, review: &Review) -> (bool, String) {
    let settings = adm.settings.as_ref();
    let node_rule = settings
        .filter(|s| s.require_attested_node)
        .and_then(|s| Some((s.cluster.as_deref()?, s.node_workload.as_str())));
    let now = unix_now();
    let (images, node_name) = match &review.subject {
        Subject::PodSpec { images, node_name } => (images, node_name.as_deref()),
        // The scheduler binding a pod to a node.
        Subject::Binding { node } => {
            return match node_rule {
                None => (true, String::new()),
                Some((cluster, workload)) => {
                    match nodes::check(st, cluster, workload, node, now).await {
                        Ok(()) => (true, String::new()),
                        Err(why) => (false, format!("vouch: {why}")),
                    }
                }
            };
        }
        Subject::Nothing => return (true, String::new()),
        // A kind of request this verifier does not know how to check: fail closed.
        _ => {
            return (
                false,
                format!(
                    "vouch: this verifier cannot check a {} {}",
                    vouch_core::clip(&review.operation, 16),
                    vouch_core::clip(&review.kind, 64)
                ),
            );
        }
    };
    let mut refused = Vec::new();
    // A Pod created with its node set bypasses the scheduler (and its Binding). Only at its
    // CREATE: `spec.nodeName` cannot change afterwards, and an UPDATE (a label, an ephemeral
    // container) of a pod already running on a node that stopped affirming is not a placement.
    if let Some((cluster, workload)) = node_rule
        && let Some(node) = node_name
        && review.operation == "CREATE"
        && let Err(why) = nodes::check(st, cluster, workload, node, now).await
    {
        refused.push(why);
    }
    if images.is_empty() {
        return verdict(refused);
    }
    if images.len() > MAX_IMAGES {
        refused.push(format!(
            "{} distinct images, more than {MAX_IMAGES}",
            images.len()
        ));
        return verdict(refused);
    }
    let Some(checker) = &st.images else {
        refused.push(
            "this verifier checks no image signatures ([image_signatures] is not configured)"
                .into(),
        );
        return verdict(refused);
    };
    let builders = settings
        .filter(|s| s.require_provenance)
        .map(|s| s.provenance_builders.as_slice());
    let require_digest = settings.is_some_and(|s| s.require_digest);
    for (field, image) in images {
        // A tag alone: what is checked now is not what the kubelet will pull later.
        if require_digest && vouch_image::ImageRef::parse(image).is_ok_and(|r| r.digest.is_none()) {
            refused.push(format!(
                "{field} image {image}: names no digest ([admission] require_digest: the \
                 kubelet pulls a tag again when it starts the container, so only \
                 repository@sha256:<digest> is admitted)"
            ));
            continue;
        }
        match checker.admit(image, now).await {
            Err((_, why)) => refused.push(format!("{field} image {image}: {why}")),
            Ok((digest, _)) => {
                if let Some(builders) = builders
                    && let Err(why) = provenance::check(
                        checker,
                        &adm.provenance_cache,
                        image,
                        &digest,
                        builders,
                        now,
                    )
                    .await
                {
                    refused.push(format!("{field} image {image}: {why}"));
                }
            }
        }
    }
    verdict(refused)
}

/// Allowed when nothing was refused; else denied with every reason.
fn verdict(refused: Vec<String>) -> (bool, String) {
    if refused.is_empty() {
        (true, String::new())
    } else {
        (false, format!("vouch: {}", refused.join("; ")))
    }
}
