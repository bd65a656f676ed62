//! The images of running containers, appraised at attestation time (issue 15): real podman
//! containers (runc) run images pulled from a real docker-registry over TLS on loopback, one
//! signed (an independent cosign-format signer) with SLSA provenance attached (the PyPI
//! in-toto-attestation and securesystemslib packages, cosign's `.att` layout), one unsigned.
//! The agent asks `podman system service`'s Engine API which containers run and reports each
//! one's image digests in its evidence; the verifier checks them (`[image_signatures]` with
//! `provenance = true`). The node's workload (reporting every running container) and the
//! declared workload whose containers run the unsigned image are contraindicated, naming the
//! digest; the declared workload whose container runs the signed image is affirming; once
//! the unsigned container is removed, the node is affirming again. Then the runtime stops
//! answering (the service killed) while an unsigned container starts: the workloads are
//! contraindicated, "the agent could not list the running containers", until it answers again.
//!
//! The images hold `/usr/bin/sleep` and the libraries `ldd` lists, built from scratch by
//! buildah into an OCI layout and pushed by skopeo, then pulled by podman into storage of its
//! own (so the only repo digest podman knows is the registry's). Podman runs with its own
//! configuration: `runtime = "runc"`, `default_ulimits = []`, the cgroupfs manager, no network.
//! Skipped, loudly, when podman, buildah, skopeo, runc or docker-registry is missing, podman
//! cannot run here, or the PyPI producer is not installed (`scripts/deps.sh --test`).
//! A runtime that never answered (a silent socket) is checked without podman.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vouch_agent::NodeStatus;
use vouch_core::ArStatus;
use vouch_server::ImageSignatureSettings;
use vouch_testkit::registry::{
    Registry, TEST_BUILDER, TEST_SOURCE, missing_attester, missing_tools,
};

/// podman, buildah and skopeo with their own configuration and storage under `dir`.
struct Tools {
    env: Vec<(String, PathBuf)>,
}

