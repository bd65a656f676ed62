//! examples/ci/pipeline.sh run for real (issue 15 part 7): each case starts its own verifier
//! and agent (`vouch dev`) on a free loopback port, attests the builder with `vouch attest
//! --ci`, builds, signs provenance with the SVID from the agent's Workload API and gates the
//! deploy on `vouch provenance verify --trust-bundle --spiffe-id` and `vouch verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run the pipeline in `work` with extra environment `env`.
fn pipeline(work: &Path, env: &[(&str, &str)]) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ci/pipeline.sh");
    let mut c = Command::new("bash");
    c.arg(script)
        .env("VOUCH", env!("CARGO_BIN_EXE_vouch"))
        .env("VOUCH_CI_WORK", work)
        .env("VOUCH_CI_PORT", free_port().to_string())
        .env_remove("VOUCH_DEV_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn deployed(work: &Path) -> bool {
    work.join("deployed/app.tar").exists()
}

#[test]
fn an_attested_builder_s_signed_build_deploys() {
    let w = tempfile::tempdir().unwrap();
    let r = pipeline(w.path(), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let attest: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(attest["status"], "affirming");
    assert_eq!(attest["exit_code"], 0);
    assert!(attest["attestation_id"].as_str().unwrap().len() > 8);
    assert!(r.stdout.contains("deployed app.tar"), "{}", r.stdout);
    assert!(deployed(w.path()));
    // The envelope carries the SVID chain and names the builder's SPIFFE ID.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("provenance.json")).unwrap()).unwrap();
    assert!(!env["signatures"][0]["x5c"].as_array().unwrap().is_empty());
    assert!(
        env["signatures"][0]["keyid"]
            .as_str()
            .unwrap()
            .starts_with("spiffe://vouch.local/dev/uid-")
    );
}

#[test]
fn an_artifact_swapped_after_signing_is_refused_at_the_gate() {
    let w = tempfile::tempdir().unwrap();
    // One byte appended to the artifact after its provenance was signed.
    let r = pipeline(
        w.path(),
        &[("VOUCH_CI_AFTER_SIGN", r#"printf x >> "$ARTIFACT""#)],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("no subject of the 1 has sha256"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pipeline stopped at gate (provenance)"),
        "{}",
        r.stderr
    );
    assert!(!deployed(w.path()));
}

#[test]
fn a_contraindicated_builder_stops_the_pipeline_before_signing() {
    let w = tempfile::tempdir().unwrap();
    // A measured file of the builder changed after its reference values were recorded.
    let r = pipeline(
        w.path(),
        &[(
            "VOUCH_CI_BEFORE_ATTEST",
            r#"echo "listen = 0.0.0.0:5432" >> "$DEV/workload.conf""#,
        )],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let attest: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(attest["status"], "contraindicated", "{attest}");
    assert_eq!(attest["exit_code"], 1);
    assert!(
        !attest["reasons"].as_array().unwrap().is_empty(),
        "{attest}"
    );
    assert!(
        r.stderr.contains("pipeline stopped at attest (exit 1)"),
        "{}",
        r.stderr
    );
    assert!(!w.path().join("provenance.json").exists());
    assert!(!deployed(w.path()));
}

#[test]
fn provenance_signed_outside_the_trust_domain_is_refused() {
    let w = tempfile::tempdir().unwrap();
    // After the real signing, the provenance is replaced by one signed with a certificate
    // naming the same SPIFFE ID but issued by another CA (openssl), through the same
    // `vouch provenance sign --svid-cert --svid-key`.
    let forge = r#"set -e
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key \
  -out other-ca.crt -subj /CN=other-ca -days 1 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
  -subj /CN=builder 2>/dev/null
printf 'subjectAltName=URI:spiffe://vouch.local/dev/uid-%s\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' "$(id -u)" > leaf.ext
openssl x509 -req -in leaf.csr -CA other-ca.crt -CAkey other-ca.key -set_serial 7 -days 1 \
  -extfile leaf.ext -out leaf.crt 2>/dev/null
cat leaf.crt other-ca.crt > chain.pem
"$VOUCH" provenance sign --artifact "$ARTIFACT" --svid-cert chain.pem --svid-key leaf.key \
  --out "$WORK/provenance.json""#;
    let r = pipeline(w.path(), &[("VOUCH_CI_AFTER_SIGN", forge)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("signed provenance for app.tar"),
        "the forged envelope was not made: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("does not chain to the trust bundle"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pipeline stopped at gate (provenance)"),
        "{}",
        r.stderr
    );
    assert!(!deployed(w.path()));
}

#[test]
fn no_verifier_to_reach_exits_3() {
    let w = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", free_port());
    let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["attest", "--ci", "--server", &url, "--join-token", "t"])
        .arg("--agent-dir")
        .arg(w.path().join("agent"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "unreachable", "{r}");
    assert_eq!(r["exit_code"], 3);
    let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["verify", "--audience", "a", "--jwks"])
        .arg(format!("{url}/.well-known/jwks.json"))
        .arg("a.b.c")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot fetch the JWKS"));
}
