//! examples/ci/pipeline.sh run for real (issue 15 part 7): each case starts its own verifier
//! and agent (`vouch dev`) on a free loopback port, attests the builder with `vouch attest
//! --ci`, builds, signs provenance with the SVID from the agent's Workload API and gates the
//! deploy on `vouch provenance verify --trust-bundle --spiffe-id` and `vouch verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
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
    // A measured file of the builder changed after its reference values were recorded. Once
    // the running agent's next attestation (every 2 s) is contraindicated, its Workload API
    // gives no SVID: `vouch provenance sign --svid-socket` fails (checked here, since the
    // pipeline itself stops before signing).
    let hook = r#"echo "listen = 0.0.0.0:5432" >> "$DEV/workload.conf"
echo x > "$WORK/probe"
for _ in $(seq 1 100); do
    if ! "$VOUCH" provenance sign --artifact "$WORK/probe" --svid-socket "$DEV/agent/api.sock" \
        --out "$WORK/probe.json" 2>"$WORK/no-svid.err"; then
        touch "$WORK/no-svid"; break
    fi
    sleep 0.1
done"#;
    let r = pipeline(w.path(), &[("VOUCH_CI_BEFORE_ATTEST", hook)]);
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
    let why = std::fs::read_to_string(w.path().join("no-svid.err")).unwrap();
    assert!(
        w.path().join("no-svid").exists(),
        "the Workload API still gave an SVID 10 s after the builder turned contraindicated: {why}"
    );
    assert!(
        why.contains("no identity") && why.contains("contraindicated"),
        "{why}"
    );
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

/// A CA and an SVID-like leaf (URI SAN, clientAuth) made with rcgen, valid from `from` to
/// `to`; writes `<name>.crt` (leaf), `<name>.key`, and `ca.crt`.
fn svid_files(dir: &Path, name: &str, id: &str, from: (i32, u8, u8), to: (i32, u8, u8)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test trust domain CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    leaf.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    leaf.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let cert = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-ca.crt")), ca.pem()).unwrap();
}

fn vouch_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `vouch provenance verify --trust-bundle --spiffe-id`: each check refuses a real input that
/// fails it (exit 1 with the reason).
#[test]
fn svid_signed_provenance_is_refused_for_each_failed_check() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let id = "spiffe://example.org/ci/builder";
    svid_files(p, "good", id, (2020, 1, 1), (2090, 1, 1));
    svid_files(p, "expired", id, (2020, 1, 1), (2020, 1, 2));
    std::fs::write(p.join("app.bin"), b"the build\n").unwrap();
    let sign = |name: &str, out: &str| {
        let (code, err) = vouch_in(
            p,
            &[
                "provenance",
                "sign",
                "--artifact",
                "app.bin",
                "--svid-cert",
                &format!("{name}.crt"),
                "--svid-key",
                &format!("{name}.key"),
                "--out",
                out,
            ],
        );
        assert_eq!(code, 0, "{err}");
    };
    let verify = |env: &str, bundle: &str, want: &str| -> (i32, String) {
        vouch_in(
            p,
            &[
                "provenance",
                "verify",
                "--envelope",
                env,
                "--artifact",
                "app.bin",
                "--trust-bundle",
                bundle,
                "--spiffe-id",
                want,
            ],
        )
    };
    sign("good", "good.json");
    let (code, err) = verify("good.json", "good-ca.crt", id);
    assert_eq!(code, 0, "{err}");

    // Local errors, not refusals: a bundle that cannot be read, an ID that is not one.
    let (code, err) = verify("good.json", "missing-ca.crt", id);
    assert_eq!(code, 2, "{err}");
    let (code, err) = verify("good.json", "good-ca.crt", "https://example.org/ci/builder");
    assert_eq!(code, 2, "{err}");

    // Another SPIFFE ID in the same trust domain, and the same path in another trust domain.
    let (code, err) = verify("good.json", "good-ca.crt", "spiffe://example.org/ci/other");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an accepted peer"), "{err}");
    let (code, err) = verify("good.json", "good-ca.crt", "spiffe://other.org/ci/builder");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not in trust domain"), "{err}");
    // The right ID under another CA's bundle.
    let (code, err) = verify("good.json", "expired-ca.crt", id);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not chain"), "{err}");

    // Signed with an SVID that had expired at signing time.
    sign("expired", "expired.json");
    let (code, err) = verify("expired.json", "expired-ca.crt", id);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("SVID at signing time") && err.contains("Expired"),
        "{err}"
    );

    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("good.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let write_variant = |name: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        std::fs::write(p.join(name), serde_json::to_vec(&v).unwrap()).unwrap();
    };
    // No chain.
    write_variant("no-x5c.json", &|v| {
        v["signatures"][0].as_object_mut().unwrap().remove("x5c");
    });
    let (code, err) = verify("no-x5c.json", "good-ca.crt", id);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no x5c"), "{err}");
    // One byte of the leaf certificate's signature flipped.
    write_variant("bad-leaf.json", &|v| {
        let mut der = b64
            .decode(v["signatures"][0]["x5c"][0].as_str().unwrap())
            .unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        v["signatures"][0]["x5c"][0] = b64.encode(der).into();
    });
    let (code, err) = verify("bad-leaf.json", "good-ca.crt", id);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("SVID at signing time"), "{err}");
    // The signing time changed (still inside the SVID's validity): the signature no longer
    // verifies, since finishedOn is inside the signed statement.
    write_variant("backdated.json", &|v| {
        let payload = b64.decode(v["payload"].as_str().unwrap()).unwrap();
        let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        st["predicate"]["runDetails"]["metadata"]["finishedOn"] = "2021-06-01T00:00:00Z".into();
        v["payload"] = b64.encode(serde_json::to_vec(&st).unwrap()).into();
    });
    let (code, err) = verify("backdated.json", "good-ca.crt", id);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signature"), "{err}");
}