impl Tools {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{}\"\n",
                dir.join("tmp").display()
            ),
        )
        .unwrap();
        let storage = dir.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("graph").display(),
                dir.join("run").display()
            ),
        )
        .unwrap();
        Self {
            env: vec![
                ("CONTAINERS_CONF".into(), conf),
                ("CONTAINERS_STORAGE_CONF".into(), storage),
            ],
        }
    }

    fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new(prog);
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn try_run(&self, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"))
    }

    fn run(&self, prog: &str, args: &[&str]) -> String {
        let o = self.try_run(prog, args);
        assert!(
            o.status.success(),
            "{prog} {args:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }
}

/// Why containers cannot run here, if they cannot.
fn unavailable(p: &Tools) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (this test runs podman rootful)".into());
    }
    if let Some(why) = missing_tools().or_else(missing_attester) {
        return Some(why);
    }
    for tool in ["podman", "runc", "ldd"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!("{tool} is not installed (scripts/deps.sh --test)"));
        }
    }
    let o = p.try_run("podman", &["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
    if !o.status.success() {
        return Some(format!(
            "podman info failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    None
}

/// The shared libraries `exe` loads (and the loader), from `ldd`.
fn libraries(exe: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().unwrap();
    assert!(out.status.success(), "ldd {}", exe.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=> ") {
                Some((_, rest)) => rest.split(" (").next()?,
                None => l.split(" (").next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Build an image from scratch running `sleep 600`, labelled `version=<tag>`, push it to
/// `reg` as `repo:tag` and return the manifest digest skopeo reports.
fn push_sleeper(b: &Tools, dir: &Path, reg: &Registry, repo: &str, tag: &str) -> String {
    let sleep = Path::new("/usr/bin/sleep");
    let ctr = b.run("buildah", &["from", "scratch"]);
    for lib in libraries(sleep).into_iter().chain([sleep.to_path_buf()]) {
        let real = std::fs::canonicalize(&lib).unwrap();
        b.run(
            "buildah",
            &[
                "copy",
                "--quiet",
                &ctr,
                real.to_str().unwrap(),
                lib.to_str().unwrap(),
            ],
        );
    }
    b.run(
        "buildah",
        &[
            "config",
            "--label",
            &format!("version={tag}"),
            "--entrypoint",
            r#"["/usr/bin/sleep", "600"]"#,
            &ctr,
        ],
    );
    let layout = format!("oci:{}:{tag}", dir.join("layout").display());
    b.run("buildah", &["commit", "--quiet", &ctr, &layout]);
    b.run("buildah", &["rm", &ctr]);
    let certs = reg.ca().parent().unwrap().to_path_buf();
    let dest = format!("docker://{}/{repo}:{tag}", reg.addr);
    b.run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &layout,
            &dest,
        ],
    );
    b.run(
        "skopeo",
        &[
            "inspect",
            "--cert-dir",
            certs.to_str().unwrap(),
            "--format",
            "{{.Digest}}",
            &dest,
        ],
    )
}

/// Removes the containers and stops `podman system service` however the test ends.
struct Cleanup<'a> {
    p: &'a Tools,
    service: std::process::Child,
    names: Vec<&'static str>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.p.try_run("podman", &["rm", "-f", "-t", "0", n]);
        }
        stop_service(&mut self.service);
    }
}

fn skipped(test: &str, why: &str) {
    eprintln!(
        "\n\n********************************************************************\n\
         SKIPPED {test}: {why}\n\
         ********************************************************************\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_containers_from_unsigned_images_make_their_workloads_contraindicated() {
    let h_dir = tempfile::tempdir().unwrap();
    let root = h_dir.path();
    let podman = Tools::new(&root.join("podman"));
    if let Some(why) = unavailable(&podman) {
        return skipped(
            "running_containers_from_unsigned_images_make_their_workloads_contraindicated",
            &why,
        );
    }
    let reg = Registry::start(&root.join("registry"));
    let trusted = reg.cosign_key("trusted");
    let builder = Tools::new(&root.join("build"));
    let repo = "shop/web";
    let signed = push_sleeper(&builder, &root.join("build"), &reg, repo, "v1");
    let unsigned = push_sleeper(&builder, &root.join("build"), &reg, repo, "v2");
    assert_ne!(signed, unsigned);
    reg.cosign_sign(repo, &signed, "trusted", "good");
    reg.cosign_attest(repo, &signed, "trusted", "good");
    // The unsigned image has good provenance: provenance alone does not make it signed.
    reg.cosign_attest(repo, &unsigned, "trusted", "good");

    // Podman pulls both from the registry into its own storage and runs them.
    let service_sock = root.join("podman.sock");
    let service = start_service(&podman, &service_sock);
    let mut cleanup = Cleanup {
        p: &podman,
        service,
        names: Vec::new(),
    };
    let certs = reg.ca().parent().unwrap().to_path_buf();
    let mut ids = Vec::new();
    for (name, tag, label) in [
        ("vouch-img-web", "v1", "app=web"),
        ("vouch-img-batch", "v2", "app=batch"),
    ] {
        let image = format!("{}/{repo}:{tag}", reg.addr);
        podman.run(
            "podman",
            &[
                "pull",
                "--quiet",
                "--cert-dir",
                certs.to_str().unwrap(),
                &image,
            ],
        );
        cleanup.names.push(name);
        let id = podman.run(
            "podman",
            &[
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                name,
                "--label",
                label,
                &image,
            ],
        );
        assert_eq!(id.len(), 64, "{id}");
        ids.push(id);
    }
    wait_for_service(&service_sock);

    let settings = ImageSignatureSettings {
        repositories: vec![format!("{}/{repo}", reg.addr)],
        keys: vec![trusted],
        registry_ca: Some(reg.ca()),
        plain_http: false,
        ttl: 300,
        cache_entries: 16,
        provenance: true,
        provenance_keys: vec![],
        ..Default::default()
    };
    let h = common::Harness::new(|c| c.image_signatures = Some(settings)).await;
    h.refvalue("require_image_signature", "*", "true").await;
    h.refvalue("require_provenance_builder", "*", TEST_BUILDER)
        .await;
    h.refvalue("require_provenance_source", "*", TEST_SOURCE)
        .await;
    // Two declared workloads, each the containers with its label.
    let mut workloads = Vec::new();
    for (name, label) in [("web", "app:web"), ("batch", "app:batch")] {
        let exe = h.path(&format!("{name}.exe"));
        std::fs::write(&exe, format!("{name} binary")).unwrap();
        h.refvalue(
            "executable",
            name,
            &vouch_evidence::sha256_file(&exe).unwrap(),
        )
        .await;
        workloads.push(vouch_agent::WorkloadConfig {
            name: name.into(),
            exe,
            files: vec![],
            image_digest: None,
            selectors: vec![format!("container:label:{label}")],
        });
    }
    let mut agent = h
        .agent_with("node", |c| {
            c.container = Some(vouch_agent::ContainerConfig {
                socket: service_sock.clone(),
                node_containers: true,
                ..Default::default()
            });
            c.workloads = workloads;
        })
        .await;
    h.trust(&mut agent).await;
    let statuses = agent.workload_status();

    // The node runs both: contraindicated, naming the unsigned image's digest only.
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains(&unsigned) && x.contains("not signed by a trusted key")),
        "{:?}",
        r.reasons
    );
    assert!(
        !r.reasons.iter().any(|x| x.contains(&signed)),
        "{:?}",
        r.reasons
    );
    // The evidence lists each container with the digest podman reports for it.
    let ev = agent.evidence("n").unwrap();
    let m = vouch_evidence::decode_payload(&ev.payload).unwrap().1;
    let mut seen: Vec<(String, Vec<String>)> = m
        .workload
        .containers
        .iter()
        .map(|c| (c.id.clone(), c.image_digests.clone()))
        .collect();
    seen.sort();
    let mut want = vec![
        (ids[0].clone(), vec![signed.clone()]),
        (ids[1].clone(), vec![unsigned.clone()]),
    ];
    want.sort();
    assert_eq!(seen, want);
    {
        let st = statuses.borrow();
        assert_eq!(st.get("web"), Some(&NodeStatus::Affirming), "{st:?}");
        match st.get("batch") {
            Some(NodeStatus::Refused(why)) => {
                assert!(
                    why.contains(&unsigned) && why.contains("not signed by a trusted key"),
                    "{why}"
                );
            }
            other => panic!("batch: {other:?}"),
        }
    }

    // The unsigned container stops: the next round reports only the signed one.
    podman.run("podman", &["rm", "-f", "-t", "0", "vouch-img-batch"]);
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    {
        let st = statuses.borrow();
        // The batch workload has no container left: nothing of it is appraised as an image.
        assert_eq!(st.get("batch"), Some(&NodeStatus::Affirming), "{st:?}");
    }

    // The runtime stops answering (its service killed; the socket path stays configured), and
    // meanwhile the unsigned container is started again: the agent cannot see it. Its last
    // list (the signed container only) is marked unlisted, and every workload asked to report
    // containers is contraindicated, naming why, not affirming on a stale or empty list.
    stop_service(&mut cleanup.service);
    podman.run(
        "podman",
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "vouch-img-batch",
            "--label",
            "app=batch",
            &format!("{}/{repo}:v2", reg.addr),
        ],
    );
    let unlisted = "the agent could not list the running containers: container runtime at";
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains(unlisted)),
        "{:?}",
        r.reasons
    );
    // The unsigned container is not in the evidence (the runtime was not asked), which is
    // why the list is marked: the signed evidence says so.
    let ev = agent.evidence("n").unwrap();
    let m = vouch_evidence::decode_payload(&ev.payload).unwrap().1;
    let why = m.workload.containers_unlisted.clone().unwrap();
    assert!(why.contains(service_sock.to_str().unwrap()), "{why}");
    let listed: Vec<&str> = m
        .workload
        .containers
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(listed, vec![ids[0].as_str()]);
    {
        let st = statuses.borrow();
        for w in ["web", "batch"] {
            match st.get(w) {
                Some(NodeStatus::Refused(why)) => assert!(why.contains(unlisted), "{w}: {why}"),
                other => panic!("{w}: {other:?}"),
            }
        }
    }

    // The runtime answers again: the container started meanwhile is seen, and its unsigned
    // image named; once it is removed, all are affirming again.
    cleanup.service = start_service(&podman, &service_sock);
    wait_for_service(&service_sock);
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains(&unsigned) && x.contains("not signed by a trusted key")),
        "{:?}",
        r.reasons
    );
    assert!(
        !r.reasons.iter().any(|x| x.contains("could not list")),
        "{:?}",
        r.reasons
    );
    podman.run("podman", &["rm", "-f", "-t", "0", "vouch-img-batch"]);
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let ev = agent.evidence("n").unwrap();
    let m = vouch_evidence::decode_payload(&ev.payload).unwrap().1;
    assert_eq!(m.workload.containers_unlisted, None);
    let st = statuses.borrow();
    assert_eq!(st.get("web"), Some(&NodeStatus::Affirming), "{st:?}");
    assert_eq!(st.get("batch"), Some(&NodeStatus::Affirming), "{st:?}");
}

