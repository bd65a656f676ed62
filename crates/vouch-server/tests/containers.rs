//! Container selectors with real containers (issue 14): podman + runc, and dockerd, run two
//! images built from scratch with buildah; processes inside them call the agent's Workload API
//! through a bind-mounted socket and get exactly the SVIDs their image (digest or name) and
//! labels entitle them to, from the agent asking the runtime's Engine API (`podman system
//! service`, dockerd); when the node turns contraindicated they get nothing more and the open
//! stream ends.
//!
//! The in-container client is this test binary itself (`container_client_role`), copied into
//! the images with the shared libraries `ldd` lists. Podman runs with its own storage (vfs) and
//! configuration in the test's temporary directory: `runtime = "runc"` (this kernel's cgroups
//! are hybrid v1/v2, which crun does not drive), `default_ulimits = []`, the cgroupfs manager,
//! no network. The test is skipped, loudly, only when podman, buildah or runc is missing or
//! podman cannot run a container here; `scripts/deps.sh --test` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt as _;
use vouch_agent::{proto, request};

const PREFIX: &str = "VOUCH-CT:";

/// Run in a container: fetch X.509-SVIDs from the Workload API at `VOUCH_CT_SOCK` and print
/// what came. `VOUCH_CT_ROLE=fetch` asks once; `stream` keeps a stream open and prints each
/// update, and the error that ends it, until killed. Without `VOUCH_CT_ROLE` this does nothing.
#[test]
fn container_client_role() {
    let Ok(role) = std::env::var("VOUCH_CT_ROLE") else {
        return;
    };
    let sock = PathBuf::from(std::env::var("VOUCH_CT_SOCK").unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let show = |r: Result<proto::X509svidResponse, tonic::Status>| match r {
        Ok(m) => {
            let mut ids: Vec<String> = m.svids.iter().map(|s| s.spiffe_id.clone()).collect();
            ids.sort();
            println!("{PREFIX} OK {}", ids.join(","));
        }
        Err(s) => println!(
            "{PREFIX} ERR {:?} {}",
            s.code(),
            s.message().replace('\n', " ")
        ),
    };
    rt.block_on(async {
        let mut c = vouch_agent::connect(&sock).await.unwrap();
        match role.as_str() {
            "fetch" => {
                let r = c.fetch_x509svid(request(proto::X509svidRequest {})).await;
                match r {
                    Ok(s) => show(s.into_inner().next().await.unwrap()),
                    Err(e) => show(Err(e)),
                }
                let j = c
                    .fetch_jwtsvid(request(proto::JwtsvidRequest {
                        audience: vec!["db".into()],
                        spiffe_id: String::new(),
                    }))
                    .await;
                match j {
                    Ok(r) => {
                        let mut ids: Vec<String> = r
                            .into_inner()
                            .svids
                            .into_iter()
                            .map(|s| s.spiffe_id)
                            .collect();
                        ids.sort();
                        println!("{PREFIX} JWT {}", ids.join(","));
                    }
                    Err(s) => println!("{PREFIX} JWTERR {:?}", s.code()),
                }
            }
            "stream" => loop {
                match c.fetch_x509svid(request(proto::X509svidRequest {})).await {
                    Ok(s) => {
                        let mut s = s.into_inner();
                        while let Some(m) = s.next().await {
                            show(m);
                        }
                    }
                    Err(e) => show(Err(e)),
                }
                use std::io::Write as _;
                std::io::stdout().flush().unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
            other => panic!("unknown role {other}"),
        }
    });
    std::process::exit(0);
}

/// podman and buildah with this test's own configuration and storage.
struct Podman {
    env: Vec<(String, PathBuf)>,
}

impl Podman {
    fn new(dir: &Path) -> Self {
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

    /// Run, and return stdout; panics with stderr on failure.
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
fn unavailable(p: &Podman) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (this test runs podman rootful)".into());
    }
    for tool in ["podman", "buildah", "runc", "conmon", "ldd"] {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|d| d.join(tool).is_file())
                || Path::new("/usr/libexec/podman").join(tool).is_file()
        });
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

/// Build `localhost/vouch-ct-alpha:1` from scratch (this test binary, its libraries, labels
/// app=alpha and team=pay) and `localhost/vouch-ct-beta:1` from it (label app=beta); return
/// their manifest digests as podman reports them.
fn build_images(p: &Podman, dir: &Path) -> (String, String) {
    let exe = std::env::current_exe().unwrap();
    let bin = dir.join("vouch-ct-client");
    let stripped = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&bin)
        .arg(&exe)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(&exe, &bin).unwrap();
    }
    let ctr = p.run("buildah", &["from", "scratch"]);
    for lib in libraries(&exe) {
        let real = std::fs::canonicalize(&lib).unwrap();
        p.run(
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
    p.run(
        "buildah",
        &[
            "copy",
            "--quiet",
            &ctr,
            bin.to_str().unwrap(),
            "/vouch-ct-client",
        ],
    );
    p.run(
        "buildah",
        &[
            "config",
            "--label",
            "app=alpha",
            "--label",
            "team=pay",
            "--entrypoint",
            r#"["/vouch-ct-client", "--exact", "container_client_role", "--nocapture", "--test-threads=1"]"#,
            &ctr,
        ],
    );
    p.run(
        "buildah",
        &["commit", "--quiet", &ctr, "localhost/vouch-ct-alpha:1"],
    );
    p.run("buildah", &["rm", &ctr]);
    let ctr = p.run("buildah", &["from", "localhost/vouch-ct-alpha:1"]);
    p.run("buildah", &["config", "--label", "app=beta", &ctr]);
    p.run(
        "buildah",
        &["commit", "--quiet", &ctr, "localhost/vouch-ct-beta:1"],
    );
    p.run("buildah", &["rm", &ctr]);
    let digest = |image: &str| {
        let d = p.run(
            "podman",
            &["image", "inspect", "--format", "{{.Digest}}", image],
        );
        assert!(d.starts_with("sha256:") && d.len() == 71, "{image}: {d}");
        d
    };
    (
        digest("localhost/vouch-ct-alpha:1"),
        digest("localhost/vouch-ct-beta:1"),
    )
}

/// The runtime under test: podman's own CLI and `podman system service`, or dockerd and
/// its CLI; both serve the Engine API the agent asks.
enum Engine<'a> {
    Podman(&'a Podman),
    Docker(PathBuf),
}

impl Engine<'_> {
    fn try_cli(&self, args: &[&str]) -> Output {
        match self {
            Engine::Podman(p) => p.try_run("podman", args),
            Engine::Docker(sock) => Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", sock.display()))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = self.try_cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::Podman(_) => "podman",
            Engine::Docker(_) => "docker",
        }
    }
}

