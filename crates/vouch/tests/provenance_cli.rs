//! `vouch provenance verify` on real public SLSA v1 provenance (testdata/slsa, a GitHub
//! Actions attestation kept by slsa-verifier; see testdata/SOURCES.md): its exit codes for
//! pipelines, 0 verified, 1 refused with the reason, 2 a local error. The verifier's checks
//! themselves are tested in crates/vouch-image/tests/provenance.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::Path;
use std::process::Command;
use vouch_testkit::{read_testdata, testdata};

const BUILDER: &str = "https://github.com/bazel-contrib/publish-to-bcr/.github/workflows/publish.yaml@refs/tags/v0.0.1";

/// Run `vouch provenance verify` with `args`: (exit code, stdout, stderr).
fn verify(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["provenance", "verify"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The bundle's Fulcio certificate as PEM in `dir`.
fn cert_pem(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&read_testdata("slsa/MODULE.bazel.intoto.jsonl")).unwrap();
    let b64 = v["verificationMaterial"]["certificate"]["rawBytes"]
        .as_str()
        .unwrap();
    let path = dir.join("fulcio.pem");
    std::fs::write(
        &path,
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn provenance_verify_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let key = cert_pem(dir.path());
    let env = testdata("slsa/MODULE.bazel.intoto.jsonl")
        .display()
        .to_string();
    let artifact = testdata("slsa/MODULE.bazel").display().to_string();
    let policy = [
        "--builder-id",
        BUILDER,
        "--source-repo",
        "https://github.com/aspect-build/rules_lint",
        "--source-ref",
        "refs/heads/publish-to-bcr",
        "--build-type",
        "https://actions.github.io/buildtypes/workflow/v1",
    ];
    let base = ["--envelope", &env, "--key", &key];

    let (code, out, err) = verify(&[&base[..], &["--artifact", &artifact], &policy].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verified: MODULE.bazel") && out.contains(BUILDER),
        "{out}"
    );
    // The same by digest, with --json.
    let (code, out, _) = verify(
        &[
            &["--json"][..],
            &base,
            &[
                "--digest",
                "sha256:06ce330900a7d6403bc8d88e5dfad6aeeb8ae40179f66bb89e69c8bf6f6b1a0b",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source_ref"], "refs/heads/publish-to-bcr");

    // Refused (1): the artifact with one byte changed; another builder required.
    let changed = dir.path().join("MODULE.bazel");
    let mut bytes = read_testdata("slsa/MODULE.bazel");
    bytes[5] ^= 1;
    std::fs::write(&changed, bytes).unwrap();
    let (code, _, err) = verify(
        &[
            &base[..],
            &["--artifact", &changed.display().to_string()],
            &policy,
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("provenance refused: subject"), "{err}");
    let (code, _, err) = verify(
        &[
            &base[..],
            &[
                "--artifact",
                &artifact,
                "--builder-id",
                "https://example.com/builder",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("builder id"), "{err}");
    // Refused (1): one flipped bit in the signature.
    let mut v: serde_json::Value =
        serde_json::from_slice(&read_testdata("slsa/MODULE.bazel.intoto.jsonl")).unwrap();
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = std_b64
        .decode(v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[30] ^= 1;
    v["dsseEnvelope"]["signatures"][0]["sig"] = std_b64.encode(sig).into();
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, _, err) = verify(&[
        "--envelope",
        &tampered.display().to_string(),
        "--key",
        &key,
        "--artifact",
        &artifact,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signature"), "{err}");
    // A local error (2): the key file is missing.
    let (code, _, err) = verify(&[
        "--envelope",
        &env,
        "--key",
        "/nonexistent/key.pem",
        "--artifact",
        &artifact,
    ]);
    assert_eq!(code, 2, "{err}");

    // Key-less: the bundle's Fulcio certificate checked against sigstore's trusted root,
    // and the signing workflow required as its identity.
    let root = testdata("slsa/trusted_root.json").display().to_string();
    let keyless = [
        "--envelope",
        &env,
        "--trusted-root",
        &root,
        "--artifact",
        &artifact,
    ];
    let (code, out, err) = verify(&[&keyless[..], &["--cert-identity", BUILDER]].concat());
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = verify(
        &[
            &keyless[..],
            &[
                "--cert-identity",
                "https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("certificate identity"), "{err}");
    let staging = testdata("slsa/trusted_root_staging.json")
        .display()
        .to_string();
    let (code, _, err) = verify(&[
        "--envelope",
        &env,
        "--trusted-root",
        &staging,
        "--artifact",
        &artifact,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not one of the"), "{err}");
    // The bundle without its signed entry timestamp: the Rekor entry no longer verifies.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&env).unwrap()).unwrap();
    v["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    let dir = tempfile::tempdir().unwrap();
    let no_set = dir.path().join("no-set.json");
    std::fs::write(&no_set, serde_json::to_vec(&v).unwrap()).unwrap();
    let no_set = no_set.display().to_string();
    let (code, _, err) = verify(&[
        "--envelope",
        &no_set,
        "--trusted-root",
        &root,
        "--artifact",
        &artifact,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signed entry timestamp: missing"), "{err}");
}
