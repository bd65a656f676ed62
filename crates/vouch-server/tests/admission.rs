//! The Kubernetes validating admission webhook (`POST /v1/admission/validate`) over HTTPS on
//! loopback, against a real docker-registry over TLS holding buildah-built images signed in
//! cosign's layout (vouch-testkit's registry module). The AdmissionReview requests are built to
//! the documented `admission.k8s.io/v1` schema (every field of the request example in the
//! Kubernetes docs, "Dynamic Admission Control"; no recorded review is used), posted as the API
//! server posts them (with its `?timeout=` query).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{Value, json};
use vouch_server::{AdmissionSettings, ImageSignatureSettings};
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
    /// The bearer token sent, as the API server's admission kubeconfig gives it.
    token: Option<String>,
}

impl Webhook {
    async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let mut r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
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

/// `[admission]` with a bearer token (written to a file in `dir`), and the token.
fn token_auth(dir: &std::path::Path) -> (AdmissionSettings, String) {
    let token = "b1e6f0c2a9d84e7f93c5a0d1e2f3a4b5".to_string();
    let file = dir.join("admission.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let s = AdmissionSettings {
        token_file: Some(file),
        ..AdmissionSettings::default()
    };
    (s, token)
}

/// A client of the verifier's HTTPS listener, with `identity` (PEM certificate and key) as its
/// client certificate when given.
fn https_client(h: &common::Harness, identity: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn webhook(h: &common::Harness, token: Option<&str>) -> Webhook {
    assert!(h.server.base_url.starts_with("https://"));
    Webhook {
        http: https_client(h, None),
        url: format!("{}/v1/admission/validate?timeout=10s", h.server.base_url),
        token: token.map(str::to_string),
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
        provenance: false,
        provenance_keys: vec![],
        ..Default::default()
    };
    let (admission, token) = token_auth(reg_dir.path());
    let h = common::Harness::new(|c| {
        c.image_signatures = Some(settings.clone());
        c.admission = Some(admission);
        c.tenants = vec![vouch_server::TenantConfig {
            name: "acme".into(),
            trust_domain: "acme.test".into(),
            database_url: None,
        }];
    })
    .await;
    let w = webhook(&h, Some(&token)).await;

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
        token: Some(token.clone()),
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

    // The tag-to-digest race: `:stable` names the signed image and is admitted by tag; the
    // pod spec keeps the tag, and once the tag is moved to an unsigned image that is what the
    // kubelet pulls when it starts the container (the webhook, asked again, would deny it).
    reg.copy(&format!("shop/web@{signed}"), "shop/web:stable");
    let stable = format!("{repo}:stable");
    w.allowed(&review("r-1", "Pod", containers(&[&stable])))
        .await;
    reg.copy(&format!("shop/web@{unsigned}"), "shop/web:stable");
    let m = w
        .denied(&review("r-2", "Pod", containers(&[&stable])))
        .await;
    assert!(m.contains(&unsigned), "{m}");
    reg.copy(&format!("shop/web@{signed}"), "shop/web:stable");
    // With require_digest a tag alone is denied, even while it names a signed image; by
    // digest (alone or after the tag, which the runtime then ignores) still admitted.
    let (mut admission, token) = token_auth(reg_dir.path());
    admission.require_digest = true;
    let h2 = common::Harness::new(|c| {
        c.image_signatures = Some(settings.clone());
        c.admission = Some(admission);
    })
    .await;
    let w2 = webhook(&h2, Some(&token)).await;
    let m = w2
        .denied(&review("d-1", "Pod", containers(&[&stable])))
        .await;
    assert!(
        m.contains("containers[0]") && m.contains("names no digest"),
        "{m}"
    );
    let mut spec = containers(&[&by_digest]);
    spec["initContainers"] = json!([{"name": "init", "image": stable.clone()}]);
    let m = w2.denied(&review("d-2", "Pod", spec)).await;
    assert!(
        m.contains("initContainers[0]") && m.contains("names no digest"),
        "{m}"
    );
    w2.allowed(&review("d-3", "Pod", containers(&[&by_digest])))
        .await;
    w2.allowed(&review(
        "d-4",
        "Deployment",
        containers(&[&format!("{repo}:v1@{signed}")]),
    ))
    .await;
    // The digest rule does not let an unsigned digest through.
    let m = w2
        .denied(&review(
            "d-5",
            "Pod",
            containers(&[&format!("{repo}@{unsigned}")]),
        ))
        .await;
    assert!(m.contains("no signature"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_are_refused() {
    // Development mode: reviews from anyone.
    let h = common::Harness::new(|c| {
        c.admission = Some(AdmissionSettings {
            insecure_unauthenticated: true,
            ..AdmissionSettings::default()
        })
    })
    .await;
    let w = webhook(&h, None).await;
    let good = review("u-1", "Pod", containers(&["127.0.0.1:5000/shop/web:v1"]));
    // Without [image_signatures] every pod with an image is denied: fail closed.
    let m = w.denied(&good).await;
    assert!(m.contains("checks no image signatures"), "{m}");
    // Without require_attested_node a Binding is not checked.
    w.allowed(&binding("b-0", "web", "any-node")).await;

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

/// A CA made here, and client certificates it issues (with the clientAuth usage, as the API
/// server's admission kubeconfig certificate has).
struct ClientCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl ClientCa {
    fn new(name: &str) -> Self {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        let issuer =
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// PEM certificate then key, for `reqwest::Identity::from_pem`.
    fn client(&self, cn: &str) -> String {
        self.client_with_dns(cn, &[])
    }

    /// The same, with subjectAltName DNS names `dns`.
    fn client_with_dns(&self, cn: &str, dns: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(dns).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_string());
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}

/// A TCP port standing in for a registry: it counts the connections made to it (and closes
/// them), so a test can tell whether the verifier contacted the registry at all.
fn counting_port() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    (addr, n)
}

/// Item 4, "the webhook authenticates the API server": a client certificate from `client_ca`
/// with a name in `client_names`, and the bearer token, are both required; anything less is a
/// 401 before the body is read (the registry is not contacted); a certificate from another CA
/// does not get through the handshake; the verifier's other routes still work for clients with
/// no certificate; and a verifier without `[admission]` reviews nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_must_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let apiservers = ClientCa::new("apiserver client CA");
    let ca_file = dir.path().join("apiserver-ca.pem");
    std::fs::write(&ca_file, apiservers.issuer.pem()).unwrap();
    let apiserver = apiservers.client("kube-apiserver");
    let intruder = apiservers.client("system:node:worker-1");
    let elsewhere = ClientCa::new("apiserver client CA").client("kube-apiserver");

    // A registry port that only counts connections, and a cosign key.
    let (registry, connections) = counting_port();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_file = dir.path().join("cosign.pub");
    std::fs::write(&key_file, key.public_key_pem()).unwrap();
    let (mut admission, token) = token_auth(dir.path());
    admission.client_ca = Some(ca_file);
    admission.client_names = vec!["kube-apiserver".into()];
    let images = ImageSignatureSettings {
        repositories: vec![format!("{registry}/shop/web")],
        keys: vec![key_file],
        registry_ca: None,
        plain_http: false,
        ttl: 300,
        cache_entries: 16,
        provenance: false,
        provenance_keys: vec![],
        ..Default::default()
    };
    let h = common::Harness::new(|c| {
        c.admission = Some(admission);
        c.image_signatures = Some(images);
        c.tenants = vec![vouch_server::TenantConfig {
            name: "acme".into(),
            trust_domain: "acme.test".into(),
            database_url: None,
        }];
    })
    .await;
    let hook = |identity: Option<&str>, token: Option<&str>| Webhook {
        http: https_client(&h, identity),
        url: format!("{}/v1/admission/validate?timeout=10s", h.server.base_url),
        token: token.map(str::to_string),
    };
    let pod = review(
        "auth-1",
        "Pod",
        containers(&[&format!("{registry}/shop/web:v1")]),
    );
    let body = serde_json::to_vec(&pod).unwrap();
    let mut flipped = token.clone().into_bytes();
    flipped[7] ^= 1;
    let flipped = String::from_utf8(flipped).unwrap();
    for (name, w, why) in [
        (
            "no certificate",
            hook(None, Some(&token)),
            "no client certificate",
        ),
        ("no token", hook(Some(&apiserver), None), "no Authorization"),
        (
            "token with a flipped byte",
            hook(Some(&apiserver), Some(&flipped)),
            "not the admission token",
        ),
        (
            "a certificate of another name",
            hook(Some(&intruder), Some(&token)),
            "none of client_names",
        ),
    ] {
        let (status, v) = w.post_raw(body.clone()).await;
        assert_eq!(status, 401, "{name}: {v}");
        assert_eq!(v["error"]["kind"], "unauthenticated", "{name}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(why), "{name}: {m}");
    }
    // A certificate from another CA (same names) is refused by the TLS handshake.
    let other = hook(Some(&elsewhere), Some(&token));
    let r = other
        .http
        .post(&other.url)
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await;
    assert!(r.is_err(), "another CA's certificate got an answer: {r:?}");
    // None of those made the verifier contact the registry.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Clients that present no certificate keep every other route.
    let r = https_client(&h, None)
        .get(format!("{}/healthz", h.server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The API server: reviewed (denied here: the stand-in registry speaks no TLS, so the tag
    // is not resolved), after the verifier asked the registry.
    let w = hook(Some(&apiserver), Some(&token));
    let m = w.denied(&pod).await;
    assert!(m.contains("tag not resolved"), "{m}");
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    // The allowed name as a subjectAltName DNS name (another CN) is the API server too.
    let by_san = apiservers.client_with_dns("apiserver-7", &["kube-apiserver"]);
    hook(Some(&by_san), Some(&token)).denied(&pod).await;
    // A tenant's webhook authenticates the same way.
    let tenant = Webhook {
        url: format!("{}/t/acme/v1/admission/validate", h.server.base_url),
        ..hook(Some(&apiserver), Some(&token))
    };
    tenant.denied(&pod).await;
    let tenant = Webhook {
        url: format!("{}/t/acme/v1/admission/validate", h.server.base_url),
        ..hook(Some(&apiserver), Some(&flipped))
    };
    let (status, _) = tenant.post_raw(body.clone()).await;
    assert_eq!(status, 401);

    // Without [admission], nothing is reviewed.
    let bare = common::Harness::new(|_| {}).await;
    let (status, v) = webhook(&bare, Some(&token)).await.post_raw(body).await;
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{v}"
    );
}

/// A `Binding` review as the API server sends it when the scheduler binds pod `pod` to `node`
/// (`POST /api/v1/namespaces/shop/pods/<pod>/binding`; the object is the scheduler's Binding:
/// the pod's name, namespace and uid, target kind `Node`).
fn binding(uid: &str, pod: &str, node: &str) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Binding"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "subResource": "binding",
            "requestKind": gvk,
            "requestResource": gvr,
            "requestSubResource": "binding",
            "name": pod,
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:kube-scheduler",
                "groups": ["system:authenticated"]
            },
            "object": {
                "kind": "Binding",
                "apiVersion": "v1",
                "metadata": {
                    "name": pod,
                    "namespace": "shop",
                    "uid": "6f0c3a52-3f1e-4d5b-9a57-1f1f3c9d2b7e",
                    "creationTimestamp": null
                },
                "target": {"kind": "Node", "name": node}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

const PSAT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The node of the real EKS token in testdata (k8s/eks_psat_token.jwt).
const NODE_A: &str = "ip-10-15-179-190.eu-west-1.compute.internal";
const NODE_B: &str = "ip-10-15-179-191.eu-west-1.compute.internal";
const NODE_C: &str = "ip-10-15-179-193.eu-west-1.compute.internal";
const STAGING_ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/STAGING";

/// The real EKS projected token's claims, re-dated, addressed to `vouch` and moved to node
/// `node` (uid `node_uid`), signed with `key` (whose JWKS the verifier has): as
/// node_attest_k8s_psat.rs mints them.
fn psat(key: &rcgen::KeyPair, issuer: &str, node: &str, node_uid: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let real = String::from_utf8(vouch_testkit::read_testdata("k8s/eks_psat_token.jwt")).unwrap();
    let payload = real.trim().split('.').nth(1).unwrap();
    let mut c: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    let now = vouch_server::unix_now();
    c["iss"] = issuer.into();
    c["aud"] = json!(["vouch"]);
    c["iat"] = now.into();
    c["nbf"] = now.into();
    c["exp"] = (now + 600).into();
    c["kubernetes.io"]["node"]["name"] = node.into();
    c["kubernetes.io"]["node"]["uid"] = node_uid.into();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("sa-key-1".into());
    jsonwebtoken::encode(
        &header,
        &c,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .unwrap()
    .into_bytes()
}

/// An agent that joins as Kubernetes node `node` by its projected token, its `host` workload
/// made trusted (its executable's digest a reference value) and attested once.
async fn node_agent(
    h: &common::Harness,
    (key, issuer): (&rcgen::KeyPair, &str),
    node: &str,
    uid: &str,
) -> (vouch_agent::Agent, vouch_core::ArStatus) {
    let dir = h.dir.path().join(node);
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, psat(key, issuer, node, uid)).unwrap();
    let exe = dir.join("agent.bin");
    std::fs::write(&exe, node).unwrap();
    let mut agent = vouch_agent::Agent::new(vouch_agent::AgentConfig {
        servers: vec![h.server.base_url.clone()],
        ca_cert: h.server.ca_cert.clone(),
        data_dir: dir.join("agent"),
        workload_name: "host".into(),
        exe: Some(exe),
        node_attestation: Some(vouch_agent::NodeAttestationConfig {
            method: "k8s_psat".into(),
            data_file: Some(token),
            url: None,
            headers: Default::default(),
        }),
        ..vouch_agent::AgentConfig::default()
    })
    .await
    .unwrap();
    use base64::Engine as _;
    let ev = agent.evidence("x").unwrap();
    let m: vouch_core::SoftwareMeasurements = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&ev.payload)
            .unwrap(),
    )
    .unwrap();
    h.store
        .add_reference_value(
            &vouch_policy::ReferenceValue {
                kind: "executable".into(),
                key: "host".into(),
                value: m.workload.exe_sha256.clone(),
            },
            vouch_server::unix_now(),
        )
        .await
        .unwrap();
    let status = agent.attest_once().await.unwrap().status;
    (agent, status)
}

/// Item 4, "pods may run only on nodes attested affirming": with `require_attested_node`, a
/// Binding (the scheduler placing a pod) and a Pod created with `spec.nodeName` are allowed
/// only onto a Kubernetes node whose k8s_psat node attestation (cluster `prod`) names it and
/// whose `host` workload is affirming; a node never attested, a node name one byte off, a
/// revoked node and a node whose attestation is overdue are each denied with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_only_on_nodes_attested_affirming() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let dir = tempfile::tempdir().unwrap();
    // Two clusters the verifier takes node attestations from: `prod`, whose pods the webhook
    // gates, and `staging`; each with its service-account key, and its JWKS for the verifier.
    let mut clusters = Vec::new();
    let mut keys = Vec::new();
    for (name, issuer) in [("prod", PSAT_ISSUER), ("staging", STAGING_ISSUER)] {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = key.public_key_raw();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "sa-key-1",
            "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..]),
        }]});
        let jwks_file = dir.path().join(format!("{name}.jwks.json"));
        std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).unwrap();
        clusters.push(json!({
            "name": name,
            "issuer": issuer,
            "jwks": jwks_file,
            "service_account_allow_list": ["hakawai:hakawai-litellm-proxy"],
        }));
        keys.push(key);
    }
    let (prod, staging) = ((&keys[0], PSAT_ISSUER), (&keys[1], STAGING_ISSUER));
    let (mut admission, token) = token_auth(dir.path());
    admission.require_attested_node = true;
    admission.cluster = Some("prod".into());
    let h = common::Harness::new(|c| {
        c.node_attestors = vec!["k8s_psat".into()];
        c.node_attestor
            .insert("k8s_psat".into(), json!({ "clusters": clusters }));
        c.admission = Some(admission);
    })
    .await;
    let w = webhook(&h, Some(&token)).await;
    let (a, status) = node_agent(&h, prod, NODE_A, "ceb6b98b-f46f-448d-8a2d-4e036c36a243").await;
    assert_eq!(status, vouch_core::ArStatus::Affirming);
    let (_b, status) = node_agent(&h, prod, NODE_B, "0d1e2f30-4152-4637-8a9b-acbdcedff001").await;
    assert_eq!(status, vouch_core::ArStatus::Affirming);
    // A node of the staging cluster, attested affirming there.
    let (_c, status) =
        node_agent(&h, staging, NODE_C, "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d").await;
    assert_eq!(status, vouch_core::ArStatus::Affirming);