/// Ask once from inside container `name` (an exec'd process): the X.509-SVIDs' line and the
/// JWT-SVIDs' line it printed.
fn fetch_in(e: &Engine, name: &str) -> (String, String) {
    let out = e.cli(&[
        "exec",
        "-e",
        "VOUCH_CT_ROLE=fetch",
        "-e",
        "VOUCH_CT_SOCK=/run/vouch/api.sock",
        name,
        "/vouch-ct-client",
        "--exact",
        "container_client_role",
        "--nocapture",
        "--test-threads=1",
    ]);
    let lines: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(PREFIX).map(|(_, r)| r.trim().to_string()))
        .collect();
    match &lines[..] {
        [x509, jwt] => (x509.clone(), jwt.clone()),
        _ => panic!("no answer from {name}: {out}"),
    }
}

/// The lines container `name`'s main process (the streaming client) has printed.
fn stream_lines(e: &Engine, name: &str) -> Vec<String> {
    e.cli(&["logs", name])
        .lines()
        .filter_map(|l| l.split_once(PREFIX).map(|(_, r)| r.trim().to_string()))
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes the containers and stops the runtime service when the test ends, however it ends.
struct Cleanup<'a> {
    e: &'a Engine<'a>,
    service: std::process::Child,
    names: Vec<&'static str>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.e.try_cli(&["rm", "-f", n]);
        }
        // SIGTERM: dockerd stops the containerd it started.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.service.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.service.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.service.kill();
        let _ = self.service.wait();
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
async fn podman_containers_get_exactly_the_svids_their_image_digest_and_labels_entitle_them_to() {
    let h = common::Harness::new(|_| {}).await;
    let root = h.path("containers");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let p = Podman::new(&root);
    if let Some(why) = unavailable(&p) {
        return skipped("podman_containers_…", &why);
    }
    // The runtime's Engine API, as the agent asks it.
    let runtime_sock = root.join("podman.sock");
    let service = p
        .cmd(
            "podman",
            &[
                "system",
                "service",
                "--time=0",
                &format!("unix://{}", runtime_sock.display()),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let e = Engine::Podman(&p);
    let cleanup = Cleanup {
        e: &e,
        service,
        names: Vec::new(),
    };
    let (alpha_digest, beta_digest) = build_images(&p, &root);
    assert_ne!(alpha_digest, beta_digest);
    wait_for("podman system service", || runtime_sock.exists());
    // Entries by image digest (podman gives locally built images a repo digest).
    scenario(
        &h,
        cleanup,
        &root,
        &runtime_sock,
        [
            format!("container:image-digest:{alpha_digest}"),
            format!("container:image-digest:{beta_digest}"),
        ],
        Some(alpha_digest.clone()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_get_exactly_the_svids_their_image_and_labels_entitle_them_to() {
    let h = common::Harness::new(|_| {}).await;
    let root = h.path("containers");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let p = Podman::new(&root);
    if let Some(why) = unavailable(&p) {
        return skipped("docker_containers_…", &why);
    }
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
    };
    if !on_path("dockerd") || !on_path("docker") {
        return skipped(
            "docker_containers_…",
            "dockerd or docker is not installed (scripts/deps.sh --test: docker.io)",
        );
    }
    // A dockerd of this test's own (its own containerd namespace, state and socket; no
    // network), which builds nothing: the buildah images are loaded into it.
    let dk = root.join("dk");
    let runtime_sock = dk.join("docker.sock");
    let ns = format!("vouch-test-{}", std::process::id());
    let service = Command::new("dockerd")
        .arg("--data-root")
        .arg(dk.join("data"))
        .arg("--exec-root")
        .arg(dk.join("exec"))
        .arg("--pidfile")
        .arg(dk.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", runtime_sock.display()))
        .args([
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver",
            "vfs",
            "--containerd-namespace",
            &ns,
            "--containerd-plugins-namespace",
            &format!("{ns}-plugins"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("dockerd.log")).unwrap())
        .spawn()
        .unwrap();
    let e = Engine::Docker(runtime_sock.clone());
    let cleanup = Cleanup {
        e: &e,
        service,
        names: Vec::new(),
    };
    build_images(&p, &root);
    let t = Instant::now();
    while !(runtime_sock.exists() && e.try_cli(&["version"]).status.success()) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "dockerd did not start:\n{}",
            std::fs::read_to_string(root.join("dockerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for image in ["localhost/vouch-ct-alpha:1", "localhost/vouch-ct-beta:1"] {
        let tar = root.join("image.tar");
        let _ = std::fs::remove_file(&tar);
        p.run(
            "podman",
            &[
                "save",
                "--format",
                "docker-archive",
                "-o",
                tar.to_str().unwrap(),
                image,
            ],
        );
        e.cli(&["load", "-i", tar.to_str().unwrap()]);
    }
    // dockerd gives an image it did not pull or push no repo digest: entries by image name.
    scenario(
        &h,
        cleanup,
        &root,
        &runtime_sock,
        [
            "container:image-name:localhost/vouch-ct-alpha:1".to_string(),
            "container:image-name:localhost/vouch-ct-beta:1".to_string(),
        ],
        None,
    )
    .await;
}

/// Three containers — alpha and beta from their images, gamma from alpha's image with the
/// label app=beta set at run time — against entries naming `image` (alpha's, beta's) with the
/// app label, a label all carry, and alpha's image with beta's label. Each must get exactly
/// its SVIDs (asked once by exec, and on the open stream of its main process), a host process
/// none; when the node turns contraindicated every stream ends and nothing more is issued.
async fn scenario(
    h: &common::Harness,
    mut cleanup: Cleanup<'_>,
    root: &Path,
    runtime_sock: &Path,
    image: [String; 2],
    alpha_digest: Option<String>,
) {
    let e = cleanup.e;
    // The agent: its node attested affirming, the Workload API in a directory the containers
    // mount, container selectors from the runtime.
    let api_dir = root.join("api");
    std::fs::create_dir_all(&api_dir).unwrap();
    let sock = api_dir.join("api.sock");
    let container_cfg = vouch_agent::ContainerConfig {
        socket: runtime_sock.to_path_buf(),
        ..Default::default()
    };
    let mut agent = h
        .agent_with("svc", |c| {
            c.workload_api_socket = Some(sock.clone());
            c.container = Some(container_cfg);
        })
        .await;
    h.trust(&mut agent).await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    let w = "vouch:workload:svc".to_string();
    let td = "spiffe://vouch.local";
    let [alpha_image, beta_image] = image;
    h.add_entry(
        &format!("{td}/alpha"),
        &[
            w.clone(),
            alpha_image.clone(),
            "container:label:app:alpha".into(),
        ],
    )
    .await;
    h.add_entry(
        &format!("{td}/beta"),
        &[w.clone(), beta_image, "container:label:app:beta".into()],
    )
    .await;
    h.add_entry(
        &format!("{td}/team"),
        &[w.clone(), "container:label:team:pay".into()],
    )
    .await;
    h.add_entry(
        &format!("{td}/mixed"),
        &[w.clone(), alpha_image, "container:label:app:beta".into()],
    )
    .await;
    // A new entry revision for the agent.
    agent.attest_once().await.unwrap();

    let mount = format!("{}:/run/vouch", api_dir.display());
    for (name, image, extra) in [
        ("vouch-ct-alpha", "localhost/vouch-ct-alpha:1", None),
        ("vouch-ct-beta", "localhost/vouch-ct-beta:1", None),
        (
            "vouch-ct-gamma",
            "localhost/vouch-ct-alpha:1",
            Some("app=beta"),
        ),
    ] {
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "-v",
            &mount,
            "-e",
            "VOUCH_CT_ROLE=stream",
            "-e",
            "VOUCH_CT_SOCK=/run/vouch/api.sock",
        ];
        if let Some(l) = extra {
            args.extend(["--label", l]);
        }
        args.push(image);
        cleanup.names.push(name);
        let id = e.cli(&args);
        assert_eq!(id.len(), 64, "{id}");
    }

    // What the agent's attestor reads from the Engine API is what the runtime's own CLI says
    // (another client of the same state), and how long asking takes.
    let attestor = vouch_agent::ContainerAttestor::new(vouch_agent::ContainerConfig {
        socket: runtime_sock.to_path_buf(),
        ..Default::default()
    });
    let gamma = e.cli(&["inspect", "--format", "{{.Id}}", "vouch-ct-gamma"]);
    let gid = vouch_agent::ContainerId::parse(&gamma).unwrap();
    let t = Instant::now();
    let sel = attestor
        .selectors(std::slice::from_ref(&gid))
        .await
        .unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        attestor
            .selectors(std::slice::from_ref(&gid))
            .await
            .unwrap(),
        sel
    );
    let cached = t.elapsed();
    eprintln!(
        "container selectors from {}'s Engine API: {first:?} asked, {cached:?} cached",
        e.name()
    );
    let labels: std::collections::BTreeMap<String, String> = serde_json::from_str(&e.cli(&[
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        "vouch-ct-gamma",
    ]))
    .unwrap();
    let mut want_sel = vec![format!("container:id:{gamma}")];
    want_sel.extend(
        alpha_digest
            .iter()
            .map(|d| format!("container:image-digest:{d}")),
    );
    want_sel.push("container:image-name:localhost/vouch-ct-alpha:1".to_string());
    want_sel.extend(
        labels
            .iter()
            .map(|(k, v)| format!("container:label:{k}:{v}")),
    );
    assert_eq!(sel, want_sel);
    assert!(sel.contains(&"container:label:app:beta".to_string()));

    // Each gets exactly what its image and labels entitle it to, asked once (exec) and on the
    // open stream of its main process.
    let want = [
        ("vouch-ct-alpha", format!("OK {td}/alpha,{td}/team")),
        ("vouch-ct-beta", format!("OK {td}/beta,{td}/team")),
        ("vouch-ct-gamma", format!("OK {td}/mixed,{td}/team")),
    ];
    for (name, answer) in &want {
        let (x509, jwt) = fetch_in(e, name);
        assert_eq!(&x509, answer, "{name}");
        assert_eq!(jwt, answer.replacen("OK", "JWT", 1), "{name}");
        wait_for(&format!("{name}'s stream"), || {
            stream_lines(e, name).first() == Some(answer)
        });
    }
    // A process on the host (this test) is in no container: none of these entries is its.
    let mut host = vouch_agent::connect(&sock).await.unwrap();
    let r = host
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::PermissionDenied);

    // The node turns contraindicated (its workload's executable changes): every container's
    // stream ends with PermissionDenied and a new request gets nothing.
    std::fs::write(h.path("svc.bin"), "a different binary").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Contraindicated
    );
    for (name, answer) in &want {
        wait_for(&format!("{name}'s stream to end"), || {
            let lines = stream_lines(e, name);
            lines.first() == Some(answer)
                && lines
                    .iter()
                    .skip(1)
                    .any(|l| l.starts_with("ERR PermissionDenied"))
        });
        let (x509, jwt) = fetch_in(e, name);
        assert!(x509.starts_with("ERR PermissionDenied"), "{name}: {x509}");
        assert_eq!(jwt, "JWTERR PermissionDenied", "{name}");
        // Before: only its own SVIDs; after the first refusal: never any again.
        let lines = stream_lines(e, name);
        let cut = lines
            .iter()
            .position(|l| l.starts_with("ERR PermissionDenied"))
            .unwrap();
        assert!(
            lines[..cut].iter().all(|l| l == answer),
            "{name}: {lines:?}"
        );
        assert!(
            !lines[cut..].iter().any(|l| l.starts_with("OK")),
            "{name} got SVIDs after the node turned contraindicated: {lines:?}"
        );
    }
    api.stop().await.unwrap();
    drop(cleanup);
}
