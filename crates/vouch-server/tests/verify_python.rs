//! Verified by others (issue 17 item 2): the Python block of docs/VERIFY.md, run as it is
//! written by Debian's Python with PyJWT and cryptography (`python3-jwt`,
//! `python3-cryptography`, installed by scripts/deps.sh), verifies a real result of a running
//! verifier against its JWKS fetched over HTTPS, and refuses the same result with one byte of
//! its signature changed, for another audience, or from a verifier whose keys it did not fetch.
//!
//! The JWKS it reads is the verifier's real one, so it also holds the `AKP` ML-DSA-65 key: the
//! guide's code (and PyJWT) must skip it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use vouch_core::ArStatus;

mod common;
use common::{Harness, RP_AUDIENCE};

/// Debian's interpreter, which sees the apt packages (a `python3` earlier on PATH, e.g. from
/// pyenv, may not).
const PYTHON: &str = "/usr/bin/python3";

/// The first ```python block of docs/VERIFY.md.
fn guide_python() -> String {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/VERIFY.md"))
            .unwrap();
    let start = guide.find("```python\n").expect("a python block") + "```python\n".len();
    let len = guide[start..].find("```").expect("the block's end");
    guide[start..start + len].to_string()
}

/// Run the guide's code on `result`; (exit success, stdout, stderr). Asynchronously: the
/// verifier it calls runs on this test's runtime.
async fn run(h: &Harness, script: &Path, result: &str, audience: &str) -> (bool, String, String) {
    let file = h.path("presented.jwt");
    std::fs::write(&file, result).unwrap();
    let out = tokio::process::Command::new(PYTHON)
        .arg(script)
        .arg(&file)
        .env("VOUCH_URL", &h.server.base_url)
        .env("VOUCH_CA", h.server.ca_cert.as_ref().unwrap())
        .env("VOUCH_AUDIENCE", audience)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{PYTHON}: {e} (scripts/deps.sh --test installs it)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pyjwt_verifies_a_result_as_the_guide_says() {
    let deps = Command::new(PYTHON)
        .args(["-c", "import jwt, cryptography; print(jwt.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e} (scripts/deps.sh --test installs it)"));
    assert!(
        deps.status.success(),
        "PyJWT or cryptography missing for {PYTHON} (apt-get install python3-jwt \
         python3-cryptography, as scripts/deps.sh --test does): {}",
        String::from_utf8_lossy(&deps.stderr)
    );

    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    assert_eq!(good.status, ArStatus::Affirming, "{:?}", good.reasons);
    // The JWKS the guide reads holds the ML-DSA key too.
    assert!(h.client().jwks().await.unwrap().contains("\"AKP\""));

    let script = h.path("verify.py");
    std::fs::write(&script, guide_python()).unwrap();

    let (ok, out, err) = run(&h, &script, &good.result, RP_AUDIENCE).await;
    assert!(ok, "the guide's Python refused a good result: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "affirming");
    assert_eq!(v["sub"], good.workload_id.as_str());

    // One changed byte of the signature.
    let (head, sig) = good.result.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}.{}", String::from_utf8(sig).unwrap());
    let (ok, _, err) = run(&h, &script, &forged, RP_AUDIENCE).await;
    assert!(!ok && err.contains("InvalidSignatureError"), "{err}");

    // A result for this relying party presented to another.
    let (ok, _, err) = run(&h, &script, &good.result, "another-rp").await;
    assert!(!ok && err.contains("InvalidAudienceError"), "{err}");

    // A contraindicated result verifies but is refused on its status.
    std::fs::write(h.path("app.conf"), "setting = 2\n").unwrap();
    let bad = agent.attest_once().await.unwrap();
    assert_eq!(bad.status, ArStatus::Contraindicated);
    let (ok, _, err) = run(&h, &script, &bad.result, RP_AUDIENCE).await;
    assert!(!ok && err.contains("contraindicated"), "{err}");

    // A result of another verifier (another key, same kid format): no such key.
    let other = Harness::new(|_| {}).await;
    let mut a2 = other.agent("app").await;
    other.trust(&mut a2).await;
    let foreign = a2.attest_once().await.unwrap();
    let (ok, _, err) = run(&h, &script, &foreign.result, RP_AUDIENCE).await;
    assert!(!ok && err.contains("no EdDSA/ES256 key"), "{err}");
}
