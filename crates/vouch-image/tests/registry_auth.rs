//! Registry authentication against a real docker-registry on loopback (TLS): `auth:
//! htpasswd` (HTTP Basic, the file made by apache2-utils' htpasswd) and `auth: token` (the
//! Docker token flow, tokens issued by vouch-testkit's registry_token.py with PyJWT and
//! verified by docker-registry). Credentials come from a Docker config.json; without them,
//! with a wrong password, or with a realm downgrading HTTPS to HTTP, pulls are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use vouch_image::auth::Credentials;
use vouch_image::{ClientOptions, ImageError, ImageRef, PublicKey, RegistryClient, verify_image};
use vouch_testkit::registry::{
    REGISTRY_PASSWORD, REGISTRY_USER, Registry, RegistryAuth, missing_auth_tools,
};

/// A registry holding a signed image, then closed to anonymous pulls by `auth`.
fn registry(dir: &std::path::Path, auth: RegistryAuth) -> (Registry, PublicKey, ImageRef) {
    let mut reg = Registry::start(dir);
    let digest = reg.push_image("team/app", "v1", "private image\n");
    let key = PublicKey::from_pem(&std::fs::read_to_string(reg.cosign_key("k")).unwrap()).unwrap();
    reg.cosign_sign("team/app", &digest, "k", "good");
    reg.require_auth(auth);
    let image = ImageRef::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    (reg, key, image)
}

/// A Docker config.json giving `password` for the registry, written and read back.
fn docker_config(dir: &std::path::Path, reg: &Registry, password: &str) -> Credentials {
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{password}"));
    let path = dir.join(format!("config-{}.json", password.len()));
    std::fs::write(
        &path,
        serde_json::json!({"auths": {(reg.addr.clone()): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    Credentials::from_docker_config(&std::fs::read(&path).unwrap()).unwrap()
}

fn client(reg: &Registry, credentials: Credentials) -> RegistryClient {
    RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(reg.ca()).unwrap()),
        credentials,
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_needs_the_right_credentials() {
    if let Some(why) = missing_auth_tools() {
        eprintln!("SKIPPED htpasswd_registry_needs_the_right_credentials: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, key, image) = registry(tmp.path(), RegistryAuth::Htpasswd);
    let keys = [key];
    // Anonymous: refused, naming the missing credentials.
    let e = verify_image(&client(&reg, Credentials::default()), &image, &keys)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("none are configured"), "{e}");
    // A wrong password: the registry answers 401 again.
    let bad = docker_config(tmp.path(), &reg, "wrong password");
    let e = verify_image(&client(&reg, bad), &image, &keys)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ImageError::Registry(m) if m.contains("401")),
        "{e}"
    );
    // The right one, from a Docker config.json: verified, and again with the cached scheme.
    let good = client(&reg, docker_config(tmp.path(), &reg, REGISTRY_PASSWORD));
    verify_image(&good, &image, &keys).await.unwrap();
    verify_image(&good, &image, &keys).await.unwrap();
    // Credentials for another registry are not sent to this one.
    let mut other = Credentials::default();
    other.insert("registry.example:5000", REGISTRY_USER, REGISTRY_PASSWORD);
    let e = verify_image(&client(&reg, other), &image, &keys)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("none are configured"), "{e}");
}

fn token_requests(reg: &Registry) -> Vec<String> {
    std::fs::read_to_string(reg.token_log())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_registry_runs_the_docker_token_flow() {
    if let Some(why) = missing_auth_tools() {
        eprintln!("SKIPPED token_registry_runs_the_docker_token_flow: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, key, image) = registry(
        tmp.path(),
        RegistryAuth::Token {
            realm_scheme: "https",
        },
    );
    let keys = [key];
    // Anonymous: the token server refuses, so does the registry.
    let e = verify_image(&client(&reg, Credentials::default()), &image, &keys)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no credentials configured"), "{e}");
    assert_eq!(
        token_requests(&reg),
        vec!["auth=none scope=repository:team/app:pull"]
    );
    // A wrong password.
    let bad = docker_config(tmp.path(), &reg, "wrong password");
    let e = verify_image(&client(&reg, bad), &image, &keys)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("credentials refused"), "{e}");
    // The right one: one token, reused for the manifest, the signature and the payload.
    let good = client(&reg, docker_config(tmp.path(), &reg, REGISTRY_PASSWORD));
    let before = token_requests(&reg).len();
    verify_image(&good, &image, &keys).await.unwrap();
    verify_image(&good, &image, &keys).await.unwrap();
    let asked = &token_requests(&reg)[before..];
    assert_eq!(asked, ["auth=ok scope=repository:team/app:pull"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realm_downgrading_to_plain_http_gets_no_credentials() {
    if let Some(why) = missing_auth_tools() {
        eprintln!("SKIPPED a_realm_downgrading_to_plain_http_gets_no_credentials: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reg, key, image) = registry(
        tmp.path(),
        RegistryAuth::Token {
            realm_scheme: "http",
        },
    );
    let good = client(&reg, docker_config(tmp.path(), &reg, REGISTRY_PASSWORD));
    let e = verify_image(&good, &image, &[key]).await.unwrap_err();
    assert!(e.to_string().contains("refusing the downgrade"), "{e}");
    // Nothing was sent to the token server, not even over TLS.
    assert!(token_requests(&reg).is_empty());
}

/// Serve raw HTTP/1.1 on loopback: each request's head is sent to `seen`, and `answer` makes
/// the response from it.
async fn serve(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (tx, answer) = (tx.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let _ = tx.send(head.clone());
                let _ = s.write_all(answer(&head).as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

/// A registry that takes the credentials, then redirects the pull to another host (as
/// registries do to blob storage): the other host does not get the credentials.
#[tokio::test]
async fn a_redirect_to_another_host_drops_the_credentials() {
    let (storage, mut at_storage) = serve(|_| {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
    })
    .await;
    let (registry, mut at_registry) = serve(move |head| {
        if head.contains("\r\nauthorization: basic ") {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{storage}/v2/team/app/manifests/v1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        } else {
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"r\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()
        }
    })
    .await;
    let mut credentials = Credentials::default();
    credentials.insert(&registry.to_string(), REGISTRY_USER, REGISTRY_PASSWORD);
    let client = RegistryClient::new(&ClientOptions {
        plain_http: true,
        credentials,
        ..ClientOptions::default()
    })
    .unwrap();
    let image = ImageRef::parse(&format!("{registry}/team/app:v1")).unwrap();
    // The storage host answers 404: no manifest.
    assert!(client.manifest(&image, "v1").await.unwrap().is_none());
    let first = at_registry.recv().await.unwrap();
    let second = at_registry.recv().await.unwrap();
    assert!(!first.contains("authorization:"), "{first}");
    assert!(second.contains("authorization: basic "), "{second}");
    let redirected = at_storage.recv().await.unwrap();
    assert!(
        redirected.starts_with("get /v2/team/app/manifests/v1"),
        "{redirected}"
    );
    assert!(!redirected.contains("authorization"), "{redirected}");
}
