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
//! them): a webhook pointed at it fails closed. A review that is not an `AdmissionReview` v1 is a
//! 400; a body over [`ADMISSION_BODY_LIMIT`] a 413.
//!
//! The route takes no credential: the API server authenticates the verifier by the webhook's
//! `caBundle`, and what the route answers is harmless — it changes nothing, and it makes the
//! verifier contact only the configured repositories (an image elsewhere is denied without a
//! request), at most [`MAX_IMAGES`] images per review.

use axum::Json;
use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

use vouch_core::ErrorKind;

use crate::ApiError;
use crate::routes::with_kind;
use crate::state::{State, unix_now};

/// Largest AdmissionReview read (the API server's own request limit is 3 MiB).
pub const ADMISSION_BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Most distinct images checked in one review; a pod with more is denied.
pub const MAX_IMAGES: usize = 64;
/// Longest denial message (each refused image's reason, joined), clipped beyond.
const MAX_MESSAGE: usize = 8192;
/// Longest `request.uid` echoed back.
const MAX_UID: usize = 128;

const API_VERSION: &str = "admission.k8s.io/v1";

#[derive(Deserialize)]
struct Review {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: Option<ReviewRequest>,
}

#[derive(Deserialize)]
struct ReviewRequest {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    kind: String,
}

fn malformed(msg: impl Into<String>) -> Response {
    with_kind(ApiError::new(ErrorKind::MalformedRequest, msg))
}

/// `POST /v1/admission/validate`.
pub(crate) async fn validate(AxState(st): AxState<Arc<State>>, req: Request) -> Response {
    let body = match axum::body::to_bytes(req.into_body(), ADMISSION_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return with_kind(ApiError::new(
                ErrorKind::BodyTooLarge,
                format!("AdmissionReview larger than {ADMISSION_BODY_LIMIT} bytes"),
            ));
        }
    };
    let review: Review = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return malformed(format!("not an AdmissionReview: {e}")),
    };
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return malformed(format!(
            "expected apiVersion {API_VERSION} kind AdmissionReview, got {} {}",
            vouch_core::clip(&review.api_version, 64),
            vouch_core::clip(&review.kind, 64)
        ));
    }
    let Some(request) = review.request else {
        return malformed("AdmissionReview without a request");
    };
    if request.uid.is_empty() || request.uid.len() > MAX_UID {
        return malformed(format!("request.uid must be 1 to {MAX_UID} bytes"));
    }
    let decision = decide(&st, &request).await;
    let (allowed, message) = match decision {
        Ok(d) => d,
        Err(why) => return malformed(why),
    };
    let mut response = serde_json::json!({ "uid": request.uid, "allowed": allowed });
    if !allowed {
        let message = vouch_core::clip(&message, MAX_MESSAGE);
        response["status"] =
            serde_json::json!({ "code": 403, "reason": "Forbidden", "message": message });
    }
    tracing::info!(
        uid = %vouch_core::clip(&request.uid, MAX_UID),
        kind = %vouch_core::clip(&request.kind.kind, 64),
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

/// `Ok((allowed, message))`, or `Err` for a request that is not a well-formed review.
async fn decide(st: &State, request: &ReviewRequest) -> Result<(bool, String), String> {
    // Only a create or an update (an ephemeral container added, a template changed) brings
    // images; a delete carries no object.
    if request.operation != "CREATE" && request.operation != "UPDATE" {
        return Ok((true, String::new()));
    }
    let object = request
        .object
        .as_ref()
        .ok_or("request.object missing for a CREATE or UPDATE")?;
    let spec = match request.kind.kind.as_str() {
        "Pod" => object.get("spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => object.pointer("/spec/template/spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        // Not a kind that runs containers: nothing to check.
        _ => return Ok((true, String::new())),
    };
    let spec = spec.ok_or_else(|| format!("{} without a pod spec", request.kind.kind))?;
    let images = pod_images(spec)?;
    if images.is_empty() {
        return Ok((true, String::new()));
    }
    if images.len() > MAX_IMAGES {
        return Ok((
            false,
            format!("{} distinct images, more than {MAX_IMAGES}", images.len()),
        ));
    }
    let Some(checker) = &st.images else {
        return Ok((
            false,
            "this verifier checks no image signatures ([image_signatures] is not configured)"
                .into(),
        ));
    };
    let now = unix_now();
    let mut refused = Vec::new();
    for (field, image) in &images {
        if let Err((_, why)) = checker.admit(image, now).await {
            refused.push(format!("{field} image {image}: {why}"));
        }
    }
    if refused.is_empty() {
        Ok((true, String::new()))
    } else {
        Ok((false, format!("vouch: {}", refused.join("; "))))
    }
}

/// The distinct images of a pod spec, each with where it was found (`containers[0]`).
fn pod_images(spec: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(v) = spec.get(list) else { continue };
        if v.is_null() {
            continue;
        }
        let items = v
            .as_array()
            .ok_or_else(|| format!("spec.{list} is not a list"))?;
        for (i, c) in items.iter().enumerate() {
            let image = c
                .get("image")
                .and_then(|x| x.as_str())
                .ok_or_else(|| format!("spec.{list}[{i}] has no image"))?;
            if !out.iter().any(|(_, seen)| seen == image) {
                out.push((format!("{list}[{i}]"), image.to_string()));
            }
            if out.len() > MAX_IMAGES {
                return Ok(out);
            }
        }
    }
    Ok(out)
}
