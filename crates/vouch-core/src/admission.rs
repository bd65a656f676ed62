//! Kubernetes `AdmissionReview` requests (`admission.k8s.io/v1`), as the API server posts them
//! to the verifier's validating admission webhook, read into what the webhook decides on.
//!
//! [`parse`] takes the posted bytes (untrusted: the verifier authenticates the API server, but
//! the objects in a review are what users submitted) and gives a [`Review`]: the request's
//! uid, kind and operation, and its [`Subject`] — the images of a pod spec (of a Pod, or the
//! pod template of a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController
//! or CronJob: `initContainers`, `containers`, `ephemeralContainers`, distinct, each with where
//! it was found) and a Pod's `spec.nodeName`; or the node a `Binding` places a pod on
//! (`target.name`: the API server binds to that name whatever `target.kind` says); or nothing
//! to check. Bounded: at most [`MAX_IMAGES`] + 1 images are collected (one more tells the
//! caller there were too many), a uid of at most [`MAX_UID`] bytes. No I/O.

use serde::Deserialize;

/// The `apiVersion` of the reviews read and answered.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// Most distinct images a review may name; [`Subject::PodSpec`] holds one more when it named
/// more.
pub const MAX_IMAGES: usize = 64;
/// Longest `request.uid` accepted (it is echoed back).
pub const MAX_UID: usize = 128;

/// Why bytes are not an `AdmissionReview` v1 request (the verifier answers `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedReview(String);

fn bad(m: impl Into<String>) -> MalformedReview {
    MalformedReview(m.into())
}

/// One review's request, as far as the webhook needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// `request.uid`, echoed in the answer.
    pub uid: String,
    /// `request.kind.kind` (`Pod`, `Deployment`, `Binding`, ...).
    pub kind: String,
    /// `request.operation` (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`).
    pub operation: String,
    /// What the request asks the webhook to check.
    pub subject: Subject,
}

/// What a review asks the webhook to check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// Nothing: not a CREATE or UPDATE, or a kind that runs no containers.
    Nothing,
    /// The pod spec of a Pod or of a workload's template.
    PodSpec {
        /// Distinct images, each with where it was first found (`containers[1]`); at most
        /// [`MAX_IMAGES`] + 1.
        images: Vec<(String, String)>,
        /// A Pod's `spec.nodeName`, when set and not empty (a template's is not read).
        node_name: Option<String>,
    },
    /// A `Binding` of a pod to a node.
    Binding {
        /// `target.name`: the node.
        node: String,
    },
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Request {
    uid: String,
    kind: Kind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: String,
}

/// Read an `AdmissionReview` v1 request; see the [module](self) documentation.
pub fn parse(body: &[u8]) -> Result<Review, MalformedReview> {
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| bad(format!("not an AdmissionReview: {e}")))?;
    if doc.api_version != API_VERSION || doc.kind != "AdmissionReview" {
        return Err(bad(format!(
            "expected apiVersion {API_VERSION} kind AdmissionReview, got {} {}",
            crate::clip(&doc.api_version, 64),
            crate::clip(&doc.kind, 64)
        )));
    }
    let request = doc
        .request
        .ok_or_else(|| bad("AdmissionReview without a request"))?;
    if request.uid.is_empty() || request.uid.len() > MAX_UID {
        return Err(bad(format!("request.uid must be 1 to {MAX_UID} bytes")));
    }
    let subject = subject(&request)?;
    Ok(Review {
        uid: request.uid,
        kind: request.kind.kind,
        operation: request.operation,
        subject,
    })
}