/// `podman system service` serving the Engine API on `sock` (a stale socket file removed first).
fn start_service(podman: &Tools, sock: &Path) -> std::process::Child {
    let _ = std::fs::remove_file(sock);
    podman
        .cmd(
            "podman",
            &[
                "system",
                "service",
                "--time=0",
                &format!("unix://{}", sock.display()),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Until the service accepts connections on `sock`.
fn wait_for_service(sock: &Path) {
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "podman system service"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stop our own `podman system service` child and wait for it (its socket file may stay).
fn stop_service(service: &mut std::process::Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = service.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = service.kill();
    let _ = service.wait();
}

/// A runtime that has never answered since the agent started (here a socket that accepts and
/// stays silent; no podman needed): the agent reports no containers, and says it could not
/// list them, so the node is not affirming on an empty list under `require_image_signature`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_never_answered_leaves_the_node_contraindicated_not_affirming() {
    let h = common::Harness::new(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("silent.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let mut agent = h
        .agent_with("node", |c| {
            c.container = Some(vouch_agent::ContainerConfig {
                socket: sock.clone(),
                node_containers: true,
                timeout_ms: 300,
                ..Default::default()
            });
        })
        .await;
    h.trust(&mut agent).await;
    // Without an image rule the unlisted round denies nothing.
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let ev = agent.evidence("n").unwrap();
    let m = vouch_evidence::decode_payload(&ev.payload).unwrap().1;
    assert!(m.workload.containers.is_empty());
    let why = m.workload.containers_unlisted.unwrap();
    assert!(
        why.contains(sock.to_str().unwrap()) && why.contains("no answer"),
        "{why}"
    );

    h.refvalue("require_image_signature", "*", "true").await;
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x
            .contains("the agent could not list the running containers: container runtime at")
            && x.contains("no answer")),
        "{:?}",
        r.reasons
    );
}