    // Bound to an attested, affirming node: allowed.
    w.allowed(&binding("b-1", "web-1", NODE_A)).await;
    w.allowed(&binding("b-2", "web-2", NODE_B)).await;
    // A node no k8s_psat attestation names, and NODE_A one byte off.
    let m = w
        .denied(&binding(
            "b-3",
            "web-3",
            "ip-10-15-179-192.eu-west-1.compute.internal",
        ))
        .await;
    assert!(m.contains("was never attested"), "{m}");
    let off = NODE_A.replace("190", "19l");
    let m = w.denied(&binding("b-4", "web-4", &off)).await;
    assert!(m.contains("was never attested") && m.contains(&off), "{m}");
    // A node another cluster attested is not one of this cluster's.
    let m = w.denied(&binding("b-4c", "web-4c", NODE_C)).await;
    assert!(m.contains("of cluster prod was never attested"), "{m}");
    // Not a node name at all.
    let m = w.denied(&binding("b-5", "web-5", "IP-10-15-179-190")).await;
    assert!(m.contains("not a Kubernetes node name"), "{m}");
    // A Binding without a target is not a review.
    let mut r = binding("b-6", "web-6", NODE_A);
    r["request"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("target");
    let (status, v) = w.post_raw(serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(status, 400, "{v}");

    // A Pod created onto a node (no scheduler, no Binding): its node is checked with its
    // images (this verifier checks no image signatures, so every image is denied too).
    let mut spec = containers(&["127.0.0.1:5000/shop/web:v1"]);
    spec["nodeName"] = json!(NODE_A);
    let m = w.denied(&review("p-1", "Pod", spec.clone())).await;
    assert!(m.contains("checks no image signatures"), "{m}");
    assert!(!m.contains("node "), "{m}");
    spec["nodeName"] = json!("ip-10-15-179-192.eu-west-1.compute.internal");
    let m = w.denied(&review("p-2", "Pod", spec.clone())).await;
    assert!(m.contains("was never attested"), "{m}");
    assert!(m.contains("checks no image signatures"), "{m}");
    // An UPDATE of a placed pod is not a placement: its node is not checked again.
    let mut r = review("p-3", "Pod", spec);
    r["request"]["operation"] = json!("UPDATE");
    let m = w.denied(&r).await;
    assert!(!m.contains("never attested"), "{m}");

    // NODE_A revoked: denied from then on; NODE_B unaffected.
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let r = https_client(&h, None)
        .post(format!("{}/v1/revocations", h.server.base_url))
        .bearer_auth(admin.trim())
        .json(&json!({"kind": "node", "target": a.enrollment().node_id, "reason": "stolen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = w.denied(&binding("b-7", "web-7", NODE_A)).await;
    assert!(m.contains("is revoked: stolen"), "{m}");
    w.allowed(&binding("b-8", "web-8", NODE_B)).await;

    // NODE_B's attestation overdue (the verifier's deadline sweep, as time passes):
    // contraindicated, denied.
    h.store
        .mark_overdue(vouch_server::unix_now() + 86_400, 5)
        .await
        .unwrap();
    let m = w.denied(&binding("b-9", "web-9", NODE_B)).await;
    assert!(m.contains("is contraindicated"), "{m}");
}

/// Item 4 with `require_provenance`: a signed image is admitted only when the SLSA provenance
/// cosign attached to its digest (`sha256-<hex>.att`, made by the PyPI in-toto-attestation
/// package via the testkit) verifies with a trusted key and names an allowed builder.
/// Provenance by another builder, none, one with a flipped signature bit, one signed by another
/// key, and one whose subject is another digest are each denied with the reason; an unsigned
/// image with good provenance is still denied for its signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_provenance_from_an_allowed_builder_are_denied() {
    if let Some(why) = missing_tools().or_else(vouch_testkit::registry::missing_attester) {
        eprintln!("SKIPPED images_without_provenance_from_an_allowed_builder_are_denied: {why}");
        return;
    }
    use vouch_testkit::registry::TEST_BUILDER;
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(reg_dir.path());
    let trusted = reg.cosign_key("trusted");
    reg.cosign_key("other");
    let repo_name = "shop/api";
    let repo = format!("{}/{repo_name}", reg.addr);
    // Each image signed by the trusted key, its provenance made as `mode` says.
    let mut digests = std::collections::BTreeMap::new();
    for (tag, signed, provenance) in [
        ("good", true, Some(("trusted", "good".to_string()))),
        ("none", true, None),
        (
            "other-builder",
            true,
            Some((
                "trusted",
                "builder:https://github.com/attacker/builder/.github/workflows/x.yml@refs/heads/main".into(),
            )),
        ),
        ("flipped", true, Some(("trusted", "flip-signature".into()))),
        ("other-key", true, Some(("other", "good".into()))),
        ("unsigned", false, Some(("trusted", "good".into()))),
    ] {
        let d = reg.push_image(repo_name, tag, &format!("the {tag} image\n"));
        if signed {
            reg.cosign_sign(repo_name, &d, "trusted", "good");
        }
        if let Some((key, mode)) = provenance {
            reg.cosign_attest(repo_name, &d, key, &mode);
        }
        digests.insert(tag, d);
    }
    // Provenance whose subject is another image's digest (the good one's), attached here.
    let moved = reg.push_image(repo_name, "moved", "the moved image\n");
    reg.cosign_sign(repo_name, &moved, "trusted", "good");
    reg.cosign_attest(
        repo_name,
        &moved,
        "trusted",
        &format!("other-digest:{}", digests["good"]),
    );
    digests.insert("moved", moved);

    let dir = tempfile::tempdir().unwrap();
    let (mut admission, token) = token_auth(dir.path());
    admission.require_provenance = true;
    admission.provenance_builders = vec![TEST_BUILDER.to_string()];
    let h = common::Harness::new(|c| {
        c.image_signatures = Some(ImageSignatureSettings {
            repositories: vec![repo.clone()],
            keys: vec![trusted],
            registry_ca: Some(reg.ca()),
            plain_http: false,
            ttl: 300,
            cache_entries: 16,
            provenance: true,
            provenance_keys: vec![],
            ..Default::default()
        });
        c.admission = Some(admission);
    })
    .await;
    let w = webhook(&h, Some(&token)).await;
    let pod = |uid: &str, tag: &str| review(uid, "Pod", containers(&[&format!("{repo}:{tag}")]));

    // Measured, not asserted: the first review fetches signature and provenance, the next
    // reuses both answers (the tag is resolved each time).
    let t = std::time::Instant::now();
    w.allowed(&pod("p-1", "good")).await;
    let first = t.elapsed();
    let t = std::time::Instant::now();
    w.allowed(&pod("p-2", "good")).await;
    eprintln!(
        "admission review with provenance: first {first:?}, cached {:?}",
        t.elapsed()
    );
    w.allowed(&review(
        "p-3",
        "Deployment",
        containers(&[&format!("{repo}@{}", digests["good"])]),
    ))
    .await;

    for (uid, tag, why) in [
        ("p-4", "none", "no attached provenance"),
        ("p-5", "other-builder", "not one of provenance_builders"),
        ("p-6", "flipped", "no verified SLSA provenance"),
        ("p-7", "other-key", "no verified SLSA provenance"),
        ("p-8", "moved", "no verified SLSA provenance"),
        ("p-9", "unsigned", "not signed by a trusted key"),
    ] {
        let m = w.denied(&pod(uid, tag)).await;
        assert!(m.contains(why) && m.contains(&digests[tag]), "{tag}: {m}");
    }
    // The builder named in the denial is the one the provenance gave.
    let m = w.denied(&pod("p-10", "other-builder")).await;
    assert!(m.contains("github.com/attacker/builder"), "{m}");
    // One image without provenance beside a good one denies the pod.
    let m = w
        .denied(&review(
            "p-11",
            "Pod",
            containers(&[&format!("{repo}:good"), &format!("{repo}:none")]),
        ))
        .await;
    assert!(
        m.contains("containers[1]") && !m.contains("containers[0]"),
        "{m}"
    );
}

/// A `client_ca` file with no certificate in it (a key pasted instead) stops the verifier at
/// start, rather than leaving it without a way to authenticate the API server.
#[tokio::test]
async fn a_client_ca_without_a_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let cfg = vouch_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        admission: Some(AdmissionSettings {
            client_ca: Some(ca),
            ..AdmissionSettings::default()
        }),
        ..vouch_server::ServerConfig::default()
    };
    let store: std::sync::Arc<dyn vouch_store::Store> = std::sync::Arc::new(
        vouch_store::SqliteStore::open(&cfg.database_path())
            .await
            .unwrap(),
    );
    let e = match vouch_server::start_with_store(cfg, store).await {
        Ok(_) => panic!("started without a client CA certificate"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("client_ca"), "{e}");
}

/// Key-less signatures at admission: the real key-less signature of testdata/cosign-keyless
/// (a Fulcio certificate for a GitHub login, logged in the public-good Rekor; signed for
/// `192.168.64.2:5000/...`, which this registry is declared a mirror of) pushed into a real
/// registry. A verifier trusting that identity under the public-good trusted root admits the
/// pod; one trusting another identity denies it, naming the certificate's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_key_less_signed_images_are_admitted_for_the_trusted_identity() {
    if let Some(why) = missing_tools() {
        eprintln!(
            "SKIPPED pods_with_key_less_signed_images_are_admitted_for_the_trusted_identity: {why}"
        );
        return;
    }
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(reg_dir.path());
    let digest = vouch_image::Digest::of(&vouch_testkit::read_testdata(
        "cosign-keyless/fulcio-rekor.manifest.json",
    ))
    .to_string();
    let repo = "cosign-signed/fulcio-rekor-1";
    reg.cosign_copy(
        repo,
        &digest,
        &vouch_testkit::testdata("cosign-keyless/fulcio-rekor.signature"),
    );
    let image = format!("{}/{repo}@{digest}", reg.addr);
    let signer = |identity: &str| ImageSignatureSettings {
        repositories: vec![format!("{}/{repo}", reg.addr)],
        registry_ca: Some(reg.ca()),
        trusted_root: Some(vouch_testkit::testdata("slsa/trusted_root.json")),
        identities: vec![vouch_server::KeylessSigner {
            identity: identity.into(),
            issuer: "https://github.com/login/oauth".into(),
        }],
        remap_identity: vec![format!("{}=192.168.64.2:5000", reg.addr)],
        ..Default::default()
    };
    for (identity, admitted) in [("mitr@redhat.com", true), ("someone@example.com", false)] {
        let (admission, token) = token_auth(reg_dir.path());
        let h = common::Harness::new(|c| {
            c.image_signatures = Some(signer(identity));
            c.admission = Some(admission);
        })
        .await;
        let w = webhook(&h, Some(&token)).await;
        let pod = review("k-1", "Pod", containers(&[&image]));
        if admitted {
            w.allowed(&pod).await;
        } else {
            let why = w.denied(&pod).await;
            assert!(
                why.contains(&digest) && why.contains("certificate for \"mitr@redhat.com\""),
                "{why}"
            );
        }
    }
}