fn subject(request: &Request) -> Result<Subject, MalformedReview> {
    // Only a create or an update (an ephemeral container added, a template changed, a pod
    // bound) brings something to check; a delete carries no object.
    if request.operation != "CREATE" && request.operation != "UPDATE" {
        return Ok(Subject::Nothing);
    }
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| bad("request.object missing for a CREATE or UPDATE"))?;
    let kind = request.kind.kind.as_str();
    let spec = match kind {
        "Binding" => {
            let node = object
                .pointer("/target/name")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("Binding without target.name"))?;
            return Ok(Subject::Binding {
                node: node.to_string(),
            });
        }
        "Pod" => object.get("spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => object.pointer("/spec/template/spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        // Not a kind that runs containers: nothing to check.
        _ => return Ok(Subject::Nothing),
    };
    let spec = spec.ok_or_else(|| bad(format!("{} without a pod spec", crate::clip(kind, 64))))?;
    let node_name = if kind == "Pod" {
        match spec.get("nodeName") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(n)) if n.is_empty() => None,
            Some(serde_json::Value::String(n)) => Some(n.clone()),
            Some(_) => return Err(bad("spec.nodeName is not a string")),
        }
    } else {
        None
    };
    Ok(Subject::PodSpec {
        images: pod_images(spec)?,
        node_name,
    })
}

/// The distinct images of a pod spec, each with where it was found (`containers[0]`).
fn pod_images(spec: &serde_json::Value) -> Result<Vec<(String, String)>, MalformedReview> {
    let mut out: Vec<(String, String)> = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(v) = spec.get(list) else { continue };
        if v.is_null() {
            continue;
        }
        let items = v
            .as_array()
            .ok_or_else(|| bad(format!("spec.{list} is not a list")))?;
        for (i, c) in items.iter().enumerate() {
            let image = c
                .get("image")
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad(format!("spec.{list}[{i}] has no image")))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn review(kind: &str, op: &str, object: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": API_VERSION, "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": kind},
                        "operation": op, "object": object}
        }))
        .unwrap()
    }

    #[test]
    fn pod_specs_bindings_and_the_rest() {
        let pod = serde_json::json!({"spec": {
            "nodeName": "n1",
            "initContainers": [{"image": "r/a:1"}],
            "containers": [{"image": "r/b:1"}, {"image": "r/a:1"}],
            "ephemeralContainers": null,
        }});
        let r = parse(&review("Pod", "CREATE", pod.clone())).unwrap();
        assert_eq!(
            r.subject,
            Subject::PodSpec {
                images: vec![
                    ("initContainers[0]".into(), "r/a:1".into()),
                    ("containers[0]".into(), "r/b:1".into()),
                ],
                node_name: Some("n1".into()),
            }
        );
        // A template's nodeName is not a placement.
        let d = serde_json::json!({"spec": {"template": pod}});
        let r = parse(&review("Deployment", "UPDATE", d)).unwrap();
        assert!(matches!(
            r.subject,
            Subject::PodSpec {
                node_name: None,
                ..
            }
        ));
        let b = serde_json::json!({"target": {"kind": "Node", "name": "n2"}});
        let r = parse(&review("Binding", "CREATE", b)).unwrap();
        assert_eq!(r.subject, Subject::Binding { node: "n2".into() });
        assert_eq!(
            parse(&review("Pod", "DELETE", serde_json::Value::Null))
                .unwrap()
                .subject,
            Subject::Nothing
        );
        assert_eq!(
            parse(&review("ConfigMap", "CREATE", serde_json::json!({})))
                .unwrap()
                .subject,
            Subject::Nothing
        );
        for (kind, object, why) in [
            ("Binding", serde_json::json!({"target": {}}), "target.name"),
            (
                "Pod",
                serde_json::json!({"spec": {"nodeName": 7}}),
                "nodeName",
            ),
            (
                "Pod",
                serde_json::json!({"spec": {"containers": {}}}),
                "not a list",
            ),
            ("Job", serde_json::json!({"spec": {}}), "without a pod spec"),
        ] {
            let e = parse(&review(kind, "CREATE", object)).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // Images collected stop at one past the bound.
        let many: Vec<_> = (0..200)
            .map(|i| serde_json::json!({"image": format!("r/x:{i}")}))
            .collect();
        let r = parse(&review(
            "Pod",
            "CREATE",
            serde_json::json!({"spec": {"containers": many}}),
        ))
        .unwrap();
        let Subject::PodSpec { images, .. } = r.subject else {
            panic!()
        };
        assert_eq!(images.len(), MAX_IMAGES + 1);
    }
}
