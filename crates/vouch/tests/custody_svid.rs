//! Chain of custody signed by attested builders (issue 15 part 6): a source -> build -> test
//! -> package -> deploy chain recorded by the PyPI in-toto tools (`in-toto-run` per step,
//! tests/data/custody_svid_chain.py), each link re-signed by `vouch custody sign` with the
//! X.509-SVID a real verifier and agent (`vouch dev`) issued to this machine's attested
//! workload, and checked by `vouch custody verify --trust-bundle` against a layout whose steps
//! name that SPIFFE ID as functionary (`cert_constraints`).
//!
//! The good chain verifies (with the trust bundle as PEM and as the verifier's /v1/bundle
//! JSON, and with its signed revocations); each refusal is a real input: links signed by a
//! plain key, by an SVID of another trust domain, by the right SPIFFE ID's SVID from another
//! verifier (a second `vouch dev`), by a self-made certificate naming the right SPIFFE ID, by
//! an SVID of the trust domain's own CA that had expired, by the right SVID for a step naming
//! another SPIFFE ID, by an SVID revoked at the verifier; one flipped signature byte; a missing, reordered, altered and misnamed step. The same five links signed by the
//! recorder key verify against the keyed layout in both `vouch custody verify` and in-toto's
//! `in-toto-verify`, which agree on the missing, reordered and altered step.
//!
//! Needs target/pyenv with `in-toto` (scripts/deps.sh --test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn pyenv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `vouch dev` verifier and agent, stopped when dropped.
struct Dev {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        let port = free_port();
        let log = std::fs::File::create(dir.join("dev.log")).unwrap();
        let child = Command::new(VOUCH)
            .args(["dev", "--dir"])
            .arg(dir.join("dev"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--interval", "2"])
            .env_remove("VOUCH_CONFIG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let dev = Dev {
            child,
            dir: dir.join("dev"),
            url: format!("https://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while !(dev.sock().exists() && dev.dir.join("server/context.toml").exists()) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "vouch dev did not start: {}",
                std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        dev
    }
    fn sock(&self) -> PathBuf {
        self.dir.join("agent/api.sock")
    }
    fn ca(&self) -> PathBuf {
        self.dir.join("server/spiffe/ca.crt")
    }
    /// GET `path` from the verifier (TLS pinned to its CA) into `out`.
    fn get(&self, path: &str, out: &Path) {
        let o = Command::new(pyenv().join("python3"))
            .args([
                "-c",
                "import ssl,sys,urllib.request;c=ssl.create_default_context(cafile=sys.argv[1]);\
                 open(sys.argv[3],'wb').write(urllib.request.urlopen(sys.argv[2],context=c).read())",
            ])
            .arg(self.dir.join("server/tls/ca.crt"))
            .arg(format!("{}{path}", self.url))
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn vouch(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let o = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

/// The workload (`<node>/<name>`) of the dev agent's attestation result (`sub`).
fn builder_workload(dev: &Dev) -> String {
    let t = Instant::now();
    let path = dev.dir.join("agent/result.jwt");
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "no result.jwt");
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = std::fs::read_to_string(path).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(result.trim().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// Record the certificate `crt` (PEM) in the dev verifier's `issued_svids` as issued to the
/// agent's workload, as `POST /v1/svid` records what it issues: the test holds the CA key and
/// stands in for a verifier that issued (or misissued) it, so that the gate's own checks of a
/// stamped link are what is tested. A certificate not recorded gets no timestamp.
fn record_issued(dev: &Dev, crt: &Path) {
    let pem = std::fs::read(crt).unwrap();
    let der = x509_parser::pem::Pem::iter_from_buffer(&pem)
        .next()
        .unwrap()
        .unwrap()
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let workload = builder_workload(dev);
    let rec = vouch_store::IssuedSvidRecord {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der)),
        serial: vouch_core::revocation::serial_target(cert.raw_serial()),
        node_id: workload.split('/').next().unwrap().to_owned(),
        workload,
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

/// `vouch custody sign --timestamp-url` with `files` (cert, key) that the verifier refuses
/// to timestamp: exit 1, the reason containing `want`, nothing written.
fn sign_unstamped_refused(dev: &Dev, link: &Path, out: &Path, files: (&Path, &Path), want: &str) {
    let (ca, result) = (
        dev.dir.join("server/tls/ca.crt"),
        dev.dir.join("agent/result.jwt"),
    );
    let (code, _, err) = vouch(os![
        "custody",
        "sign",
        "--link",
        link,
        "--out-dir",
        out,
        "--svid-cert",
        files.0,
        "--svid-key",
        files.1,
        "--timestamp-url",
        &dev.url,
        "--result",
        &result,
        "--ca-cert",
        &ca
    ]);
    assert_ne!(code, 0, "stamped: {err}");
    assert!(err.contains(want), "{err}");
    assert!(!out.exists() || std::fs::read_dir(out).unwrap().next().is_none());
}

/// `vouch custody sign` of `link` into `out` with the agent's SVID (or `files`: cert and
/// key, recorded as issued first by [`record_issued`]), timestamped by the verifier when
/// `stamp`.
fn sign(dev: &Dev, link: &Path, out: &Path, files: Option<(&Path, &Path)>, stamp: bool) -> PathBuf {
    let t = Instant::now();
    if let (Some((crt, _)), true) = (files, stamp) {
        record_issued(dev, crt);
    }
    let sock = dev.sock();
    let (ca, result) = (
        dev.dir.join("server/tls/ca.crt"),
        dev.dir.join("agent/result.jwt"),
    );
    loop {
        let mut args: Vec<&std::ffi::OsStr> =
            os!["custody", "sign", "--link", link, "--out-dir", out].to_vec();
        match files {
            None => args.extend_from_slice(os!["--svid-socket", &sock]),
            Some((c, k)) => args.extend_from_slice(os!["--svid-cert", c, "--svid-key", k]),
        }
        if stamp {
            args.extend_from_slice(os![
                "--timestamp-url",
                &dev.url,
                "--result",
                &result,
                "--ca-cert",
                &ca
            ]);
        }
        let (code, stdout, err) = vouch(&args);
        if code == 0 {
            return PathBuf::from(stdout.trim());
        }
        // The agent's first SVID comes with its first affirming attestation.
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "custody sign failed: {err}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `vouch custody verify`: (exit code, stdout, stderr).
fn verify(layout: &Path, owner: &Path, links: &Path, extra: &[&std::ffi::OsStr]) -> (i32, String) {
    let mut args: Vec<&std::ffi::OsStr> = os![
        "custody",
        "verify",
        "--layout",
        layout,
        "--layout-key",
        owner,
        "--links",
        links
    ]
    .to_vec();
    args.extend_from_slice(extra);
    let (code, out, err) = vouch(&args);
    (code, format!("{out}{err}"))
}

fn in_toto_verify(layout: &Path, owner: &Path, links: &Path) -> i32 {
    Command::new(pyenv().join("in-toto-verify"))
        .arg("--layout")
        .arg(layout)
        .arg("--verification-keys")
        .arg(owner)
        .arg("--link-dir")
        .arg(links)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The one link of `step` in `dir`.
fn link_of(dir: &Path, step: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{step}.")) && n.ends_with(".link")
        })
        .collect();
    assert_eq!(v.len(), 1, "{step} in {}", dir.display());
    v.pop().unwrap()
}

/// A CA (or the given issuer) and an SVID-like leaf for `id`, valid `from`..`to`; writes
/// `<name>.crt` (leaf) and `<name>.key`.
fn svid_files(
    dir: &Path,
    name: &str,
    id: &str,
    issuer: Option<(&str, &str)>,
    from: (i32, u8, u8),
    to: (i32, u8, u8),
) -> (PathBuf, PathBuf) {
    svid_files_with_key(dir, name, id, issuer, from, to, None)
}

/// [`svid_files`] for the key in `key_pem` when given (a second certificate of one key).
fn svid_files_with_key(
    dir: &Path,
    name: &str,
    id: &str,
    issuer: Option<(&str, &str)>,
    from: (i32, u8, u8),
    to: (i32, u8, u8),
    key_pem: Option<&str>,
) -> (PathBuf, PathBuf) {
    let key = match key_pem {
        Some(k) => rcgen::KeyPair::from_pem(k).unwrap(),
        None => rcgen::KeyPair::generate().unwrap(),
    };
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    leaf.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    leaf.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let cert = match issuer {
        Some((ca_pem, ca_key)) => {
            let k = rcgen::KeyPair::from_pem(ca_key).unwrap();
            let iss = rcgen::Issuer::from_ca_cert_pem(ca_pem, k).unwrap();
            leaf.signed_by(&key, &iss).unwrap()
        }
        None => {
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "a self-made CA");
            let ca =
                rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                    .unwrap();
            leaf.signed_by(&key, &ca).unwrap()
        }
    };
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn edit(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn svid_signed_chain_of_custody_holds_only_for_the_attested_builder() {
    let python = pyenv().join("python3");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/deps.sh --test` (it installs the PyPI in-toto package)",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dev = Dev::start(t);
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let id = format!("spiffe://vouch.local/dev/uid-{}", uid.trim());

    let c = t.join("c");
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custody_svid_chain.py"))
        .arg(&c)
        .arg(&id)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "custody_svid_chain.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let owner = c.join("owner.pub");
    let ca = dev.ca();
    let jwks = t.join("jwks.json");
    dev.get("/.well-known/jwks.json", &jwks);
    let tb: &[&std::ffi::OsStr] = os!["--trust-bundle", &ca, "--jwks", &jwks];

    // The recorder-signed chain against the keyed layout: Vouch and in-toto agree.
    let (code, out) = verify(&c.join("keyed.layout"), &owner, &c.join("good"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("source -> build -> test -> package -> deploy"),
        "{out}"
    );
    assert_eq!(
        in_toto_verify(&c.join("keyed.layout"), &owner, &c.join("good")),
        0
    );
    // A trust bundle given for a layout that names no SPIFFE ID changes nothing.
    let (code, out) = verify(&c.join("keyed.layout"), &owner, &c.join("good"), tb);
    assert_eq!(code, 0, "{out}");

    // Each link re-signed with the agent's SVID.
    let svid = t.join("svid");
    for step in ["source", "build", "test", "package", "deploy"] {
        sign(&dev, &link_of(&c.join("good"), step), &svid, None, true);
    }
    let layout = c.join("svid.layout");
    let (code, out) = verify(&layout, &owner, &svid, tb);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("-> deploy"), "{out}");
    // The bundle as the verifier serves it (SPIFFE bundle JSON) does as well.
    let bundle_json = t.join("bundle.json");
    dev.get("/v1/bundle", &bundle_json);
    let (code, out) = verify(
        &layout,
        &owner,
        &svid,
        os!["--trust-bundle", &bundle_json, "--jwks", &jwks],
    );
    assert_eq!(code, 0, "{out}");
    // The JWKS fetched from the verifier's URL (TLS pinned to its CA) does as well.
    let tls_ca = dev.dir.join("server/tls/ca.crt");
    let (code, out) = verify(
        &layout,
        &owner,
        &svid,
        os![
            "--trust-bundle",
            &ca,
            "--jwks",
            &format!("{}/.well-known/jwks.json", dev.url),
            "--ca-cert",
            &tls_ca
        ],
    );
    assert_eq!(code, 0, "{out}");
    // Neither a JWKS nor --allow-signer-time: a usage error (exit 2), not a verdict.
    let (code, out) = verify(&layout, &owner, &svid, os!["--trust-bundle", &ca]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--trust-bundle needs --jwks"), "{out}");

    let refused = |links: &Path, layout: &Path, extra: &[&std::ffi::OsStr], why: &str| {
        let (code, out) = verify(layout, &owner, links, extra);
        assert_eq!(code, 1, "expected refusal ({why}): {out}");
        assert!(out.contains(why), "expected {why:?} in {out:?}");
    };
    // Variant of the SVID-signed chain with `step`'s link replaced by `with`.
    let variant = |name: &str, step: &str, with: Option<&Path>| -> PathBuf {
        let d = t.join(name);
        copy_dir(&svid, &d);
        std::fs::remove_file(link_of(&d, step)).unwrap();
        if let Some(w) = with {
            std::fs::copy(w, d.join(w.file_name().unwrap())).unwrap();
        }
        d
    };

    let deploy = link_of(&c.join("good"), "deploy");
    // No trust bundle: a step naming SPIFFE IDs cannot be checked.
    refused(
        &svid,
        &layout,
        &[],
        "step source: its functionaries are SPIFFE IDs",
    );

    // custody sign also takes a DSSE link (in-toto-run --use-dsse): the same step recorded
    // again that way, signed with the SVID, stands in for the source link.
    let l = sign(
        &dev,
        &link_of(&c.join("dsse"), "source"),
        &t.join("from-dsse"),
        None,
        true,
    );
    let (code, out) = verify(&layout, &owner, &variant("v-dsse", "source", Some(&l)), tb);
    assert_eq!(code, 0, "{out}");

    // A link the verifier did not timestamp is refused under --jwks; with
    // --allow-signer-time its SVID is checked as of the signer's own vouch_signed_at.
    let l = sign(&dev, &deploy, &t.join("unstamped"), None, false);
    let d = variant("v-unstamped", "deploy", Some(&l));
    refused(
        &d,
        &layout,
        tb,
        "timestamp: the signature has no verifier timestamp",
    );
    let weak: &[&std::ffi::OsStr] = os!["--trust-bundle", &ca, "--allow-signer-time"];
    let (code, out) = verify(&layout, &owner, &d, weak);
    assert_eq!(code, 0, "{out}");
    // A timestamp moved from another link's signature countersigns that signature, not this.
    edit(&link_of(&d, "deploy"), |v| {
        let other: serde_json::Value =
            serde_json::from_slice(&std::fs::read(link_of(&svid, "deploy")).unwrap()).unwrap();
        v["signatures"][0]["timestamp"] = other["signatures"][0]["timestamp"].clone();
    });
    refused(
        &d,
        &layout,
        tb,
        "timestamp: the timestamp countersigns sha256:",
    );
    // The recorder's plain-key links do not count for SPIFFE functionaries.
    refused(
        &c.join("good"),
        &layout,
        tb,
        "by a plain key, not an X.509-SVID",
    );
    // The right SVID, but the layout names another SPIFFE ID for deploy.
    refused(
        &svid,
        &c.join("other-id.layout"),
        tb,
        "step deploy: 0 valid link(s), threshold 1",
    );
    refused(
        &svid,
        &c.join("other-id.layout"),
        tb,
        "not a functionary of the step",
    );

    let foreign = t.join("foreign");
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let ca_key = std::fs::read_to_string(dev.dir.join("server/spiffe/ca.key")).unwrap();
    // An SVID of another trust domain (its own CA), the same path.
    let other_td = id.replace("vouch.local", "other.example");
    let (crt, key) = svid_files(t, "other-td", &other_td, None, (2020, 1, 1), (2090, 1, 1));
    let l = sign(&dev, &deploy, &foreign.join("td"), Some((&crt, &key)), true);
    refused(
        &variant("v-td", "deploy", Some(&l)),
        &layout,
        tb,
        "does not chain to the trust bundle",
    );
    // Even one the trust domain's CA had signed (misissued) names another trust domain.
    let (crt, key) = svid_files(
        t,
        "other-td-ours",
        &other_td,
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2090, 1, 1),
    );
    let l = sign(
        &dev,
        &deploy,
        &foreign.join("td2"),
        Some((&crt, &key)),
        true,
    );
    refused(
        &variant("v-td2", "deploy", Some(&l)),
        &layout,
        tb,
        "not in trust domain",
    );
    // A real SVID naming exactly the builder's SPIFFE ID, issued by another verifier (another
    // deployment: its own CA) to its attested workload.
    let t2 = t.join("second");
    std::fs::create_dir_all(&t2).unwrap();
    let dev2 = Dev::start(&t2);
    let l = sign(&dev2, &deploy, &foreign.join("dev2"), None, true);
    drop(dev2);
    let d = variant("v-dev2", "deploy", Some(&l));
    // Its verifier's timestamp is not under our verifier's keys; and without timestamps
    // checked, its chain does not reach our trust domain's CA.
    refused(&d, &layout, tb, "is not in the verifier's JWKS");
    refused(
        &d,
        &layout,
        weak,
        // Both CAs are named "Vouch SPIFFE CA vouch.local": the issuer is found by name, and
        // its signature does not verify under our CA's key.
        "SVID at signing time: unexpected error: peer SVID does not chain to the trust bundle: InvalidSignatureForPublicKey",
    );
    // A self-made certificate naming exactly the builder's SPIFFE ID.
    let (crt, key) = svid_files(t, "self-made", &id, None, (2020, 1, 1), (2090, 1, 1));
    let l = sign(
        &dev,
        &deploy,
        &foreign.join("self"),
        Some((&crt, &key)),
        true,
    );
    refused(
        &variant("v-self", "deploy", Some(&l)),
        &layout,
        tb,
        "does not chain to the trust bundle",
    );
    // An SVID from the trust domain's own CA, expired when it signed.
    let (crt, key) = svid_files(
        t,
        "expired",
        &id,
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2021, 1, 1),
    );
    // Issued (recorded) but expired now: the verifier gives it no timestamp; unstamped, under
    // the signer's time, the chain is expired.
    record_issued(&dev, &crt);
    sign_unstamped_refused(
        &dev,
        &deploy,
        &foreign.join("expired-stamped"),
        (&crt, &key),
        "the certificate expired at",
    );
    let l = sign(
        &dev,
        &deploy,
        &foreign.join("expired"),
        Some((&crt, &key)),
        false,
    );
    refused(
        &variant("v-exp", "deploy", Some(&l)),
        &layout,
        weak,
        "SVID at signing time: unexpected error: peer SVID does not chain to the trust bundle: CertExpired",
    );
    // The expired SVID's key backdating a link into the SVID's validity (signed here with
    // securesystemslib, vouch_signed_at 2020-06-01): with no verifier timestamp it is refused
    // under --jwks; --allow-signer-time accepts it, which is why that mode is the weaker one.
    let back = foreign.join("backdated");
    std::fs::create_dir_all(&back).unwrap();
    let o = Command::new(&python)
        .args([
            "-c",
            r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner
link, key, cert, out = sys.argv[1:]
signed = json.load(open(link))["signed"]
signed.setdefault("environment", {})["vouch_signed_at"] = "2020-06-01T00:00:00Z"
signer = CryptoSigner(load_pem_private_key(open(key, "rb").read(), None))
sig = signer.sign(encode_canonical(signed).encode())
json.dump({"signed": signed, "signatures": [{"keyid": "backdated", "sig": sig.signature, "cert": open(cert).read()}]}, open(out, "w"))
"#,
        ])
        .arg(&deploy)
        .arg(&key)
        .arg(&crt)
        .arg(back.join("deploy.backdated.link"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = variant(
        "v-back",
        "deploy",
        Some(&back.join("deploy.backdated.link")),
    );
    refused(&d, &layout, tb, "the signature has no verifier timestamp");
    let (code, out) = verify(&layout, &owner, &d, weak);
    assert_eq!(
        code, 0,
        "--allow-signer-time trusts the signer's time: {out}"
    );

    // The same CA, valid: accepted (so the refusal above is the expiry alone).
    let (crt, key) = svid_files(
        t,
        "valid",
        &id,
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2090, 1, 1),
    );
    let l = sign(
        &dev,
        &deploy,
        &foreign.join("valid"),
        Some((&crt, &key)),
        true,
    );
    let valid = variant("v-valid", "deploy", Some(&l));
    let (code, out) = verify(&layout, &owner, &valid, tb);
    assert_eq!(code, 0, "{out}");

    // The timestamp binds the certificate (issue 15 part 7): a second SVID of the same key
    // (also issued) put in place of the one the link was stamped for verifies as a chain and
    // as a signature, but the timestamp's x5t#S256 names the first: refused.
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let (crt2, _) = svid_files_with_key(
        t,
        "valid-again",
        &id,
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2090, 1, 1),
        Some(&key_pem),
    );
    record_issued(&dev, &crt2);
    let d = variant("v-x5t", "deploy", Some(&l));
    edit(&link_of(&d, "deploy"), |v| {
        v["signatures"][0]["cert"] = std::fs::read_to_string(&crt2).unwrap().into();
    });
    refused(&d, &layout, tb, "the timestamp is for certificate x5t#S256");
    // A certificate the verifier never issued (a self-made one naming the builder's SPIFFE ID;
    // one our CA signed that was not issued through the verifier) gets no timestamp.
    let (crt, key) = svid_files(t, "self-made-2", &id, None, (2020, 1, 1), (2090, 1, 1));
    sign_unstamped_refused(
        &dev,
        &deploy,
        &foreign.join("self-unissued"),
        (&crt, &key),
        "not an X.509-SVID this verifier issued",
    );
    let (crt, key) = svid_files(
        t,
        "ours-unissued",
        &id,
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2090, 1, 1),
    );
    sign_unstamped_refused(
        &dev,
        &deploy,
        &foreign.join("ours-unissued"),
        (&crt, &key),
        "not an X.509-SVID this verifier issued",
    );

    // Threshold 2 for deploy (two.layout): the builder's link and one by a second SPIFFE ID
    // (an SVID of the real CA) verify; the builder's link twice (two files) is one
    // functionary, not two.
    let (crt, key) = svid_files(
        t,
        "second",
        &format!("{id}-second"),
        Some((&ca_pem, &ca_key)),
        (2020, 1, 1),
        (2090, 1, 1),
    );
    let second = sign(
        &dev,
        &deploy,
        &foreign.join("second"),
        Some((&crt, &key)),
        true,
    );
    let d = variant("v-two", "deploy", None);
    std::fs::copy(link_of(&svid, "deploy"), d.join("deploy.first.link")).unwrap();
    std::fs::copy(&second, d.join("deploy.second.link")).unwrap();
    let (code, out) = verify(&c.join("two.layout"), &owner, &d, tb);
    assert_eq!(code, 0, "{out}");
    refused(
        &svid,
        &c.join("two.layout"),
        tb,
        "step deploy: 1 valid link(s), threshold 2",
    );
    std::fs::remove_file(d.join("deploy.second.link")).unwrap();
    let again = sign(&dev, &deploy, &foreign.join("again"), None, true);
    std::fs::copy(&again, d.join("deploy.again.link")).unwrap();
    refused(
        &d,
        &c.join("two.layout"),
        tb,
        "step deploy: 1 valid link(s), threshold 2",
    );

    // One flipped byte of an SVID signature; a product hash changed after signing.
    let d = variant("v-flip", "build", None);
    copy_dir(&svid, &d);
    edit(&link_of(&d, "build"), |v| {
        let s = v["signatures"][0]["sig"].as_str().unwrap().to_owned();
        let mut b = hex::decode(&s).unwrap();
        b[8] ^= 1;
        v["signatures"][0]["sig"] = hex::encode(b).into();
    });
    // The verifier's timestamp no longer countersigns it; without the timestamp checked, the
    // signature itself does not verify.
    refused(&d, &layout, tb, "not this signature");
    refused(&d, &layout, weak, "the signature by spiffe://");
    let d = variant("v-prod", "package", None);
    copy_dir(&svid, &d);
    edit(&link_of(&d, "package"), |v| {
        v["signed"]["products"]["app.tar.gz"]["sha256"] = "00".repeat(32).into();
    });
    refused(&d, &layout, tb, "step package: 0 valid link(s)");

    // Missing, reordered, altered, misnamed steps (all SVID-signed); in-toto-verify agrees
    // on the recorder-signed equivalents against the keyed layout.
    refused(
        &variant("v-missing", "test", None),
        &layout,
        tb,
        "step test: 0 valid link(s), threshold 1 (no link found)",
    );
    let keyed = |name: &str, step: &str, with: Option<&Path>| -> PathBuf {
        let d = t.join(name);
        copy_dir(&c.join("good"), &d);
        std::fs::remove_file(link_of(&d, step)).unwrap();
        if let Some(w) = with {
            std::fs::copy(w, d.join(w.file_name().unwrap())).unwrap();
        }
        d
    };
    let kl = c.join("keyed.layout");
    let k = keyed("k-missing", "test", None);
    refused(&k, &kl, &[], "step test: 0 valid link(s)");
    assert_ne!(in_toto_verify(&kl, &owner, &k), 0);

    let reordered = link_of(&c.join("reordered"), "package");
    let l = sign(&dev, &reordered, &foreign.join("reordered"), None, true);
    refused(
        &variant("v-reorder", "package", Some(&l)),
        &layout,
        tb,
        "step package: materials lacks required \"test/report.txt\"",
    );
    let k = keyed("k-reorder", "package", Some(&reordered));
    refused(&k, &kl, &[], "lacks required \"test/report.txt\"");
    assert_ne!(in_toto_verify(&kl, &owner, &k), 0);

    let altered = link_of(&c.join("altered"), "build");
    let l = sign(&dev, &altered, &foreign.join("altered"), None, true);
    refused(
        &variant("v-alter", "build", Some(&l)),
        &layout,
        tb,
        "step build: materials \"src/app.sh\" is disallowed",
    );
    let k = keyed("k-alter", "build", Some(&altered));
    refused(&k, &kl, &[], "materials \"src/app.sh\" is disallowed");
    assert_ne!(in_toto_verify(&kl, &owner, &k), 0);

    // The test step's link put in place of build's (named as a build link).
    let d = variant("v-swap", "build", None);
    std::fs::copy(link_of(&svid, "test"), d.join("build.swapped.link")).unwrap();
    refused(&d, &layout, tb, "the link is not for step build");

    // Revocation: with the verifier's signed revocations the chain verifies; once the
    // builder's SVID is revoked at the verifier, its links no longer count.
    let revs = t.join("revocations.json");
    dev.get("/v1/revocations", &revs);
    let with_revs: &[&std::ffi::OsStr] = os![
        "--trust-bundle",
        &ca,
        "--jwks",
        &jwks,
        "--revocations",
        &revs
    ];
    let (code, out) = verify(&layout, &owner, &svid, with_revs);
    assert_eq!(code, 0, "{out}");
    // The builder's node revoked: links timestamped for its workload no longer count, even
    // one signed by another (unrevoked) SVID of the trust domain.
    let result = std::fs::read_to_string(dev.dir.join("agent/result.jwt")).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(result.trim().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let node = claims["sub"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (code, _, err) = vouch(os![
        "revoke",
        "node",
        &node,
        "--reason",
        "builder machine stolen",
        "--data-dir",
        &dev.dir.join("server")
    ]);
    assert_eq!(code, 0, "{err}");
    dev.get("/v1/revocations", &revs);
    refused(
        &valid,
        &layout,
        with_revs,
        &format!("revocations: the builder's node {node} is revoked"),
    );
    let pem: serde_json::Value =
        serde_json::from_slice(&std::fs::read(link_of(&svid, "deploy")).unwrap()).unwrap();
    let pem = pem["signatures"][0]["cert"].as_str().unwrap().to_owned();
    let der = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let serial = hex::encode(cert.raw_serial());
    let (code, _, err) = vouch(os![
        "revoke",
        "svid",
        &serial,
        "--reason",
        "builder compromised",
        "--data-dir",
        &dev.dir.join("server")
    ]);
    assert_eq!(code, 0, "{err}");
    dev.get("/v1/revocations", &revs);
    refused(
        &svid,
        &layout,
        with_revs,
        &format!(
            "revocations: the SVID: svid {} is revoked",
            serial.trim_start_matches('0')
        ),
    );
    // A revocation set older than allowed refuses every SVID-signed link.
    std::thread::sleep(Duration::from_millis(2100));
    let stale: &[&std::ffi::OsStr] = os![
        "--trust-bundle",
        &ca,
        "--jwks",
        &jwks,
        "--revocations",
        &revs,
        "--max-revocation-age",
        "1s"
    ];
    refused(&svid, &layout, stale, "step source: 0 valid link(s)");
}
