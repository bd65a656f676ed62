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
    // The verifier countersigned the signature, and the gate checked it and the feed.
    assert!(r.stderr.contains("timestamp: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("revocations complete through epoch 0"),
        "{}",
        r.stderr
    );
    // The envelope carries the SVID chain and names the builder's SPIFFE ID.
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("provenance.json")).unwrap()).unwrap();
    assert!(!env["signatures"][0]["x5c"].as_array().unwrap().is_empty());
    assert_eq!(
        env["signatures"][0]["timestamp"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );
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
    // `vouch provenance sign --svid-cert --svid-key`. The real verifier, presented the
    // builder's result, refuses to timestamp it (it never issued that certificate); signed
    // without a timestamp, the gate refuses it, and even on the signer's time
    // (--allow-signer-time) its chain does not reach the trust bundle.
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
if "$VOUCH" provenance sign --artifact "$ARTIFACT" --svid-cert chain.pem --svid-key leaf.key \
  --out "$WORK/stamped.json" \
  --timestamp-url "$SERVER" --ca-cert "$CA" --result "$WORK/result.jwt"; then
  echo "the forged certificate was timestamped" >&2; exit 9
fi
"$VOUCH" provenance sign --artifact "$ARTIFACT" --svid-cert chain.pem --svid-key leaf.key \
  --out "$WORK/provenance.json"
"$VOUCH" provenance verify --envelope "$WORK/provenance.json" --artifact "$ARTIFACT" \
  --trust-bundle "$DEV/server/spiffe/ca.crt" --spiffe-id "spiffe://vouch.local/dev/uid-$(id -u)" \
  --allow-signer-time || true"#;
    let r = pipeline(w.path(), &[("VOUCH_CI_AFTER_SIGN", forge)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("signed provenance for app.tar"),
        "the forged envelope was not made: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("the certificate is not an X.509-SVID this verifier issued"),
        "{}",
        r.stderr
    );
    assert!(!w.path().join("stamped.json").exists());
    assert!(
        r.stderr.contains("does not chain to the trust bundle"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no verifier timestamp"), "{}", r.stderr);
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
    // The JWKS is read through timestamp::read_source (since 26ae9cc), whose error says so.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach the verifier"),
        "{o:?}"
    );

    // The timestamp at signing, and the JWKS and revocation feed at the gate.
    let p = w.path();
    let id = "spiffe://example.org/ci/builder";
    svid_files(p, "b", id, (2020, 1, 1), (2090, 1, 1));
    std::fs::write(p.join("app.bin"), b"the build\n").unwrap();
    std::fs::write(p.join("result.jwt"), "a.b.c").unwrap();
    let (code, err) = vouch_in(
        p,
        &[
            "provenance",
            "sign",
            "--artifact",
            "app.bin",
            "--svid-cert",
            "b.crt",
            "--svid-key",
            "b.key",
            "--out",
            "env.json",
            "--timestamp-url",
            &url,
            "--result",
            "result.jwt",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the verifier"), "{err}");
    assert!(!p.join("env.json").exists());
    let (code, err) = vouch_in(
        p,
        &[
            "provenance",
            "sign",
            "--artifact",
            "app.bin",
            "--svid-cert",
            "b.crt",
            "--svid-key",
            "b.key",
            "--out",
            "env.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = vouch_in(
        p,
        &[
            "provenance",
            "timestamp",
            "--envelope",
            "env.json",
            "--timestamp-url",
            &url,
            "--result",
            "result.jwt",
        ],
    );
    assert_eq!(code, 3, "{err}");
    // A timestamp URL over plain HTTP would hand the builder's result (what timestamps are
    // minted with) to whoever is on the path: refused before any connection (exit 2), at
    // `provenance timestamp` and at `provenance sign --timestamp-url`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    let (code, err) = vouch_in(
        p,
        &[
            "provenance",
            "timestamp",
            "--envelope",
            "env.json",
            "--timestamp-url",
            &plain,
            "--result",
            "result.jwt",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("https://"), "{err}");
    let (code, err) = vouch_in(
        p,
        &[
            "provenance",
            "sign",
            "--artifact",
            "app.bin",
            "--svid-cert",
            "b.crt",
            "--svid-key",
            "b.key",
            "--out",
            "env2.json",
            "--timestamp-url",
            &plain,
            "--result",
            "result.jwt",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(!p.join("env2.json").exists());
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    for (flag, path) in [
        ("--jwks", "/.well-known/jwks.json"),
        ("--revocations", "/v1/revocations"),
    ] {
        let target = format!("{url}{path}");
        let (code, err) = vouch_in(
            p,
            &[
                "provenance",
                "verify",
                "--envelope",
                "env.json",
                "--artifact",
                "app.bin",
                "--trust-bundle",
                "b-ca.crt",
                "--spiffe-id",
                id,
                "--allow-signer-time",
                flag,
                &target,
            ],
        );
        assert_eq!(code, 3, "{flag}: {err}");
        assert!(err.contains("cannot reach the verifier"), "{flag}: {err}");
    }
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
    // No verifier here to timestamp: the chain is checked at the signer's finishedOn.
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
                "--allow-signer-time",
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

/// The builder's node revoked at the verifier after the provenance was signed: the gate reads
/// the verifier's signed revocation feed and refuses (exit 1, the node named), and the verifier
/// gives that node's result no further timestamp.
#[test]
fn a_revoked_builder_node_is_refused_at_the_gate() {
    let w = tempfile::tempdir().unwrap();
    let hook = r#"set -e
node=$(sed -n 's/.*"workload_id":"\([^"/]*\)\/.*/\1/p' "$WORK/attest.json")
"$VOUCH" revoke node "$node" --reason "builder key leaked" --data-dir "$DEV/server"
set +e
"$VOUCH" provenance timestamp --envelope "$WORK/provenance.json" --out "$WORK/again.json" \
    --timestamp-url "$SERVER" --ca-cert "$CA" --result "$WORK/result.jwt" 2>"$WORK/again.err"
echo $? > "$WORK/again.rc""#;
    let r = pipeline(w.path(), &[("VOUCH_CI_AFTER_SIGN", hook)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let attest: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    let node = attest["workload_id"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(
        r.stderr.contains(&format!(
            "provenance refused: revocations: the builder's node {node} is revoked (epoch 1: builder key leaked)"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pipeline stopped at gate (provenance)"),
        "{}",
        r.stderr
    );
    assert!(!deployed(w.path()));
    let again = std::fs::read_to_string(w.path().join("again.err")).unwrap();
    assert_eq!(
        std::fs::read_to_string(w.path().join("again.rc"))
            .unwrap()
            .trim(),
        "1",
        "{again}"
    );
    assert!(
        again.contains("refused a timestamp") && again.contains("revoked"),
        "{again}"
    );
}

/// The builder's result revoked after it signed (its attestation, not its node): the provenance
/// gate has nothing against the node or workload, and `vouch verify --revocations URL` (every
/// page of the verifier's feed) refuses the result.
#[test]
fn a_revoked_builder_result_is_refused_at_the_gate() {
    let w = tempfile::tempdir().unwrap();
    let hook = r#"set -e
id=$(sed -n 's/.*"attestation_id":"\([^"]*\)".*/\1/p' "$WORK/attest.json")
"$VOUCH" revoke result "$id" --reason "builder result withdrawn" --data-dir "$DEV/server""#;
    let r = pipeline(w.path(), &[("VOUCH_CI_AFTER_SIGN", hook)]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("pipeline stopped at gate (builder attestation)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    assert!(!deployed(w.path()));
}

/// A `vouch dev` verifier and agent kept running for the test (killed on drop).
struct Dev {
    child: std::process::Child,
    dir: std::path::PathBuf,
    server: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workload (`<node>/<name>`) an attestation result (file) is about: its `sub`.
fn builder_workload(result: &Path) -> String {
    use base64::Engine as _;
    let result = std::fs::read_to_string(result).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(result.trim().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// Record `der` in the dev verifier's `issued_svids` as issued to `workload`, as `POST
/// /v1/svid` records what it issues: the test holds the CA key and issues SVIDs of chosen
/// lifetimes itself, standing in for the verifier (the agent's SVIDs live an hour).
fn record_issued(dev: &Dev, der: &[u8], workload: &str) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let rec = vouch_store::IssuedSvidRecord {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der)),
        serial: vouch_core::revocation::serial_target(cert.raw_serial()),
        node_id: workload.split('/').next().unwrap().to_owned(),
        workload: workload.to_owned(),
        spiffe_id: "recorded by the test".into(),
        not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap(),
        created_at: 0,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use vouch_store::IssuedSvids as _;
        let store = vouch_store::SqliteStore::open(&dev.dir.join("server/vouch.db"))
            .await
            .unwrap();
        store.record_issued_svids(&[rec]).await.unwrap();
    });
}

fn start_dev(dir: &Path) -> Dev {
    let dev = dir.join("dev");
    let child = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["dev", "--interval", "2", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--dir")
        .arg(&dev)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("dev.log")).unwrap())
        .spawn()
        .unwrap();
    let ctx = dev.join("server/context.toml");
    for _ in 0..300 {
        if dev.join("agent/api.sock").exists() && ctx.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&ctx).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.strip_prefix("server = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    Dev {
        child,
        dir: dev,
        server,
    }
}

/// The verifier's timestamp is what the SVID chain is checked at, and each way of getting it
/// wrong is refused with a real input: a backdated statement signed with an SVID of the real
/// trust domain that has expired (accepted only under --allow-signer-time), no timestamp, a
/// timestamp of another signature, one flipped byte of the timestamp's signature, a timestamp
/// signed by another key under the verifier's kid, one under a kid the verifier does not
/// publish; and the endpoint refuses a result it did not issue, and more than 60 a minute. The
/// revocation feed at the gate: a feed with its record dropped, its head's signature changed,
/// or older than allowed refuses everything; the builder's SVID revoked by serial is refused.
#[test]
fn verifier_timestamps_are_checked_and_backdating_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dev = start_dev(t.path());
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let r = pipeline(&work, &[("VOUCH_DEV_DIR", dev.dir.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("timestamp: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("revocations complete through epoch 0"),
        "{}",
        r.stderr
    );
    let p = work.as_path();
    let ca = dev.dir.join("server/tls/ca.crt");
    let bundle = dev.dir.join("server/spiffe/ca.crt");
    let jwks_url = format!("{}/.well-known/jwks.json", dev.server);
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let builder = format!("spiffe://vouch.local/dev/uid-{}", uid.trim());
    let vouch = |args: &[&str]| -> (i32, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
            .current_dir(p)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let verify = |env: &str, extra: &[&str]| -> (i32, String) {
        let mut args = vec![
            "provenance",
            "verify",
            "--envelope",
            env,
            "--artifact",
            "out/app.tar",
            "--trust-bundle",
            bundle.to_str().unwrap(),
            "--spiffe-id",
            &builder,
            "--ca-cert",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        vouch(&args)
    };
    let with_jwks = ["--jwks", jwks_url.as_str()];
    let (code, err) = verify("provenance.json", &with_jwks);
    assert_eq!(code, 0, "{err}");
    // Neither --jwks nor --allow-signer-time: a usage error.
    let (code, err) = verify("provenance.json", &[]);
    assert_eq!(code, 2, "{err}");

    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("provenance.json")).unwrap()).unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        std::fs::write(p.join(name), serde_json::to_vec(v).unwrap()).unwrap();
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // No timestamp: refused with --jwks; accepted only with --allow-signer-time.
    let mut v = good.clone();
    v["signatures"][0]
        .as_object_mut()
        .unwrap()
        .remove("timestamp");
    write("no-ts.json", &v);
    let (code, err) = verify("no-ts.json", &with_jwks);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no verifier timestamp"), "{err}");
    let (code, err) = verify("no-ts.json", &["--allow-signer-time"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no verifier timestamp checked"), "{err}");

    // The timestamp of another signature (the same artifact signed again) moved onto this one.
    let (code, err) = vouch(&[
        "provenance",
        "sign",
        "--artifact",
        "out/app.tar",
        "--svid-socket",
        dev.dir.join("agent/api.sock").to_str().unwrap(),
        "--timestamp-url",
        &dev.server,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--result",
        "result.jwt",
        "--out",
        "second.json",
    ]);
    assert_eq!(code, 0, "{err}");
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("second.json")).unwrap()).unwrap();
    assert_ne!(second["signatures"][0]["sig"], good["signatures"][0]["sig"]);
    let mut v = good.clone();
    v["signatures"][0]["timestamp"] = second["signatures"][0]["timestamp"].clone();
    write("other-sig.json", &v);
    let (code, err) = verify("other-sig.json", &with_jwks);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not this signature"), "{err}");

    // One flipped byte of the timestamp's signature.
    let ts = good["signatures"][0]["timestamp"].as_str().unwrap();
    let (signing_input, sig) = ts.rsplit_once('.').unwrap();
    let mut raw = b64u.decode(sig).unwrap();
    raw[10] ^= 1;
    let mut v = good.clone();
    v["signatures"][0]["timestamp"] = format!("{signing_input}.{}", b64u.encode(&raw)).into();
    write("flipped.json", &v);
    let (code, err) = verify("flipped.json", &with_jwks);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not verify under key"), "{err}");

    // Another key's timestamp: the same header and claims signed with a fresh Ed25519 key,
    // once under the verifier's kid, once under its own kid.
    let header: serde_json::Value = serde_json::from_slice(
        &b64u
            .decode(signing_input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let claims = signing_input.split('.').nth(1).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let other = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    for (name, kid, want) in [
        (
            "forged-kid.json",
            header["kid"].as_str().unwrap(),
            "does not verify under key",
        ),
        (
            "other-kid.json",
            "0123456789abcdef",
            "is not in the verifier's JWKS",
        ),
    ] {
        let mut h = header.clone();
        h["kid"] = kid.into();
        let input = format!("{}.{claims}", b64u.encode(h.to_string()));
        let s = other.sign(input.as_bytes());
        let mut v = good.clone();
        v["signatures"][0]["timestamp"] = format!("{input}.{}", b64u.encode(s.as_ref())).into();
        write(name, &v);
        let (code, err) = verify(name, &with_jwks);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }

    // A JWKS URL over plain HTTP: someone on the path serves a JWKS holding their own key
    // under the verifier's kid (here a loopback server answering every request with it), and
    // the forged timestamp above would verify. Refused before anything is fetched (exit 2).
    let forged_jwk = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "kid": header["kid"],
        "x": b64u.encode(aws_lc_rs::signature::KeyPair::public_key(&other).as_ref()),
    }]})
    .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let body = &forged_jwk;
            let _ = std::io::Write::write_all(
                &mut c,
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let (code, err) = verify("forged-kid.json", &["--jwks", plain.as_str()]);
    assert_eq!(code, 2, "a JWKS over plain HTTP was used: {err}");
    assert!(err.contains("https:// only"), "{err}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A leaked key of an SVID the real trust domain issued, expired by now: a statement
    // backdated into its validity verifies under the signer's time, and is refused once the
    // verifier's timestamp is what the chain is checked at.
    let td = vouch_identity::TrustDomain::parse("vouch.local").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let svid_ca =
        vouch_identity::SvidCa::load_or_create(&dev.dir.join("server/spiffe"), &td, 86_400, now)
            .unwrap();
    let (ca_from, _) = svid_ca.validity();
    let key = rcgen::KeyPair::generate().unwrap();
    use rcgen::PublicKeyData as _;
    let id = vouch_identity::SpiffeId::parse(&builder).unwrap();
    // Valid from the CA's start for 2 s (notBefore is 30 s before the issue time given).
    let leaf = svid_ca
        .issue(&id, &key.subject_public_key_info(), 2, ca_from)
        .unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < ca_from + 4
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::fs::write(p.join("leaked.crt"), vouch_identity::cert_to_pem(&leaf)).unwrap();
    std::fs::write(p.join("leaked.key"), key.serialize_pem()).unwrap();
    let (code, err) = vouch(&[
        "provenance",
        "sign",
        "--artifact",
        "out/app.tar",
        "--svid-cert",
        "leaked.crt",
        "--svid-key",
        "leaked.key",
        "--out",
        "leaked.json",
    ]);
    assert_eq!(code, 0, "{err}");
    // The statement backdated to the SVID's lifetime and signed again with the leaked key.
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("leaked.json")).unwrap()).unwrap();
    let payload = b64.decode(v["payload"].as_str().unwrap()).unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let old = ca_from + 1;
    let secs = old % 86_400;
    let days = (old / 86_400) as i64;
    // civil_from_days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    st["predicate"]["runDetails"]["metadata"]["finishedOn"] = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
    .into();
    let payload = serde_json::to_vec(&st).unwrap();
    let t = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {t} {} ", t.len(), payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    let sig = rcgen::SigningKey::sign(&key, &pae).unwrap();
    v["payload"] = b64.encode(&payload).into();
    v["signatures"][0]["sig"] = b64.encode(sig).into();
    write("backdated.json", &v);
    let (code, err) = verify("backdated.json", &["--allow-signer-time"]);
    assert_eq!(
        code, 0,
        "the backdated statement should pass on the signer's word: {err}"
    );
    // The verifier stamps only an SVID it issued to the presenter's workload, unexpired: the
    // leaked one (our CA's, but never issued through the verifier) gets no timestamp; recorded
    // as issued to the builder, it still gets none, being expired; unstamped, the gate refuses.
    let stamp_backdated = || {
        vouch(&[
            "provenance",
            "timestamp",
            "--envelope",
            "backdated.json",
            "--timestamp-url",
            &dev.server,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--result",
            "result.jwt",
        ])
    };
    let (code, err) = stamp_backdated();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not an X.509-SVID this verifier issued"),
        "{err}"
    );
    let workload = builder_workload(&p.join("result.jwt"));
    record_issued(&dev, &leaf, &workload);
    let (code, err) = stamp_backdated();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the certificate expired at"), "{err}");
    let (code, err) = verify("backdated.json", &with_jwks);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no verifier timestamp"), "{err}");

    // A timestamp lent by a genuine signature to a later one of the same key: a builder SVID
    // (valid 8 s) signs and has its signature timestamped while valid; once it has expired,
    // its leaked key signs another artifact's statement, backdated, and that signature is
    // listed after the genuine one, which keeps its x5c and its timestamp. Refused: the
    // first signature, the one the chain and the timestamp are for, must be over the payload.
    let short_key = rcgen::KeyPair::generate().unwrap();
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let short = svid_ca
        .issue(&id, &short_key.subject_public_key_info(), 8, issued)
        .unwrap();
    std::fs::write(p.join("short.crt"), vouch_identity::cert_to_pem(&short)).unwrap();
    record_issued(&dev, &short, &workload);
    std::fs::write(p.join("short.key"), short_key.serialize_pem()).unwrap();
    let (code, err) = vouch(&[
        "provenance",
        "sign",
        "--artifact",
        "out/app.tar",
        "--svid-cert",
        "short.crt",
        "--svid-key",
        "short.key",
        "--timestamp-url",
        &dev.server,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--result",
        "result.jwt",
        "--out",
        "short.json",
    ]);
    assert_eq!(code, 0, "{err}");
    let genuine: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("short.json")).unwrap()).unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < issued + 10
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::fs::write(p.join("out/evil.tar"), b"not what the builder built").unwrap();
    let evil = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        b"not what the builder built",
    ));
    let payload = b64.decode(genuine["payload"].as_str().unwrap()).unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    st["subject"] = serde_json::json!([{"name": "evil.tar", "digest": {"sha256": evil}}]);
    let payload = serde_json::to_vec(&st).unwrap();
    let mut pae = format!("DSSEv1 {} {t} {} ", t.len(), payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    let late = rcgen::SigningKey::sign(&short_key, &pae).unwrap();
    let mut v = genuine.clone();
    v["payload"] = b64.encode(&payload).into();
    let mut second = genuine["signatures"][0].clone();
    second.as_object_mut().unwrap().remove("timestamp");
    second["sig"] = b64.encode(late).into();
    v["signatures"].as_array_mut().unwrap().push(second.clone());
    write("lent-time.json", &v);
    let verify_evil = |env: &str| {
        vouch(&[
            "provenance",
            "verify",
            "--envelope",
            env,
            "--artifact",
            "out/evil.tar",
            "--trust-bundle",
            bundle.to_str().unwrap(),
            "--spiffe-id",
            &builder,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--jwks",
            &jwks_url,
        ])
    };
    let (code, err) = verify_evil("lent-time.json");
    assert_eq!(code, 1, "a signature borrowed another's timestamp: {err}");
    assert!(err.contains("first signature"), "{err}");
    // The late signature alone, stamped now: the SVID has expired at the verifier's time.
    let mut v1 = v.clone();
    v1["signatures"] = serde_json::json!([second]);
    write("late.json", &v1);
    let (code, err) = vouch(&[
        "provenance",
        "timestamp",
        "--envelope",
        "late.json",
        "--timestamp-url",
        &dev.server,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--result",
        "result.jwt",
    ]);
    assert_eq!(code, 1, "an expired SVID was stamped: {err}");
    assert!(err.contains("the certificate expired at"), "{err}");
    let (code, err) = verify_evil("late.json");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no verifier timestamp"), "{err}");
    // The genuine envelope still verifies: it was stamped while its SVID was valid.
    let (code, err) = verify("short.json", &with_jwks);
    assert_eq!(code, 0, "{err}");

    // The endpoint: a result it did not issue (one byte of the real one's signature flipped).
    let result = std::fs::read_to_string(p.join("result.jwt")).unwrap();
    let (head, s) = result.trim().rsplit_once('.').unwrap();
    let mut raw = b64u.decode(s).unwrap();
    raw[0] ^= 1;
    std::fs::write(p.join("forged.jwt"), format!("{head}.{}", b64u.encode(raw))).unwrap();
    let stamp = |result: &str| {
        vouch(&[
            "provenance",
            "timestamp",
            "--envelope",
            "second.json",
            "--out",
            "restamped.json",
            "--timestamp-url",
            &dev.server,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--result",
            result,
        ])
    };
    let (code, err) = stamp("forged.jwt");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not one this verifier issued"), "{err}");
    // Malformed requests to the endpoint: a digest that is not sha256 and 64 lower-case hex
    // digits (400), a body over 32 KiB (413).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = vouch_agent::VerifierClient::new(&dev.server, Some(&ca)).unwrap();
    let builder_leaf = b64
        .decode(good["signatures"][0]["x5c"][0].as_str().unwrap())
        .unwrap();
    let hex64 = "ab".repeat(32);
    for (digest, result) in [
        (
            format!("sha256:{}", hex64.to_uppercase()),
            result.trim().to_string(),
        ),
        (format!("sha512:{hex64}"), result.trim().to_string()),
        (format!("sha256:{}", &hex64[1..]), result.trim().to_string()),
        (format!("sha256:{hex64}"), "x".repeat(40 * 1024)),
    ] {
        let e = rt
            .block_on(client.timestamp(&digest, &result, &builder_leaf))
            .unwrap_err();
        let vouch_agent::AgentError::Refused { status, kind, .. } = &e else {
            panic!("{e}");
        };
        let want = if result.len() > 32 * 1024 { 413 } else { 400 };
        assert_eq!(*status, want, "{digest}: {e}");
        assert_ne!(*kind, vouch_core::ErrorKind::Internal, "{e}");
    }

    // Issue 15 part 7: the timestamp is bound to the SVID issued to the presenter's workload.
    // Another workload on the builder's node, attested affirming (its executable registered),
    // presents its own result for the builder's signature and SVID: refused, so a leaked
    // builder key cannot borrow another workload's result and escape a revocation of the
    // builder's workload.
    let vouch_exe = env!("CARGO_BIN_EXE_vouch");
    let exe_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(vouch_exe).unwrap(),
    ));
    let server_dir = dev.dir.join("server");
    let (code, err) = vouch(&[
        "refvalue",
        "add",
        "executable",
        "other-workload",
        &exe_sha,
        "--data-dir",
        server_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let o = Command::new(vouch_exe)
        .current_dir(p)
        .args(["attest", "--ci", "--server", &dev.server, "--ca-cert"])
        .arg(&ca)
        .arg("--agent-dir")
        .arg(dev.dir.join("agent"))
        .args(["--workload", "other-workload", "--exe", vouch_exe, "--file"])
        .arg(dev.dir.join("workload.conf"))
        .args(["--result-audience", "vouch-dev-rp"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let attested: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    std::fs::copy(
        attested["result_path"].as_str().unwrap(),
        p.join("other.jwt"),
    )
    .unwrap();
    let other_workload = builder_workload(&p.join("other.jwt"));
    assert!(
        other_workload.ends_with("/other-workload"),
        "{other_workload}"
    );
    let (code, err) = stamp("other.jwt");
    assert_eq!(code, 1, "another workload's result got a timestamp: {err}");
    assert!(
        err.contains(&format!(
            "issued to workload {workload}, not to {other_workload}"
        )),
        "{err}"
    );
    // A timestamp the verifier gave for another certificate (here: another SVID issued to the
    // builder) over exactly this signature's digest: the gate refuses it, as x5t#S256 names
    // that certificate and not the envelope's x5c leaf.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other_cert = svid_ca
        .issue(
            &id,
            &other_key.subject_public_key_info(),
            3600,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
    record_issued(&dev, &other_cert, &workload);
    let good_sig = b64
        .decode(good["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let good_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&good_sig))
    );
    let answer = rt
        .block_on(client.timestamp(&good_digest, result.trim(), &other_cert))
        .unwrap();
    let mut v = good.clone();
    v["signatures"][0]["timestamp"] = answer["timestamp"].clone();
    write("other-cert.json", &v);
    let (code, err) = verify("other-cert.json", &with_jwks);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the timestamp is for certificate x5t#S256"),
        "{err}"
    );
    // The envelope it was taken from still verifies.
    let (code, err) = verify("provenance.json", &with_jwks);
    assert_eq!(code, 0, "{err}");

    // At most 60 a minute for one workload (a minute boundary may reset the count once).
    let mut refused = None;
    for i in 0..125 {
        let (code, err) = stamp("result.jwt");
        if code != 0 {
            refused = Some((i, code, err));
            break;
        }
    }
    let (i, code, err) = refused.expect("125 timestamps in a row were given");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("60 timestamps this minute"),
        "after {i}: {err}"
    );
    // The route is in the OpenAPI document the verifier serves.
    let doc: serde_json::Value = serde_json::from_str(vouch_server::OPENAPI).unwrap();
    assert!(doc["paths"]["/v1/timestamp"]["post"].is_object());

    // The revocation feed at the gate, saved to a file: an unrelated revocation does not
    // refuse; the feed with its record dropped, or its head's signature changed, or too old,
    // refuses everything (fail closed).
    let revoke = |kind: &str, target: &str| {
        let (code, err) = vouch(&[
            "revoke",
            kind,
            target,
            "--reason",
            "test",
            "--data-dir",
            dev.dir.join("server").to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
    };
    revoke("svid", "1234abcd");
    let feed = rt
        .block_on(
            vouch_agent::VerifierClient::new(&dev.server, Some(&ca))
                .unwrap()
                .revocations(),
        )
        .unwrap();
    let mut feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
    assert_eq!(feed["records"].as_array().unwrap().len(), 1);
    // The feed's classical forms only: its ML-DSA forms (records_pq, head_pq), when present,
    // are what is read instead, so a tampered copy that kept them would test nothing.
    let obj = feed.as_object_mut().unwrap();
    obj.remove("records_pq");
    obj.remove("head_pq");
    std::fs::write(p.join("feed.json"), feed.to_string()).unwrap();
    let (code, err) = verify(
        "provenance.json",
        &[&with_jwks[..], &["--revocations", "feed.json"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("revocations complete through epoch 1"),
        "{err}"
    );
    let mut dropped = feed.clone();
    dropped["records"] = serde_json::json!([]);
    std::fs::write(p.join("dropped.json"), dropped.to_string()).unwrap();
    let (code, err) = verify(
        "provenance.json",
        &[&with_jwks[..], &["--revocations", "dropped.json"]].concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("incomplete"), "{err}");
    let head = feed["head"].as_str().unwrap();
    let (input, sig) = head.rsplit_once('.').unwrap();
    let mut raw = b64u.decode(sig).unwrap();
    raw[5] ^= 1;
    let mut bad_head = feed.clone();
    bad_head["head"] = format!("{input}.{}", b64u.encode(raw)).into();
    std::fs::write(p.join("bad-head.json"), bad_head.to_string()).unwrap();
    let (code, err) = verify(
        "provenance.json",
        &[&with_jwks[..], &["--revocations", "bad-head.json"]].concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("incomplete"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, err) = verify(
        "provenance.json",
        &[
            &with_jwks[..],
            &["--revocations", "feed.json", "--max-revocation-age", "1s"],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stale") || err.contains("old"), "{err}");

    // The builder's SVID revoked by serial: refused, from the verifier's feed URL.
    let leaf = b64
        .decode(good["signatures"][0]["x5c"][0].as_str().unwrap())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let serial = hex::encode(cert.raw_serial());
    let serial = serial.trim_start_matches('0').to_string();
    revoke("svid", &serial);
    let feed_url = format!("{}/v1/revocations", dev.server);
    let (code, err) = verify(
        "provenance.json",
        &[&with_jwks[..], &["--revocations", feed_url.as_str()]].concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("revocations: the SVID") && err.contains(&serial),
        "{err}"
    );
}

/// examples/ci/github-actions.yml (not run here: no runner) is checked two ways: against
/// SchemaStore's JSON schema of workflow files (testdata/ci, validated by the Python
/// `jsonschema` package; a copy with `runs-on` misspelt fails), and every `vouch` command in
/// its `run` scripts uses only flags that subcommand's `--help` lists.
#[test]
fn the_github_actions_workflow_validates_against_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("crates/vouch/tests/data/validate_workflow.py");
    let schema = root.join("testdata/ci/github-workflow.json");
    let workflow = root.join("examples/ci/github-actions.yml");
    let check = |file: &Path| {
        let o = Command::new("python3")
            .arg(&script)
            .arg(&schema)
            .arg(file)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = check(&workflow);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&workflow).unwrap();
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.yml");
    std::fs::write(&bad, text.replace("runs-on:", "runs_on:")).unwrap();
    let (code, out) = check(&bad);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("jobs/build"), "{out}");

    // Every vouch command's flags are real.
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut commands = 0;
    for job in doc["jobs"].as_object().unwrap().values() {
        for step in job["steps"].as_array().unwrap() {
            let Some(run) = step["run"].as_str() else {
                continue;
            };
            let joined = run.replace("\\\n", " ");
            for line in joined.lines() {
                let line = line.trim_start();
                let line = line.strip_prefix("nohup ").unwrap_or(line);
                let Some(rest) = line.strip_prefix("vouch ") else {
                    continue;
                };
                let words: Vec<&str> = rest.split_whitespace().collect();
                let sub: Vec<&str> = words
                    .iter()
                    .take_while(|w| !w.starts_with('-'))
                    .copied()
                    .collect();
                let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(o.status.success(), "vouch {sub:?} --help");
                let help = String::from_utf8_lossy(&o.stdout);
                for flag in words.iter().filter(|w| w.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap();
                    assert!(
                        help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                        "vouch {} has no {flag}",
                        sub.join(" ")
                    );
                }
                commands += 1;
            }
        }
    }
    assert!(commands >= 5, "{commands} vouch commands found");
}
