//! The Kubernetes validating admission webhook (`POST /v1/admission/validate`) over HTTPS on
//! loopback, against a real docker-registry over TLS holding buildah-built images signed in
//! cosign's layout (vouch-testkit's registry module). The AdmissionReview requests are built to
//! the documented `admission.k8s.io/v1` schema (every field of the request example in the
//! Kubernetes docs, "Dynamic Admission Control"; no recorded review is used), posted as the API
//! server posts them (with its `?timeout=` query).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{Value, json};
use vouch_server::ImageSignatureSettings;
use vouch_testkit::registry::{Registry, missing_tools};

/// An AdmissionReview v1 as the API server sends it for `kind` (a Pod, or a workload with a pod
/// template) whose pod spec is `spec`.
fn review(uid: &str, kind: &str, spec: Value) -> Value {
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        "Deployment" => ("apps", "deployments"),
        "CronJob" => ("batch", "cronjobs"),
        _ => panic!("{kind}"),
    };
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let object_spec = match kind {
        "Pod" => spec,
        "Deployment" => json!({
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}
        }),
        _ => json!({
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": spec}}}
        }),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": "web",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "admin",
                "uid": "014fbff9a07c",
                "groups": ["system:authenticated", "my-admin-group"],
                "extra": {"some-key": ["some-value1", "some-value2"]}
            },
            "object": {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": object_spec
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn containers(images: &[&str]) -> Value {
    json!({
        "containers": images.iter().enumerate().map(|(i, im)| json!({
            "name": format!("c{i}"),
            "image": im,
            "imagePullPolicy": "IfNotPresent"
        })).collect::<Vec<_>>(),
        "restartPolicy": "Always"
    })
}

struct Webhook {
    http: reqwest::Client,
    url: String,
}

impl Webhook {
    async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Post `review`; the answer's `response`, checked to be an AdmissionReview v1 answering
    /// this request's uid.
    async fn review(&self, review: &Value) -> Value {
        let (status, v) = self.post_raw(serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{v}");
        assert_eq!(v["kind"], "AdmissionReview", "{v}");
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "{v}");
        v["response"].clone()
    }

    async fn denied(&self, review: &Value) -> String {
        let r = self.review(review).await;
        assert_eq!(r["allowed"], false, "{r}");
        assert_eq!(r["status"]["code"], 403, "{r}");
        r["status"]["message"].as_str().unwrap().to_string()
    }

    async fn allowed(&self, review: &Value) {
        let r = self.review(review).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(r.get("status").is_none(), "{r}");
    }
}

async fn webhook(h: &common::Harness) -> Webhook {
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    assert!(h.server.base_url.starts_with("https://"));
    Webhook {
        http,
        url: format!("{}/v1/admission/validate?timeout=10s", h.server.base_url),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_unsigned_images_are_denied() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED pods_with_unsigned_images_are_denied: {why}");
        return;
    }
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(reg_dir.path());
    let signed = reg.push_image("shop/web", "v1", "the web image\n");
    let unsigned = reg.push_image("shop/web", "v2", "an image nobody signed\n");
    let by_other = reg.push_image("shop/web", "v3", "an image signed by someone else\n");
    let trusted = reg.cosign_key("trusted");
    reg.cosign_key("other");
    reg.cosign_sign("shop/web", &signed, "trusted", "good");
    reg.cosign_sign("shop/web", &by_other, "other", "good");
    let repo = format!("{}/shop/web", reg.addr);

    let settings = ImageSignatureSettings {
        repositories: vec![repo.clone()],
        keys: vec![trusted],
        registry_ca: Some(reg.ca()),
        plain_http: false,
        ttl: 300,
        cache_entries: 16,
    };
    let h = common::Harness::new(|c| {
        c.image_signatures = Some(settings.clone());
        c.tenants = vec![vouch_server::TenantConfig {
            name: "acme".into(),
            trust_domain: "acme.test".into(),
            database_url: None,
        }];
    })
    .await;
    let w = webhook(&h).await;

    // Signed, by tag and by digest; in a Deployment's and a CronJob's templates too.
    let by_tag = format!("{repo}:v1");
    let by_digest = format!("{repo}@{signed}");
    // Measured, not asserted: the first review resolves the tag and fetches the signature, the
    // next resolves the tag and reuses the digest's cached answer.
    let t = std::time::Instant::now();
    w.allowed(&review("u-1", "Pod", containers(&[&by_tag])))
        .await;
    let first = t.elapsed();
    let t = std::time::Instant::now();
    w.allowed(&review("u-1b", "Pod", containers(&[&by_tag])))
        .await;
    eprintln!(
        "admission review of one signed image by tag: first {first:?}, cached signature {:?}",
        t.elapsed()
    );
    w.allowed(&review("u-2", "Pod", containers(&[&by_digest])))
        .await;
    w.allowed(&review(
        "u-3",
        "Deployment",
        containers(&[&by_tag, &by_digest]),
    ))
    .await;
    w.allowed(&review("u-4", "CronJob", containers(&[&by_tag])))
        .await;

    // Unsigned: denied, the digest the tag resolved to named.
    let m = w
        .denied(&review("u-5", "Pod", containers(&[&format!("{repo}:v2")])))
        .await;
    assert!(m.contains(&unsigned) && m.contains("no signature"), "{m}");
    // Signed by a key that is not trusted.
    let m = w
        .denied(&review("u-6", "Pod", containers(&[&format!("{repo}:v3")])))
        .await;
    assert!(
        m.contains(&by_other) && m.contains("by no trusted key"),
        "{m}"
    );
    // One of two containers unsigned; a template's too.
    let two = containers(&[&by_tag, &format!("{repo}@{unsigned}")]);
    let m = w.denied(&review("u-7", "Pod", two.clone())).await;
    assert!(m.contains("containers[1]") && m.contains(&unsigned), "{m}");
    assert!(!m.contains("containers[0]"), "{m}");
    let m = w.denied(&review("u-8", "Deployment", two)).await;
    assert!(m.contains(&unsigned), "{m}");
    // An unsigned init container, and an unsigned ephemeral container (kubectl debug: an
    // UPDATE of the pod's ephemeralcontainers subresource).
    let mut spec = containers(&[&by_tag]);
    spec["initContainers"] = json!([{"name": "init", "image": format!("{repo}:v2")}]);
    let m = w.denied(&review("u-9", "Pod", spec)).await;
    assert!(
        m.contains("initContainers[0]") && m.contains(&unsigned),
        "{m}"
    );
    let mut spec = containers(&[&by_tag]);
    spec["ephemeralContainers"] = json!([{"name": "debug", "image": format!("{repo}:v3")}]);
    let mut r = review("u-10", "Pod", spec);
    r["request"]["operation"] = json!("UPDATE");
    r["request"]["subResource"] = json!("ephemeralcontainers");
    let m = w.denied(&r).await;
    assert!(m.contains("ephemeralContainers[0]"), "{m}");
    // A digest one byte off: no such manifest, no signature.
    let mut flipped = signed.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let m = w
        .denied(&review(
            "u-11",
            "Pod",
            containers(&[&format!("{repo}@{flipped}")]),
        ))
        .await;
    assert!(m.contains(&flipped), "{m}");
    // An image outside the configured repositories, or without a registry host (Docker Hub
    // implied), is denied without asking anyone.
    let m = w
        .denied(&review(
            "u-12",
            "Pod",
            containers(&[&format!("{}/shop/other:v1", reg.addr)]),
        ))
        .await;
    assert!(m.contains("not one whose signatures"), "{m}");
    let m = w
        .denied(&review("u-13", "Pod", containers(&["nginx:1.27"])))
        .await;
    assert!(m.contains("registry"), "{m}");

    // The tag moved to an unsigned image after an allow: resolved again, denied.
    let moved = reg.push_image("shop/web", "v1", "v1 replaced by an unsigned image\n");
    assert_ne!(moved, signed);
    let m = w
        .denied(&review("u-14", "Pod", containers(&[&by_tag])))
        .await;
    assert!(m.contains(&moved), "{m}");
    // The signed digest itself is still allowed.
    w.allowed(&review("u-15", "Pod", containers(&[&by_digest])))
        .await;

    // A tenant's webhook, under /t/<tenant>, decides the same way.
    let tenant = Webhook {
        http: w.http.clone(),
        url: format!("{}/t/acme/v1/admission/validate", h.server.base_url),
    };
    tenant
        .allowed(&review("t-1", "Pod", containers(&[&by_digest])))
        .await;
    let m = tenant
        .denied(&review("t-2", "Pod", containers(&[&format!("{repo}:v2")])))
        .await;
    assert!(m.contains(&unsigned), "{m}");

    // A DELETE carries no object and is allowed.
    let mut r = review("u-16", "Pod", containers(&[&by_tag]));
    r["request"]["operation"] = json!("DELETE");
    r["request"]["object"] = Value::Null;
    w.allowed(&r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_are_refused() {
    let h = common::Harness::new(|_| {}).await;
    let w = webhook(&h).await;
    let good = review("u-1", "Pod", containers(&["127.0.0.1:5000/shop/web:v1"]));
    // Without [image_signatures] every pod with an image is denied: fail closed.
    let m = w.denied(&good).await;
    assert!(m.contains("checks no image signatures"), "{m}");

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push((
        "not JSON",
        b"{\"apiVersion\": \"admission.k8s.io/v1\"".to_vec(),
    ));
    let mut v1beta1 = good.clone();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    cases.push(("v1beta1", serde_json::to_vec(&v1beta1).unwrap()));
    let mut kind = good.clone();
    kind["kind"] = json!("AdmissionRevie");
    cases.push(("kind", serde_json::to_vec(&kind).unwrap()));
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    cases.push(("no request", serde_json::to_vec(&no_request).unwrap()));
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    cases.push(("no uid", serde_json::to_vec(&no_uid).unwrap()));
    let mut no_image = good.clone();
    no_image["request"]["object"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    cases.push(("no image", serde_json::to_vec(&no_image).unwrap()));
    let mut no_object = good.clone();
    no_object["request"]["object"] = Value::Null;
    cases.push(("no object", serde_json::to_vec(&no_object).unwrap()));
    for (name, body) in cases {
        let (status, v) = w.post_raw(body).await;
        assert_eq!(status, 400, "{name}: {v}");
        assert_eq!(v["error"]["kind"], "malformed_request", "{name}: {v}");
    }
    // Over 3 MiB: refused before it is parsed.
    let mut big = good.clone();
    big["request"]["object"]["metadata"]["annotations"] =
        json!({"padding": "x".repeat(3 * 1024 * 1024)});
    let (status, v) = w.post_raw(serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["kind"], "body_too_large", "{v}");
    // More distinct images than a review checks: denied before any lookup.
    let many: Vec<String> = (0..65)
        .map(|i| format!("127.0.0.1:5000/shop/web:v{i}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let m = w.denied(&review("u-many", "Pod", containers(&many))).await;
    assert!(m.contains("more than 64"), "{m}");
    // Just under the bound is read (and denied for its image, not for its size).
    let mut under = good.clone();
    under["request"]["object"]["metadata"]["annotations"] =
        json!({"padding": "x".repeat(2 * 1024 * 1024)});
    let m = w.denied(&under).await;
    assert!(m.contains("checks no image signatures"), "{m}");
}
