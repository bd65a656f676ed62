//! `vouch image verify` against a real registry on loopback (vouch-testkit's registry:
//! docker-registry over TLS, buildah + skopeo, cosign-format signatures by an independent
//! Python signer): exit 0 and the digest for a signed image, 1 with the reason for an unsigned
//! or tampered one, 2 for a local error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::Digest as _;
use std::process::Command;
use vouch_testkit::registry::{Registry, missing_tools};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

#[test]
fn image_verify_exit_codes() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED image_verify_exit_codes: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let signed = reg.push_image("cli/app", "v1", "signed\n");
    reg.push_image("cli/app", "v2", "unsigned\n");
    let key = reg.cosign_key("k");
    reg.cosign_sign("cli/app", &signed, "k", "good");
    let verify = |image: &str, key: &std::path::Path| {
        Command::new(VOUCH)
            .args(["image", "verify", image, "--key"])
            .arg(key)
            .arg("--registry-ca")
            .arg(reg.ca())
            .output()
            .unwrap()
    };
    let o = verify(&format!("{}/cli/app:v1", reg.addr), &key);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&signed));

    let o = verify(&format!("{}/cli/app:v2", reg.addr), &key);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no cosign signature"));

    reg.cosign_sign("cli/app", &signed, "k", "flip-signature");
    let o = verify(&format!("{}/cli/app:v1", reg.addr), &key);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("by no trusted key"));

    let o = verify(
        &format!("{}/cli/app:v1", reg.addr),
        &tmp.path().join("absent.pub"),
    );
    assert_eq!(o.status.code(), Some(2));
}

/// The real key-less signature (testdata/cosign-keyless: cosign, a Fulcio certificate for a
/// GitHub login, the public-good Rekor) pushed into the registry, verified against the real
/// trusted root with the required identity and issuer; another identity exits 1.
#[test]
fn image_verify_key_less() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED image_verify_key_less: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let manifest = vouch_testkit::read_testdata("cosign-keyless/fulcio-rekor.manifest.json");
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
    reg.cosign_copy(
        "cosign-signed/fulcio-rekor-1",
        &digest,
        &vouch_testkit::testdata("cosign-keyless/fulcio-rekor.signature"),
    );
    let image = format!("{}/cosign-signed/fulcio-rekor-1@{digest}", reg.addr);
    let verify = |identity: &str, remap: &[&str]| {
        Command::new(VOUCH)
            .args(["image", "verify", &image, "--trusted-root"])
            .arg(vouch_testkit::testdata("slsa/trusted_root.json"))
            .args(["--cert-identity", identity])
            .args(["--cert-issuer", "https://github.com/login/oauth"])
            .arg("--registry-ca")
            .arg(reg.ca())
            .args(remap)
            .output()
            .unwrap()
    };
    // Signed under the signer's registry, 192.168.64.2:5000: this one must be declared its
    // mirror.
    let mirror = format!("--remap-identity={}=192.168.64.2:5000", reg.addr);
    let o = verify("mitr@redhat.com", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed for"));
    let remap: &[&str] = &[&mirror];
    let o = verify("mitr@redhat.com", remap);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("fulcio:https://github.com/login/oauth#mitr@redhat.com")
    );
    let o = verify("someone@example.com", remap);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not \"someone@example.com\""));
}

/// A registry requiring HTTP Basic (htpasswd): without `--auth-file` the pull fails (exit 2,
/// a registry error, naming the missing credentials); with a Docker config.json it verifies.
#[test]
fn image_verify_with_an_auth_file() {
    use vouch_testkit::registry::{REGISTRY_PASSWORD, REGISTRY_USER, RegistryAuth};
    if let Some(why) = vouch_testkit::registry::missing_auth_tools() {
        eprintln!("SKIPPED image_verify_with_an_auth_file: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(tmp.path());
    let signed = reg.push_image("cli/private", "v1", "private\n");
    let key = reg.cosign_key("k");
    reg.cosign_sign("cli/private", &signed, "k", "good");
    reg.require_auth(RegistryAuth::Htpasswd);
    let config = tmp.path().join("config.json");
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"))
    };
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let image = format!("{}/cli/private:v1", reg.addr);
    let verify = |extra: &[&std::ffi::OsStr]| {
        Command::new(VOUCH)
            .args(["image", "verify", &image, "--key"])
            .arg(&key)
            .arg("--registry-ca")
            .arg(reg.ca())
            .args(extra)
            .output()
            .unwrap()
    };
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("none are configured"));
    let o = verify(&["--auth-file".as_ref(), config.as_os_str()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&signed));
}
