//! The packages that deploy Vouch, each checked against the code it packages: the container
//! image is built (podman) from `packaging/Containerfile` and attests itself affirming; the
//! Kubernetes manifests are parsed and their ports, socket paths, audiences, image names and
//! configuration keys compared with the code's defaults (the real `Default` impls and config
//! types, so a changed default or a renamed key fails here); the systemd units pass
//! `systemd-analyze verify` and a bound on `systemd-analyze security`; the shell completions
//! and man pages generated from clap load in bash and render with `man`; and every command in
//! docs/KUBERNETES.md and docs/PRODUCTION.md names real subcommands, flags and files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vouch_agent::AgentConfig;
use vouch_server::ServerConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn vouch() -> &'static str {
    env!("CARGO_BIN_EXE_vouch")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/deps.sh --test installs it)"))
}

/// Run `cmd`, require success, return its stdout.
fn ok(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The top-level subcommands, from `vouch --help`.
fn subcommands() -> Vec<String> {
    let help = ok(Command::new(vouch()).arg("--help"));
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
            {
                names.push(name.to_string());
            }
        }
    }
    assert!(names.len() > 10, "too few subcommands in:\n{help}");
    names
}

// ---------------------------------------------------------------------------------------------
// Container image

/// Removes the images (by their own tags) a test built, whatever happens.
struct Images {
    conf: PathBuf,
    tags: Vec<String>,
}

impl Drop for Images {
    fn drop(&mut self) {
        for t in &self.tags {
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", &self.conf)
                .args(["rmi", "--force", t])
                .output();
        }
    }
}

/// podman with the settings this machine needs (runc, no default ulimits), and nothing else
/// of the host's podman configuration changed: the default storage, our own image names.
fn podman(conf: &Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf);
    c
}

/// Stands in for the distroless `static-debian12:nonroot` base, which cannot be pulled here:
/// the same passwd and group entries (root, nonroot 65532), an os-release and a /tmp, from
/// scratch. The image's libraries all come from packaging/rootfs.sh, as they do on it.
fn build_local_base(conf: &Path, dir: &Path, tag: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    for d in ["etc", "tmp", "home/nonroot"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    std::fs::write(
        dir.join("etc/os-release"),
        std::fs::read("/etc/os-release").unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("Containerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    ok(podman(conf)
        .args([
            "build",
            "--quiet",
            "--network",
            "none",
            "--pull=never",
            "-t",
            tag,
        ])
        .arg(dir));
}

/// Build the image from packaging/Containerfile as the test suite can: the build stage
/// replaced by packaging/rootfs.sh's tree made from the binary cargo built, the runtime base
/// by a local stand-in. The guard removes both images.
fn build_image(conf: &Path, tmp: &Path, unique: &str) -> (String, Images) {
    let base = format!("localhost/vouch-packaging-base:{unique}");
    let image = format!("localhost/vouch-packaging-test:{unique}");
    let cleanup = Images {
        conf: conf.to_path_buf(),
        tags: vec![image.clone(), base.clone()],
    };

    build_local_base(conf, &tmp.join("base"), &base);
    // The build stage's output, made by the same script from the binary cargo built.
    let ctx = tmp.join("build");
    ok(Command::new("sh")
        .arg(repo().join("packaging/rootfs.sh"))
        .arg(vouch())
        .arg(&ctx));
    assert!(
        ctx.join("rootfs/usr/share/vouch/policies/default.rego")
            .is_file()
    );
    assert!(
        ctx.join("rootfs/usr/share/man/man1/vouch-server.1")
            .is_file()
    );
    let empty = tmp.join("context");
    std::fs::create_dir(&empty).unwrap();
    ok(podman(conf)
        .args(["build", "--quiet", "--network", "none", "--pull=never"])
        .arg(format!("--build-arg=RUNTIME_IMAGE={base}"))
        .arg(format!("--build-context=build={}", ctx.display()))
        .arg("-f")
        .arg(repo().join("packaging/Containerfile"))
        .args(["-t", &image])
        .arg(&empty));
    (image, cleanup)
}

/// A name no other test run uses.
fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// The containers.conf this machine's podman needs (runc, no default ulimits).
fn containers_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    conf
}

#[test]
fn container_image_builds_and_attests_itself_affirming_as_a_non_root_user() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let conf = containers_conf(tmp.path());
    let unique = unique();
    let (image, _cleanup) = build_image(&conf, tmp.path(), &unique);
    let built = started.elapsed();

    // What the image declares matches the code's defaults.
    let inspect: Value =
        serde_json::from_str(&ok(podman(&conf).args(["image", "inspect", &image]))).unwrap();
    let cfg = &inspect[0]["Config"];
    assert_eq!(cfg["User"], "65532:65532", "{cfg}");
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/usr/local/bin/vouch"])
    );
    assert_eq!(cfg["Cmd"], serde_json::json!(["server"]));
    assert_eq!(cfg["WorkingDir"], "/var/lib/vouch");
    assert!(cfg["Volumes"].get("/var/lib/vouch").is_some(), "{cfg}");
    let port = ServerConfig::default().listen.port();
    assert!(
        cfg["ExposedPorts"].get(format!("{port}/tcp")).is_some(),
        "the image must expose the verifier's default port {port}: {cfg}"
    );
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Configured by a file, which a mounted one replaces whole; no VOUCH_SERVER_*/VOUCH_AGENT_*
    // variable that would silently override a mounted file.
    assert!(
        env.contains(&"VOUCH_CONFIG=/etc/vouch/vouch.toml"),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("VOUCH_SERVER_") || e.starts_with("VOUCH_AGENT_")),
        "{env:?}"
    );

    // Only the data directory belongs to that user; the rest of the tree to root.
    let root = ok(podman(&conf).args(["image", "mount", &image]));
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let root = Path::new(root.trim());
        for (p, owner, mode) in [
            ("var/lib/vouch", 65532, 0o700),
            ("var/lib", 0, 0o755),
            ("usr/local/bin/vouch", 0, 0o755),
            ("usr/share/vouch/policies/default.rego", 0, 0o644),
        ] {
            let m = std::fs::metadata(root.join(p)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.permissions().mode() & 0o777),
                (owner, owner, mode),
                "{p}"
            );
        }
    }
    // Its configuration file is valid for both roles, and listens on the default port.
    let text =
        std::fs::read_to_string(Path::new(root.trim()).join("etc/vouch/vouch.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let server: ServerConfig = table["server"].clone().try_into().unwrap();
    let agent: AgentConfig = table["agent"].clone().try_into().unwrap();
    assert_eq!(server.listen, ([0, 0, 0, 0], port).into());
    assert!(
        server.data_dir.starts_with("/var/lib/vouch")
            && agent.data_dir.starts_with("/var/lib/vouch")
    );
    ok(podman(&conf).args(["image", "unmount", &image]));

    let version = ok(podman(&conf).args(["run", "--rm", "--network", "none", &image, "--version"]));
    assert_eq!(
        version.trim(),
        format!("vouch {}", env!("CARGO_PKG_VERSION"))
    );

    // The whole flow inside: a verifier on SQLite, an agent enrolled with a join token,
    // attesting the container as it is, on a read-only root with state in a volume.
    let volume = format!("vouch-packaging-{unique}");
    ok(podman(&conf).args(["volume", "create", &volume]));
    let _volume = Volume {
        conf: conf.clone(),
        name: volume.clone(),
    };
    let mount = format!("{volume}:/var/lib/vouch");
    let dev_once = |json: bool| {
        let mut c = podman(&conf);
        c.args([
            "run",
            "--rm",
            "--network",
            "none",
            // Read-only with no tmpfs on /tmp either, as readOnlyRootFilesystem on Kubernetes.
            "--read-only",
            "--read-only-tmpfs=false",
            "-v",
            &mount,
            &image,
        ]);
        c.args(["dev", "--once"]);
        if json {
            c.arg("--json");
        }
        let o = output(&mut c);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(
            o.status.success(),
            "{}\nstdout: {out}\nstderr: {err}",
            o.status
        );
        out
    };
    // That root is really read-only, /tmp included: state put there is refused.
    let o = output(podman(&conf).args([
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--read-only-tmpfs=false",
        &image,
        "dev",
        "--once",
        "--dir",
        "/tmp/vouch",
    ]));
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Read-only"),
        "{o:?}"
    );
    let t = std::time::Instant::now();
    let ear: Value = serde_json::from_str(&dev_once(true)).unwrap();
    assert_eq!(
        ear["submods"]["workload"]["ear.status"], "affirming",
        "{ear}"
    );
    assert_eq!(ear["eat_profile"], "tag:github.com,2023:veraison/ear");
    eprintln!(
        "image built in {:.1}s, `vouch dev --once` in it took {:.1}s",
        built.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    // The state is in the volume, written by the image's user (65532, not root), and a second
    // container on it reuses the enrollment.
    let mountpoint =
        ok(podman(&conf).args(["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]));
    let agent_state = Path::new(mountpoint.trim()).join(".vouch/dev/agent/enrollment.json");
    let db = Path::new(mountpoint.trim()).join(".vouch/dev/server/vouch.db");
    {
        use std::os::unix::fs::MetadataExt as _;
        for f in [&agent_state, &db] {
            let m = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!((m.uid(), m.gid()), (65532, 65532), "{}", f.display());
        }
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let m = std::fs::metadata(mountpoint.trim()).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o777,
            0o700,
            "the data directory is private"
        );
    }
    let enrolled = std::fs::read(&agent_state).unwrap();
    assert!(dev_once(false).contains("affirming"));
    assert_eq!(std::fs::read(&agent_state).unwrap(), enrolled);
}

/// Removes the volume a test made.
struct Volume {
    conf: PathBuf,
    name: String,
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .env("CONTAINERS_CONF", &self.conf)
            .args(["volume", "rm", "--force", &self.name])
            .output();
    }
}

// ---------------------------------------------------------------------------------------------
// Shell completions and man pages

/// Ask bash to complete `line` with the generated script loaded (as bash-completion would),
/// in a shell that reads no startup file.
fn bash_complete(script: &Path, line: &str) -> Vec<String> {
    let prog = r#"set -e
source "$1"
complete -p vouch >/dev/null
read -ra COMP_WORDS <<<"$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
prev=""
((COMP_CWORD > 0)) && prev="${COMP_WORDS[COMP_CWORD-1]}"
_vouch vouch "${COMP_WORDS[COMP_CWORD]}" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    ok(Command::new("bash")
        .args(["--noprofile", "--norc", "-c", prog, "bash"])
        .arg(script)
        .arg(line))
    .lines()
    .map(|l| l.trim().to_string())
    .filter(|l| !l.is_empty())
    .collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let script = ok(Command::new(vouch()).args(["completions", "bash"]));
    let path = tmp.path().join("vouch.bash");
    std::fs::write(&path, &script).unwrap();
    let all = bash_complete(&path, "vouch ");
    for s in subcommands() {
        assert!(
            all.contains(&s),
            "`vouch <TAB>` does not offer {s}: {all:?}"
        );
    }
    assert_eq!(bash_complete(&path, "vouch ent"), ["entry"]);
    let entry = bash_complete(&path, "vouch entry ");
    for s in ["create", "list", "show", "delete"] {
        assert!(entry.contains(&s.to_string()), "{entry:?}");
    }
    let flags = bash_complete(&path, "vouch entry create --");
    for f in ["--spiffe-id", "--selector", "--ttl", "--data-dir"] {
        assert!(flags.contains(&f.to_string()), "{flags:?}");
    }
    // The other shells' scripts are generated from the same definition.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let s = ok(Command::new(vouch()).args(["completions", shell]));
        assert!(s.contains("entry") && s.contains("spiffe-id"), "{shell}");
    }
    let o = output(Command::new(vouch()).args(["completions", "tcsh"]));
    assert!(!o.status.success(), "an unknown shell must be refused");
}

/// Render a man page with man-db (`man -l`, groff underneath) and return the text; any
/// warning from the formatter fails.
fn render_man(page: &Path) -> String {
    let o = output(
        Command::new("man")
            .env("MANWIDTH", "120")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .arg("-l")
            .arg(page),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "{}: {err}",
        page.display()
    );
    // groff's own check of the source, every warning on.
    let g = output(
        Command::new("groff")
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(page),
    );
    let gerr = String::from_utf8_lossy(&g.stderr);
    assert!(
        g.status.success() && gerr.trim().is_empty(),
        "{}: {gerr}",
        page.display()
    );
    // Strip backspace overstriking, should a pager setting leave it in.
    let text = String::from_utf8_lossy(&o.stdout);
    let mut clean = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            clean.pop();
        } else {
            clean.push(c);
        }
    }
    clean
}

#[test]
fn man_pages_render_and_list_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("vouch.1");
    std::fs::write(&page, ok(Command::new(vouch()).arg("man"))).unwrap();
    let text = render_man(&page);
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    let subs = subcommands();
    for s in &subs {
        assert!(
            text.contains(&format!("vouch-{s}(1)")),
            "{s} missing from:\n{text}"
        );
    }

    // One page per command, nested ones included, each rendering cleanly.
    let dir = tmp.path().join("man1");
    let listed = ok(Command::new(vouch()).arg("man").arg("--dir").arg(&dir));
    let mut want: Vec<String> = subs.iter().map(|s| format!("vouch-{s}.1")).collect();
    want.extend(["vouch.1", "vouch-entry-create.1", "vouch-policy-add.1"].map(String::from));
    for w in &want {
        assert!(dir.join(w).is_file(), "{w} not written: {listed}");
        assert!(listed.contains(w.as_str()), "{w} not listed: {listed}");
    }
    let create = render_man(&dir.join("vouch-entry-create.1"));
    assert!(
        create.contains("--spiffe-id") && create.contains("--selector"),
        "{create}"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd units

/// `Key=value` lines of a unit file (every value of a repeated key, in order).
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    m
}

fn one<'a>(m: &'a BTreeMap<String, Vec<String>>, k: &str) -> &'a str {
    match m.get(k).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{k}: expected one value, got {other:?}"),
    }
}

/// `systemd-analyze verify` the unit (with its ExecStart pointed at the binary cargo built,
/// since verify requires the executable to exist, and the man pages generated from clap on
/// MANPATH, since verify checks `Documentation=man:` links), then its exposure score.
fn verify_unit(name: &str, max_exposure: f64) -> BTreeMap<String, Vec<String>> {
    let text = read(&format!("packaging/systemd/{name}"));
    let settings = unit_settings(&text);
    let exec = one(&settings, "ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(
        args[0], "/usr/local/bin/vouch",
        "the path the docs install to"
    );
    // The command line parses: clap answers --help after the same subcommand and flags.
    let mut help = Command::new(vouch());
    help.args(&args[1..]).arg("--help");
    ok(&mut help);

    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man");
    ok(Command::new(vouch())
        .arg("man")
        .arg("--dir")
        .arg(man.join("man1")));
    let unit = tmp.path().join(name);
    std::fs::write(&unit, text.replace("/usr/local/bin/vouch", vouch())).unwrap();
    let o = output(
        Command::new("systemd-analyze")
            .env("MANPATH", &man)
            .arg("verify")
            .arg(&unit),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify {name}: {}\n{err}",
        o.status
    );
    let o = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, s)| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        score <= max_exposure,
        "{name}: exposure {score} > {max_exposure}:\n{text}"
    );
    eprintln!("{name}: systemd-analyze security exposure {score}");
    settings
}

#[test]
fn systemd_units_verify_and_stay_hardened() {
    let s = verify_unit("vouch-server.service", 2.0);
    assert_eq!(one(&s, "DynamicUser"), "yes");
    assert_eq!(one(&s, "StateDirectory"), "vouch");
    assert_eq!(one(&s, "ProtectSystem"), "strict");
    assert_eq!(one(&s, "NoNewPrivileges"), "yes");
    assert_eq!(
        one(&s, "CapabilityBoundingSet"),
        "",
        "the verifier needs no capability"
    );
    assert!(one(&s, "ExecStart").ends_with(" server"));
    // Its data directory is the state directory.
    assert!(s["Environment"].contains(&"VOUCH_SERVER_DATA_DIR=/var/lib/vouch".to_string()));
    // It needs no privileged port: the default one is above 1023.
    assert!(ServerConfig::default().listen.port() > 1023);

    let a = verify_unit("vouch-agent.service", 3.5);
    assert_eq!(one(&a, "StateDirectory"), "vouch-agent");
    assert!(a["Environment"].contains(&"VOUCH_AGENT_DATA_DIR=/var/lib/vouch-agent".to_string()));
    assert_eq!(one(&a, "ProtectSystem"), "strict");
    assert_eq!(one(&a, "NoNewPrivileges"), "yes");
    assert_eq!(
        one(&a, "CapabilityBoundingSet"),
        "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"
    );
    // The Workload API socket lives in the runtime directory, the same path as on Kubernetes.
    let exec: Vec<&str> = one(&a, "ExecStart").split_whitespace().collect();
    let socket = exec
        .windows(2)
        .find(|w| w[0] == "--workload-api-socket")
        .map(|w| w[1])
        .expect("the agent unit serves the Workload API");
    assert_eq!(
        Path::new(socket).parent().unwrap(),
        Path::new("/run").join(one(&a, "RuntimeDirectory"))
    );
    assert_eq!(socket, AGENT_SOCKET);
    // The configuration file it reads, as shipped, is a valid [agent] section that leaves the
    // state directory and the socket to the unit (the environment and the flag override it).
    let exec: Vec<&str> = one(&a, "ExecStart").split_whitespace().collect();
    let config = exec.windows(2).find(|w| w[0] == "--config").unwrap()[1];
    assert_eq!(config, "/etc/vouch/agent.toml");
    let text = read("packaging/systemd/agent.toml");
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table.keys().collect::<Vec<_>>(), ["agent"]);
    let shipped: AgentConfig = table["agent"].clone().try_into().unwrap();
    assert!(shipped.workload_api_socket.is_none() && shipped.ca_cert.is_some());
    assert_eq!(shipped.trust_domain, AgentConfig::default().trust_domain);
    let t = table["agent"].as_table().unwrap();
    assert!(!t.contains_key("data_dir") && !t.contains_key("join_token"));
    // The TPM resource manager stays reachable: an allowed device, not hidden by PrivateDevices.
    assert_eq!(one(&a, "DeviceAllow"), "/dev/tpmrm0 rw");
    assert!(!a.contains_key("PrivateDevices"));
    // A missing supplementary group would stop the unit from starting at all: the group is
    // made by Debian's tpm-udev, which the TPM libraries vouch links against depend on.
    let group = one(&a, "SupplementaryGroups");
    ok(Command::new("getent").args(["group", group]));
}

/// Where every package puts the agent's Workload API socket.
const AGENT_SOCKET: &str = "/run/vouch-agent/api.sock";

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// Every document of every file kustomization.yaml lists, by (kind, name).
fn manifests() -> BTreeMap<(String, String), Value> {
    let dir = repo().join("packaging/kubernetes");
    let kust: Value =
        serde_norway::from_str(&read("packaging/kubernetes/kustomization.yaml")).unwrap();
    assert_eq!(kust["kind"], "Kustomization");
    let listed: BTreeSet<String> = kust["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    // No manifest left out of the kustomization by mistake.
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    let mut docs = BTreeMap::new();
    for f in &listed {
        for d in parse_yaml_docs(&dir.join(f)) {
            let key = (
                d["kind"].as_str().unwrap().to_string(),
                d["metadata"]["name"].as_str().unwrap().to_string(),
            );
            if d["kind"] != "Namespace" && !d["kind"].as_str().unwrap().starts_with("Cluster") {
                assert_eq!(d["metadata"]["namespace"], kust["namespace"], "{key:?}");
            }
            assert!(docs.insert(key.clone(), d).is_none(), "{key:?} twice");
        }
    }
    docs
}

fn parse_yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn get<'a>(docs: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    docs.get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A ConfigMap's TOML file, one section, into the code's own config type: its
/// `deny_unknown_fields` makes a misspelt or removed key fail here.
fn config_section<T: serde::de::DeserializeOwned>(cm: &Value, section: &str) -> (T, toml::Table) {
    let text = cm["data"]["vouch.toml"].as_str().unwrap();
    let table: toml::Table = toml::from_str(text).unwrap();
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        [section],
        "one [{section}] section"
    );
    let s = table[section].as_table().unwrap().clone();
    (toml::Value::Table(s.clone()).try_into().unwrap(), s)
}

/// The one container of a workload's pod template.
fn container(w: &Value) -> &Value {
    let c = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(c.len(), 1);
    &c[0]
}

static NULL: Value = Value::Null;

/// The volume mounted at the mount point holding `path`, with the mount, e.g. the Secret a
/// file configured in TOML comes from (null for a StatefulSet's volume claim).
fn volume_for<'a>(pod: &'a Value, c: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    let m = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let mp = m["mountPath"].as_str().unwrap();
            Path::new(path).starts_with(mp)
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
        .unwrap_or_else(|| panic!("{path} is on no volume of {}", c["name"]));
    let v = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or(&NULL);
    (v, m)
}

fn env_value<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{} has no env {name}", c["name"]))
}

/// The image the manifests run, as docs/KUBERNETES.md builds it.
fn image_name() -> String {
    format!("localhost/vouch:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn kubernetes_manifests_match_the_code_defaults() {
    let docs = manifests();
    let sd = ServerConfig::default();
    let ad = AgentConfig::default();

    // The verifier.
    let (server, server_toml): (ServerConfig, _) =
        config_section(get(&docs, "ConfigMap", "vouch-server-config"), "server");
    assert_eq!(server.listen.port(), sd.listen.port());
    assert!(
        server.listen.ip().is_unspecified(),
        "reachable from other pods"
    );
    assert_eq!(server.audience, sd.audience);
    assert_eq!(server.trust_domain, sd.trust_domain);
    assert!(!server.insecure_http && !server.allow_sample_evidence);
    assert!(
        !server_toml.contains_key("database_url"),
        "the DSN is a secret, not in a ConfigMap"
    );
    let svc = get(&docs, "Service", "vouch-server");
    let sts = get(&docs, "StatefulSet", "vouch-server");
    let pod = &sts["spec"]["template"]["spec"];
    let c = container(sts);
    assert_eq!(c["image"], image_name());
    assert_eq!(c["args"], serde_json::json!(["server"]));
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["port"], sd.listen.port());
    let cport = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port["targetPort"])
        .expect("the Service's targetPort names a container port");
    assert_eq!(cport["containerPort"], sd.listen.port());
    assert_eq!(
        svc["spec"]["selector"],
        sts["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(pod["serviceAccountName"], "vouch-server");
    assert_eq!(
        pod["securityContext"]["runAsUser"], 65532,
        "the image's user"
    );
    // The configuration file is where VOUCH_CONFIG says, and each file it names is on the
    // right kind of volume: TLS material and the nonce key from Secrets, state on the claim.
    let cfg_path = env_value(c, "VOUCH_CONFIG")["value"].as_str().unwrap();
    let (v, m) = volume_for(pod, c, cfg_path);
    assert_eq!(v["configMap"]["name"], "vouch-server-config");
    assert_eq!(m["subPath"], "vouch.toml");
    for (p, secret) in [
        (server.tls_cert.as_ref().unwrap(), "vouch-server-tls"),
        (server.tls_key.as_ref().unwrap(), "vouch-server-tls"),
        (server.nonce_key.as_ref().unwrap(), "vouch-server-keys"),
    ] {
        let (v, _) = volume_for(pod, c, p.to_str().unwrap());
        assert_eq!(v["secret"]["secretName"], secret, "{}", p.display());
    }
    let (v, m) = volume_for(pod, c, server.data_dir.to_str().unwrap());
    assert!(v.is_null(), "data_dir on no pod volume but a claim: {v}");
    let claims: Vec<&Value> = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["metadata"]["name"])
        .collect();
    assert!(
        claims.contains(&&m["name"]),
        "data_dir on a persistent volume"
    );
    let dsn = &env_value(c, "VOUCH_SERVER_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(dsn["name"], "vouch-db");
    // The probes ask for paths the verifier serves.
    let routes = read("crates/vouch-server/src/routes.rs");
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = &c[probe]["httpGet"];
        assert_eq!(p["scheme"], "HTTPS");
        assert_eq!(p["port"], port["targetPort"]);
        let path = p["path"].as_str().unwrap();
        assert!(
            routes.contains(&format!(".route(\"{path}\"")),
            "{probe} {path}"
        );
    }

    // The agent.
    let (agent, _): (AgentConfig, _) =
        config_section(get(&docs, "ConfigMap", "vouch-agent-config"), "agent");
    assert_eq!(agent.trust_domain, ad.trust_domain);
    assert_eq!(agent.trust_domain, server.trust_domain);
    let url = &agent.servers[0];
    assert_eq!(
        url,
        &format!(
            "https://{}.{}.svc:{}",
            svc["metadata"]["name"].as_str().unwrap(),
            svc["metadata"]["namespace"].as_str().unwrap(),
            port["port"]
        )
    );
    let ds = get(&docs, "DaemonSet", "vouch-agent");
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(ds);
    assert_eq!(c["image"], image_name());
    assert_eq!(c["args"], serde_json::json!(["agent"]));
    assert_eq!(pod["serviceAccountName"], "vouch-agent");
    assert_eq!(
        pod["hostPID"], true,
        "callers are identified by their host /proc entries"
    );
    let cfg_path = env_value(c, "VOUCH_CONFIG")["value"].as_str().unwrap();
    assert_eq!(
        volume_for(pod, c, cfg_path).0["configMap"]["name"],
        "vouch-agent-config"
    );
    let (v, _) = volume_for(pod, c, agent.ca_cert.as_ref().unwrap().to_str().unwrap());
    assert_eq!(v["configMap"]["name"], "vouch-ca");
    let (v, _) = volume_for(pod, c, agent.data_dir.to_str().unwrap());
    assert_eq!(
        v["hostPath"]["path"],
        agent.data_dir.to_str().unwrap(),
        "survives restarts"
    );
    // The socket is on a hostPath directory at the same path on the node and in the pod, the
    // path the systemd unit and the example client use.
    let socket = agent.workload_api_socket.as_ref().unwrap();
    assert_eq!(socket, Path::new(AGENT_SOCKET));
    let dir = socket.parent().unwrap().to_str().unwrap();
    let (v, m) = volume_for(pod, c, socket.to_str().unwrap());
    assert_eq!(m["mountPath"], dir);
    assert_eq!(v["hostPath"]["path"], dir);
    // The kubelet, for k8s: selectors, on the host's loopback: only with the host's network.
    let k8s = agent.k8s.as_ref().expect("[agent.k8s]: k8s selectors on");
    let kubelet = k8s.kubelet_url.strip_prefix("https://").unwrap();
    assert!(kubelet.starts_with("127.0.0.1:") || kubelet.starts_with("localhost:"));
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["dnsPolicy"], "ClusterFirstWithHostNet",
        "to resolve the Service"
    );
    assert_ne!(
        pod["automountServiceAccountToken"],
        false,
        "{}",
        k8s.token_path.display()
    );
    // Only the capabilities the systemd unit bounds the agent to.
    let caps: Vec<String> = c["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    let unit = unit_settings(&read("packaging/systemd/vouch-agent.service"));
    assert_eq!(caps.join(" "), one(&unit, "CapabilityBoundingSet"));
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    // The projected token for k8s_psat: audience the verifier's, mounted read-only.
    let token = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten())
        .find_map(|s| s.get("serviceAccountToken"))
        .expect("a projected service-account token");
    assert_eq!(token["audience"], sd.audience);
    assert_eq!(token["audience"], server.audience);
    // The shortest lifetime the API server allows: a token read off the node is a replay
    // window of that long (SECURITY.md, Kubernetes).
    assert_eq!(token["expirationSeconds"].as_u64(), Some(600));

    // k8s_psat: the verifier accepts it for this token's audience, from the agents' service
    // account only, with the issuer's keys on a mounted ConfigMap; the agent sends that token.
    assert!(
        server.accepts_node_attestor("k8s_psat"),
        "{:?}",
        server.node_attestors
    );
    let psat: vouch_nodeattest::k8s_psat::K8sPsatConfig =
        serde_json::from_value(server.node_attestor["k8s_psat"].clone()).unwrap();
    let cluster = &psat.clusters[0];
    assert_eq!(cluster.audience, token["audience"].as_str().unwrap());
    assert_eq!(
        cluster.service_account_allow_list,
        [format!(
            "{}:{}",
            ds["metadata"]["namespace"].as_str().unwrap(),
            pod["serviceAccountName"].as_str().unwrap()
        )]
    );
    let spod = &sts["spec"]["template"]["spec"];
    let (v, _) = volume_for(spod, container(sts), cluster.jwks.to_str().unwrap());
    assert_eq!(v["configMap"]["name"], "vouch-k8s-jwks");
    let join = agent
        .node_attestation
        .as_ref()
        .expect("[agent.node_attestation]");
    assert_eq!(join.method, "k8s_psat");
    let data_file = join.data_file.as_ref().unwrap();
    let (v, m) = volume_for(pod, c, data_file.to_str().unwrap());
    assert!(v["projected"]["sources"].is_array());
    assert_eq!(
        Path::new(m["mountPath"].as_str().unwrap()).join(token["path"].as_str().unwrap()),
        *data_file
    );

    // The example workload reaches the same socket.
    let client =
        &parse_yaml_docs(&repo().join("packaging/kubernetes/examples/svid-client.yaml"))[0];
    let cc = &client["spec"]["containers"][0];
    let cmd: Vec<&str> = cc["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd.windows(2).find(|w| w[0] == "-socketPath").unwrap()[1],
        AGENT_SOCKET
    );
    assert_eq!(
        env_value(cc, "SPIFFE_ENDPOINT_SOCKET")["value"],
        format!("unix://{AGENT_SOCKET}")
    );
    let (v, _) = volume_for(&client["spec"], cc, AGENT_SOCKET);
    assert_eq!(v["hostPath"]["path"], dir);

    // RBAC: each service account is bound to its role; the verifier may read the issuer's
    // discovery document and keys (k8s_psat checks tokens offline against them) and nothing
    // else: no token reviews, no nodes, no pods.
    for name in ["vouch-server", "vouch-agent"] {
        get(&docs, "ServiceAccount", name);
        let b = get(&docs, "ClusterRoleBinding", name);
        assert_eq!(b["roleRef"]["name"], name);
        assert_eq!(b["subjects"][0]["name"], name);
        get(&docs, "ClusterRole", name);
    }
    let rules = get(&docs, "ClusterRole", "vouch-server")["rules"]
        .as_array()
        .unwrap();
    assert_eq!(
        rules,
        &vec![serde_json::json!({
            "nonResourceURLs": ["/.well-known/openid-configuration", "/openid/v1/jwks"],
            "verbs": ["get"],
        })]
    );

    // Both commands parse as the binary's own command line.
    for args in [["server", "--help"], ["agent", "--help"]] {
        ok(Command::new(vouch()).args(args));
    }
}

// ---------------------------------------------------------------------------------------------
// Docs: every command in them is real

/// The shell commands of a Markdown file's ```sh blocks: continuation lines joined, comments
/// dropped.
fn doc_commands(rel: &str) -> Vec<String> {
    let text = read(rel);
    let mut cmds = Vec::new();
    let mut inside = false;
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line == "```sh" && !inside;
            continue;
        }
        if !inside {
            continue;
        }
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(l) = line.strip_suffix('\\') {
            cur.push_str(l.trim());
            cur.push(' ');
            continue;
        }
        cur.push_str(line);
        cmds.push(std::mem::take(&mut cur));
    }
    assert!(cur.is_empty(), "{rel}: a command ends in a continuation");
    cmds
}

/// The subcommand paths of the binary (`entry create` as `["entry", "create"]`), from the man
/// pages clap generates for each.
fn command_paths() -> BTreeSet<Vec<String>> {
    let tmp = tempfile::tempdir().unwrap();
    ok(Command::new(vouch())
        .arg("man")
        .arg("--dir")
        .arg(tmp.path()));
    std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            let p = n.strip_suffix(".1")?.strip_prefix("vouch-")?.to_string();
            Some(p.split('-').map(String::from).collect::<Vec<_>>())
        })
        .collect()
}

/// Check one `vouch …` command line: its subcommand exists, every flag it passes is one that
/// subcommand takes, and each `--selector` parses as the verifier parses selectors.
fn check_vouch_command(
    words: &[&str],
    paths: &BTreeSet<Vec<String>>,
    helps: &mut BTreeMap<Vec<String>, String>,
) {
    // Longest run of leading non-flag words that is a subcommand (words after it are values,
    // such as `refvalue add executable NAME HASH`). Subcommand names with a hyphen do not
    // occur at the top of any path used here.
    let plain: Vec<String> = words
        .iter()
        .take_while(|w| !w.starts_with('-'))
        .map(|w| w.to_string())
        .collect();
    let path = (1..=plain.len())
        .rev()
        .map(|n| plain[..n].to_vec())
        .find(|p| paths.contains(p))
        .unwrap_or_else(|| panic!("`vouch {}`: no such subcommand", words.join(" ")));
    let help = helps
        .entry(path.clone())
        .or_insert_with(|| ok(Command::new(vouch()).args(&path).arg("--help")));
    for w in words {
        if let Some(flag) = w.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.contains(&format!("--{flag}")),
                "`vouch {}`: `vouch {}` takes no --{flag}",
                words.join(" "),
                path.join(" ")
            );
        }
    }
    for s in words.windows(2).filter(|w| w[0] == "--selector") {
        vouch_identity::Selector::parse(s[1]).unwrap_or_else(|e| panic!("selector {}: {e}", s[1]));
    }
}

/// What a doc's commands create and use, for the cross-checks.
#[derive(Default, Debug)]
struct DocFacts {
    /// `kubectl create secret|configmap <kind> NAME`, by name.
    created: BTreeSet<String>,
    /// Tags given to `podman build -t`.
    tags: BTreeSet<String>,
}

/// Check every command of a doc: `vouch` lines against the binary, repository paths exist,
/// and only tools from a known list appear (each with what is checked of it).
fn check_doc(rel: &str) -> DocFacts {
    let paths = command_paths();
    let mut helps = BTreeMap::new();
    let mut facts = DocFacts::default();
    let cmds = doc_commands(rel);
    assert!(cmds.len() >= 5, "{rel}: {cmds:?}");
    let repo_path = |p: &str| {
        let p = p.trim_end_matches('/');
        if p.starts_with("packaging/") || p == "vouch.example.toml" {
            assert!(repo().join(p).exists(), "{rel}: {p} does not exist");
        }
    };
    for cmd in &cmds {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        for w in &words {
            repo_path(w.split('=').next_back().unwrap());
        }
        match words[0] {
            "vouch" => check_vouch_command(&words[1..], &paths, &mut helps),
            "kubectl" => {
                let verb = words
                    .iter()
                    .skip(1)
                    .find(|w| !w.starts_with('-') && **w != "vouch")
                    .copied();
                // `kubectl -n NS exec POD -- vouch …`: the part after `--` is a vouch command.
                if let Some(i) = words.iter().position(|w| *w == "--") {
                    assert_eq!(words[i + 1], "vouch", "{cmd}");
                    check_vouch_command(&words[i + 2..], &paths, &mut helps);
                }
                if let Some(i) = words.iter().position(|w| *w == "create") {
                    match words.get(i + 1).copied() {
                        Some("secret") => {
                            facts.created.insert(words[i + 3].to_string());
                        }
                        Some("configmap") => {
                            facts.created.insert(words[i + 2].to_string());
                        }
                        _ => {}
                    }
                }
                let known = [
                    "-n", "create", "apply", "exec", "rollout", "logs", "get", "delete",
                ];
                assert!(
                    words[1..].iter().any(|w| known.contains(w)) && verb.is_some(),
                    "{rel}: unchecked kubectl command: {cmd}"
                );
            }
            "podman" => {
                assert!(["build", "save"].contains(&words[1]), "{rel}: {cmd}");
                if let Some(i) = words.iter().position(|w| *w == "-t") {
                    facts.tags.insert(words[i + 1].to_string());
                }
            }
            // Run by the TLS test (openssl, head) or only moving files; their arguments'
            // repository paths are checked above.
            "openssl" | "head" | "kind" | "minikube" | "install" | "systemctl" | "cargo"
            | "sqlite3" | "tar" | "pg_dump" => {}
            other => panic!("{rel}: `{other}` is not a tool this test knows how to check: {cmd}"),
        }
    }
    facts
}

#[test]
fn kubernetes_quickstart_commands_are_real_and_match_the_manifests() {
    let facts = check_doc("docs/KUBERNETES.md");
    assert_eq!(
        facts.tags,
        BTreeSet::from([image_name()]),
        "the image the manifests run"
    );
    // Every Secret and ConfigMap the manifests need, and do not make themselves, is created.
    let docs = manifests();
    let mut needed = BTreeSet::new();
    for ((kind, _), d) in &docs {
        if !["StatefulSet", "DaemonSet"].contains(&kind.as_str()) {
            continue;
        }
        let pod = &d["spec"]["template"]["spec"];
        for v in pod["volumes"].as_array().unwrap() {
            if let Some(n) = v["secret"]["secretName"].as_str() {
                needed.insert(n.to_string());
            }
            if let Some(n) = v["configMap"]["name"].as_str()
                && !docs.contains_key(&("ConfigMap".to_string(), n.to_string()))
            {
                needed.insert(n.to_string());
            }
        }
        for e in container(d)["env"].as_array().unwrap() {
            let r = &e["valueFrom"]["secretKeyRef"];
            if let Some(n) = r["name"].as_str() {
                // Optional ones are created in the doc too (the join token), but need not be.
                if r["optional"] != true {
                    needed.insert(n.to_string());
                }
            }
        }
    }
    assert!(
        needed.contains("vouch-db") && needed.contains("vouch-ca"),
        "{needed:?}"
    );
    let missing: Vec<_> = needed.difference(&facts.created).collect();
    assert!(
        missing.is_empty(),
        "KUBERNETES.md never creates {missing:?}"
    );
    // Each key a workload reads from a Secret (the join token's too) is the key the doc gives.
    let cmds = doc_commands("docs/KUBERNETES.md");
    for ((kind, _), d) in &docs {
        if !["StatefulSet", "DaemonSet"].contains(&kind.as_str()) {
            continue;
        }
        for e in container(d)["env"].as_array().unwrap() {
            let r = &e["valueFrom"]["secretKeyRef"];
            let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) else {
                continue;
            };
            let create = cmds
                .iter()
                .find(|c| c.contains(&format!("create secret generic {name} ")))
                .unwrap_or_else(|| panic!("KUBERNETES.md never creates the Secret {name}"));
            assert!(
                create.contains(&format!("--from-literal={key}="))
                    || create.contains(&format!("--from-file={key}")),
                "{create} does not set {key}"
            );
        }
    }
    // The example database is the one the DSN in the doc names.
    let text = read("docs/KUBERNETES.md");
    let pg = &parse_yaml_docs(&repo().join("packaging/kubernetes/examples/postgres.yaml"));
    let svc = pg.iter().find(|d| d["kind"] == "Service").unwrap();
    let host = format!(
        "@{}.{}.svc:{}/",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap(),
        svc["spec"]["ports"][0]["port"]
    );
    assert!(text.contains(&host), "the DSN must name {host}");
}

#[test]
fn production_guide_commands_are_real() {
    check_doc("docs/PRODUCTION.md");
    let text = read("docs/PRODUCTION.md");
    // The paths it gives are the units' own.
    let server = unit_settings(&read("packaging/systemd/vouch-server.service"));
    let state = format!("/var/lib/{}", one(&server, "StateDirectory"));
    assert!(
        text.contains(&format!("sqlite3 {state}/vouch.db")),
        "{state}"
    );
    let agent = unit_settings(&read("packaging/systemd/vouch-agent.service"));
    assert!(text.contains(&format!("/var/lib/{}", one(&agent, "StateDirectory"))));
    assert!(text.contains(AGENT_SOCKET));
}

/// The "Which files are secrets" table of PRODUCTION.md against what a real verifier and agent
/// write (`vouch dev --once`): every file created private (mode 0600) is listed as a secret,
/// every file listed is one they write (or a configured one), and none listed as not secret is
/// private.
#[test]
fn production_guide_lists_every_secret_file_vouch_writes() {
    use std::os::unix::fs::PermissionsExt as _;
    let text = read("docs/PRODUCTION.md");
    let start = text.find("## Which files are secrets").unwrap();
    let table = &text[start..];
    let mut listed: Vec<(String, bool)> = Vec::new();
    for row in table
        .lines()
        .skip_while(|l| !l.starts_with("| File"))
        .skip(2)
    {
        if !row.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let secret = match cells[2] {
            "yes" => true,
            "no" => false,
            other => panic!("secret column must say yes or no: {other}"),
        };
        // Every backticked file name in the first cell (`keys/<kid>.p8`, agent `agent.key`),
        // not the configuration keys beside them (`nonce_key`, `[server.gossip] key_file`).
        for (i, part) in cells[1].split('`').enumerate() {
            if i % 2 == 1 && !part.starts_with('[') && (part.contains('.') || part.contains('/')) {
                listed.push((part.to_string(), secret));
            }
        }
    }
    assert!(listed.len() > 10, "{listed:?}");
    let matches = |pattern: &str, rel: &str| {
        let re = pattern.replace("<kid>", "*");
        match re.split_once('*') {
            Some((a, b)) => rel.starts_with(a) && rel.ends_with(b) && rel.len() > a.len() + b.len(),
            None => rel == re,
        }
    };

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    ok(Command::new(vouch())
        .args(["dev", "--once"])
        .arg("--dir")
        .arg(&dir));
    let mut files = Vec::new();
    for (root, base) in [(dir.join("server"), "server"), (dir.join("agent"), "agent")] {
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel.ends_with("-wal") || rel.ends_with("-shm") {
                    continue; // SQLite's own companions of vouch.db
                }
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                files.push((base, rel, mode));
            }
        }
    }
    for (base, rel, mode) in &files {
        let row = listed
            .iter()
            .find(|(pat, _)| matches(pat, rel))
            .unwrap_or_else(|| panic!("{base} writes {rel} (mode {mode:o}), not in the table"));
        if mode & 0o077 == 0 {
            assert!(
                row.1,
                "{base} {rel} is private (mode {mode:o}) but listed as not secret"
            );
        }
        if row.1 {
            assert_eq!(mode & 0o077, 0, "{rel} is a secret but mode {mode:o}");
        }
    }
    // Every file the table names is one Vouch writes.
    for (pat, _) in &listed {
        assert!(
            files.iter().any(|(_, rel, _)| matches(pat, rel)),
            "the table lists {pat}, which vouch dev did not write"
        );
    }
}

/// Kills the child process it holds when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Step 2 of the Kubernetes quickstart, run: the openssl and head commands make the CA, the
/// verifier's certificate and the nonce key; a verifier starts with the manifests' own
/// configuration file (its node attestors included; paths moved to a temporary directory,
/// SQLite instead of PostgreSQL) and serves that certificate, and a client trusting only the CA reaches it under the name the
/// agents' configuration dials.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_tls_recipe_is_served_by_a_verifier_under_the_service_name() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe: Vec<String> = doc_commands("docs/KUBERNETES.md")
        .into_iter()
        .filter(|c| c.starts_with("openssl ") || c.starts_with("head "))
        .collect();
    assert_eq!(recipe.len(), 4, "{recipe:?}");
    ok(Command::new("bash")
        .args(["-euo", "pipefail", "-c", &recipe.join("\n")])
        .current_dir(tmp.path()));
    let d = tmp.path();
    ok(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("ca.crt"))
        .arg(d.join("tls.crt")));

    let docs = manifests();
    let cm = get(&docs, "ConfigMap", "vouch-server-config");
    let (server, _): (ServerConfig, _) = config_section(cm, "server");
    let (agent, _): (AgentConfig, _) =
        config_section(get(&docs, "ConfigMap", "vouch-agent-config"), "agent");
    let url = reqwest::Url::parse(&agent.servers[0]).unwrap();
    let host = url.host_str().unwrap().to_string();
    // The issuer keys' ConfigMap holds a real cluster's JWKS here (testdata/SOURCES.md).
    let jwks_path = server.node_attestor["k8s_psat"]["clusters"][0]["jwks"]
        .as_str()
        .unwrap()
        .to_string();
    let text = cm["data"]["vouch.toml"].as_str().unwrap();
    assert!(text.contains(&format!("\"{jwks_path}\"")));
    let conf = d.join("vouch.toml");
    std::fs::write(
        &conf,
        text.replace(
            &jwks_path,
            repo().join("testdata/k8s/eks_jwks.json").to_str().unwrap(),
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Child(
        Command::new(vouch())
            .arg("--config")
            .arg(&conf)
            .arg("server")
            .env("VOUCH_SERVER_LISTEN", addr.to_string())
            .env("VOUCH_SERVER_DATA_DIR", d.join("data"))
            .env("VOUCH_SERVER_TLS_CERT", d.join("tls.crt"))
            .env("VOUCH_SERVER_TLS_KEY", d.join("tls.key"))
            .env("VOUCH_SERVER_NONCE_KEY", d.join("nonce.key"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("server.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut child = child;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(&host, addr)
        .build()
        .unwrap();
    let healthz = format!("https://{host}:{port}/healthz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client.get(&healthz).send().await {
            Ok(r) => {
                assert!(r.status().is_success(), "{}", r.status());
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                if let Some(status) = child.0.try_wait().unwrap() {
                    panic!(
                        "the verifier exited ({status}) on the manifests' configuration:\n{}",
                        std::fs::read_to_string(d.join("server.log")).unwrap()
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{healthz}: {e:?}"),
        }
    }
    // The nonce key in use is the one the recipe made (the verifier did not make its own).
    assert!(!d.join("data/keys/nonce.key").exists());
    assert_eq!(server.audience, ServerConfig::default().audience);
    // A name the certificate does not carry is refused: the check above meant something.
    let other = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.crt")).unwrap()).unwrap(),
        ])
        .resolve("vouch-server.other.svc", addr)
        .build()
        .unwrap();
    let e = other
        .get(format!("https://vouch-server.other.svc:{port}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").to_lowercase().contains("certificate"),
        "{e:?}"
    );
}

/// What the test cannot run of the Containerfile (its build stage needs the Rust image from a
/// registry) is checked against the repository: the base images are build arguments with
/// public defaults, the build stage installs what `scripts/deps.sh` says building needs, builds
/// the `vouch` binary and lays the tree out with the same script the image test used, and the
/// build context leaves out the target directory.
#[test]
fn containerfile_build_stage_matches_the_repository() {
    let cf = read("packaging/Containerfile");
    let lines: Vec<&str> = cf.lines().filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        froms,
        ["FROM ${RUST_IMAGE} AS build", "FROM ${RUNTIME_IMAGE}"]
    );
    for arg in [
        "RUST_IMAGE=docker.io/library/rust:",
        "RUNTIME_IMAGE=gcr.io/distroless/",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("ARG {arg}"))),
            "{arg}"
        );
    }
    // The Rust image is Debian 12, like the runtime base and the library closure it copies.
    assert!(cf.contains("rust:1-bookworm") && cf.contains("debian12"));
    let deps = read("scripts/deps.sh");
    let build_pkgs = deps
        .lines()
        .find_map(|l| l.strip_prefix("packages=("))
        .unwrap()
        .trim_end_matches(')')
        .split_whitespace()
        .filter(|p| *p != "ca-certificates")
        .collect::<Vec<_>>();
    let install = cf
        .split("apt-get install")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap();
    for p in &build_pkgs {
        assert!(install.contains(p), "the build stage does not install {p}");
    }
    let joined = cf.replace("\\\n", " ");
    assert!(joined.contains("cargo build --release --locked -p vouch --bin vouch"));
    assert!(joined.contains("sh packaging/rootfs.sh target/release/vouch /"));
    assert!(cf.contains("COPY --from=build /rootfs/ /"));
    let ignore = read(".containerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "a 1+ GB context otherwise"
    );
    assert!(repo().join("Cargo.lock").is_file(), "--locked needs it");
}

/// Removes the containers and volume a test started.
struct Containers {
    conf: PathBuf,
    names: Vec<String>,
    volume: Option<String>,
}

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", &self.conf)
                .args(["rm", "--force", "--time", "1", n])
                .output();
        }
        if let Some(v) = &self.volume {
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", &self.conf)
                .args(["volume", "rm", "--force", v])
                .output();
        }
    }
}

/// `podman run` arguments for a workload of the manifests, taken from the manifest itself:
/// its command line, plain env values (and `env` for references), user, capabilities,
/// read-only root, host PID namespace, and every volume mount at its own mountPath/subPath,
/// from `sources` (volume name to a host path or podman volume).
fn run_args(w: &Value, sources: &BTreeMap<&str, String>, env: &[(&str, &str)]) -> Vec<String> {
    let pod = &w["spec"]["template"]["spec"];
    let c = container(w);
    let mut a = Vec::new();
    let user = c["securityContext"]["runAsUser"]
        .as_u64()
        .or_else(|| pod["securityContext"]["runAsUser"].as_u64())
        .unwrap();
    let group = c["securityContext"]["runAsGroup"]
        .as_u64()
        .or_else(|| pod["securityContext"]["runAsGroup"].as_u64())
        .unwrap();
    a.push(format!("--user={user}:{group}"));
    let sc = &c["securityContext"];
    if sc["capabilities"]["drop"] == serde_json::json!(["ALL"]) {
        a.push("--cap-drop=all".into());
    }
    for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
        a.push(format!("--cap-add={}", cap.as_str().unwrap()));
    }
    if sc["allowPrivilegeEscalation"] == false {
        a.push("--security-opt=no-new-privileges".into());
    }
    if sc["readOnlyRootFilesystem"] == true {
        a.push("--read-only".into());
        a.push("--read-only-tmpfs=false".into());
    }
    if pod["hostPID"] == true {
        a.push("--pid=host".into());
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap();
        if let Some(v) = e["value"].as_str() {
            a.push(format!("--env={name}={v}"));
        } else if let Some((_, v)) = env.iter().find(|(n, _)| *n == name) {
            a.push(format!("--env={name}={v}"));
        }
    }
    for m in c["volumeMounts"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let src = sources
            .get(name)
            .unwrap_or_else(|| panic!("no source for volume {name}"));
        let src = match m["subPath"].as_str() {
            Some(sub) => format!("{src}/{sub}"),
            None => src.clone(),
        };
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        a.push(format!(
            "--volume={src}:{}{ro}",
            m["mountPath"].as_str().unwrap()
        ));
    }
    a
}

/// The manifests' verifier and agent, run as containers of the image with the manifests' own
/// configuration files, mounts, users and capabilities (no cluster: the agent shares the
/// verifier's network namespace and resolves the Service's name to it; SQLite, as no
/// database URL is given; the quickstart's TLS recipe and nonce key; a real cluster's JWKS for
/// the k8s_psat attestor; a join token). The agent enrolls and attests; as the quickstart
/// says, its workload is a warning until the command the reason names registers its
/// executable, then affirming; and it serves the Workload API socket in the directory the
/// DaemonSet shares with pods: a process on the node gets its SVID through it.
#[test]
fn kubernetes_verifier_and_agent_run_from_the_manifests_in_the_image() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let conf = containers_conf(d);
    let unique = unique();
    let (image, _images) = build_image(&conf, d, &unique);
    let docs = manifests();
    let sts = get(&docs, "StatefulSet", "vouch-server");
    let ds = get(&docs, "DaemonSet", "vouch-agent");
    let dir = |name: &str| {
        let p = d.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    // Secret and ConfigMap volumes as the kubelet makes them: files of the group fsGroup,
    // mode defaultMode (0440), for the server's user.
    let fs_group = sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .unwrap() as u32;
    let secret_dir = |name: &str, files: &[(&str, &Path)]| {
        let p = dir(name);
        for (f, from) in files {
            std::fs::copy(from, p.join(f)).unwrap();
            std::os::unix::fs::chown(p.join(f), Some(0), Some(fs_group)).unwrap();
            std::fs::set_permissions(p.join(f), std::fs::Permissions::from_mode(0o440)).unwrap();
        }
        p.to_str().unwrap().to_string()
    };
    let recipe: Vec<String> = doc_commands("docs/KUBERNETES.md")
        .into_iter()
        .filter(|c| c.starts_with("openssl ") || c.starts_with("head "))
        .collect();
    let made = dir("made");
    ok(Command::new("bash")
        .args(["-euo", "pipefail", "-c", &recipe.join("\n")])
        .current_dir(&made));
    let configmap = |name: &str| {
        let text = get(&docs, "ConfigMap", name)["data"]["vouch.toml"]
            .as_str()
            .unwrap()
            .to_string();
        let p = dir(name);
        std::fs::write(p.join("vouch.toml"), text).unwrap();
        std::fs::set_permissions(p.join("vouch.toml"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        p.to_str().unwrap().to_string()
    };
    let volume = format!("vouch-packaging-server-{unique}");
    ok(podman(&conf).args(["volume", "create", &volume]));
    let server_name = format!("vouch-packaging-server-{unique}");
    let agent_name = format!("vouch-packaging-agent-{unique}");
    let _containers = Containers {
        conf: conf.clone(),
        names: vec![agent_name.clone(), server_name.clone()],
        volume: Some(volume.clone()),
    };
    let jwks = repo().join("testdata/k8s/eks_jwks.json");
    let server_sources = BTreeMap::from([
        ("config", configmap("vouch-server-config")),
        (
            "tls",
            secret_dir(
                "tls",
                &[
                    ("tls.crt", &made.join("tls.crt")),
                    ("tls.key", &made.join("tls.key")),
                ],
            ),
        ),
        (
            "keys",
            secret_dir("keys", &[("nonce.key", &made.join("nonce.key"))]),
        ),
        ("k8s-jwks", secret_dir("k8s-jwks", &[("jwks.json", &jwks)])),
        ("data", volume.clone()),
    ]);
    let mut run = podman(&conf);
    run.args([
        "run",
        "--detach",
        "--network",
        "none",
        "--name",
        &server_name,
    ]);
    run.args(run_args(sts, &server_sources, &[]));
    run.arg(&image).args(
        container(sts)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    ok(&mut run);

    // A join token from the verifier's pod, as the quickstart's fallback makes one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let token = loop {
        let o = output(podman(&conf).args([
            "exec",
            &server_name,
            "vouch",
            "token",
            "create",
            "--ttl",
            "10m",
            "--node-name",
            "packaging-node",
        ]));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if let Some(t) = out.split_whitespace().find(|w| w.starts_with("vjt_")) {
            break t.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no join token: {out}{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            ok(podman(&conf).args(["logs", &server_name]))
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };

    // The agent: the Service's name resolves to the verifier (no cluster DNS here).
    let (agent, _): (AgentConfig, _) =
        config_section(get(&docs, "ConfigMap", "vouch-agent-config"), "agent");
    // An identity for root's processes on the node, handed out once the node is affirming.
    let admin = |args: &[&str]| {
        let mut c = podman(&conf);
        c.args(["exec", &server_name, "vouch"]).args(args);
        ok(&mut c)
    };
    let spiffe_id = "spiffe://vouch.local/packaging/node-root";
    admin(&[
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--selector",
        "unix:uid:0",
    ]);
    let host = reqwest::Url::parse(&agent.servers[0])
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    std::fs::write(d.join("hosts"), format!("127.0.0.1 localhost {host}\n")).unwrap();
    let socket_dir = dir("run-vouch-agent");
    let agent_data = dir("agent-data");
    let agent_sources = BTreeMap::from([
        ("config", configmap("vouch-agent-config")),
        ("ca", secret_dir("ca", &[("ca.crt", &made.join("ca.crt"))])),
        ("workload-api", socket_dir.to_str().unwrap().to_string()),
        ("data", agent_data.to_str().unwrap().to_string()),
        ("vouch-token", dir("tokens").to_str().unwrap().to_string()),
    ]);
    let mut run = podman(&conf);
    run.args(["run", "--detach", "--name", &agent_name]);
    run.arg(format!("--network=container:{server_name}"));
    run.arg(format!(
        "--volume={}:/etc/hosts:ro",
        d.join("hosts").display()
    ));
    run.args(run_args(
        ds,
        &agent_sources,
        &[("VOUCH_JOIN_TOKEN", &token)],
    ));
    run.arg(&image).args(
        container(ds)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    ok(&mut run);

    let socket = agent.workload_api_socket.as_ref().unwrap();
    let on_host = socket_dir.join(socket.file_name().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let logs = || {
        format!(
            "server:\n{}\nagent:\n{}",
            String::from_utf8_lossy(&output(podman(&conf).args(["logs", &server_name])).stderr),
            String::from_utf8_lossy(&output(podman(&conf).args(["logs", &agent_name])).stderr)
        )
    };
    while !(agent_data.join("result.jwt").exists() && on_host.exists()) {
        let running =
            ok(podman(&conf).args(["inspect", "--format", "{{.State.Running}}", &agent_name]));
        assert!(running.trim() == "true", "the agent stopped:\n{}", logs());
        assert!(std::time::Instant::now() < deadline, "{}", logs());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    use std::os::unix::fs::FileTypeExt as _;
    assert!(std::fs::metadata(&on_host).unwrap().file_type().is_socket());
    // The verifier lists the node's workload: a warning, as the quickstart says, until the
    // agent's executable is a reference value, with the command that registers it.
    let node_workload = || {
        let list = admin(&["--json", "workload", "list"]);
        let workloads: Value = serde_json::from_str(&list).unwrap();
        workloads
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == agent.workload_name.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{list}\n{}", logs()))
    };
    let w = node_workload();
    assert_eq!(w["status"], "warning", "{w}");
    let reason = w["reason"].as_str().unwrap();
    let command = reason
        .split_once("register it with: ")
        .unwrap_or_else(|| panic!("{reason}"))
        .1;
    let words: Vec<&str> = command.split_whitespace().collect();
    // It names the image's binary, which is this one.
    let exe = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(vouch()).unwrap()))
    };
    assert_eq!(
        words,
        [
            "vouch",
            "refvalue",
            "add",
            "executable",
            &agent.workload_name,
            &exe
        ]
    );
    admin(&words[1..]);
    // The next attestation (at once on a restart, instead of the 30 s interval) is affirming.
    let before = w["last_attestation_id"].clone();
    ok(podman(&conf).args(["restart", "--time", "2", &agent_name]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let w = node_workload();
        if w["last_attestation_id"] != before {
            assert_eq!(w["status"], "affirming", "{w}\n{}", logs());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{w}\n{}", logs());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // A process on the node (this test, as root) gets its SVID through the socket in the
    // shared directory, with an independent SPIFFE client (PyPI `spiffe`, scripts/deps.sh).
    let python = repo().join("target/pyenv/bin/python3");
    let fetch = "from spiffe import WorkloadApiClient\n\
                 with WorkloadApiClient() as c:\n    print(c.fetch_x509_svid().spiffe_id)\n";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = output(Command::new(&python).args(["-c", fetch]).env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", on_host.display()),
        ));
        let out = String::from_utf8_lossy(&o.stdout);
        if o.status.success() {
            assert_eq!(out.trim(), spiffe_id);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{out}{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The admission webhook example (packaging/kubernetes/examples/admission-webhook.yaml) points at
/// the verifier's Service, port and admission route, fails closed, and leaves the verifier's own
/// namespace out (the verifier must start without itself).
#[test]
fn admission_webhook_example_points_at_the_verifier_and_fails_closed() {
    let docs = manifests();
    let svc = get(&docs, "Service", "vouch-server");
    let docs =
        parse_yaml_docs(&repo().join("packaging/kubernetes/examples/admission-webhook.yaml"));
    assert_eq!(docs.len(), 1);
    let cfg = &docs[0];
    assert_eq!(cfg["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(cfg["kind"], "ValidatingWebhookConfiguration");
    let hooks = cfg["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let w = &hooks[0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["admissionReviewVersions"], serde_json::json!(["v1"]));
    let timeout = w["timeoutSeconds"].as_u64().unwrap();
    assert!((1..=30).contains(&timeout), "{timeout}");
    let s = &w["clientConfig"]["service"];
    assert_eq!(s["name"], svc["metadata"]["name"]);
    assert_eq!(s["namespace"], svc["metadata"]["namespace"]);
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == s["port"]),
        "{s}"
    );
    let path = s["path"].as_str().unwrap();
    let openapi: Value =
        serde_json::from_str(&read("crates/vouch-server/src/openapi.json")).unwrap();
    assert!(openapi["paths"][path]["post"].is_object(), "{path}");
    let excluded = &w["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
    assert_eq!(excluded["operator"], "NotIn");
    assert!(
        excluded["values"]
            .as_array()
            .unwrap()
            .contains(&svc["metadata"]["namespace"])
    );
    // Every kind the webhook reads a pod spec from is sent to it.
    let resources: BTreeSet<&str> = w["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in [
        "pods",
        "pods/ephemeralcontainers",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "replicationcontrollers",
        // The scheduler's placement of a pod, for [admission] require_attested_node.
        "pods/binding",
        "bindings",
    ] {
        assert!(resources.contains(r), "{r}");
    }
    // The API server's credentials for the webhook: its admission configuration names the
    // kubeconfig, whose user is named for the webhook's service with its port (not 443), and
    // presents a client certificate and a token ([admission] client_ca, token_file).
    let ac = &parse_yaml_docs(
        &repo().join("packaging/kubernetes/examples/apiserver-admission-config.yaml"),
    )[0];
    assert_eq!(ac["apiVersion"], "apiserver.config.k8s.io/v1");
    assert_eq!(ac["kind"], "AdmissionConfiguration");
    let plugin = ac["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ValidatingAdmissionWebhook")
        .unwrap();
    assert_eq!(
        plugin["configuration"]["kind"],
        "WebhookAdmissionConfiguration"
    );
    let kubeconfig_path = plugin["configuration"]["kubeConfigFile"].as_str().unwrap();
    let kc = &parse_yaml_docs(
        &repo().join("packaging/kubernetes/examples/apiserver-admission-kubeconfig.yaml"),
    )[0];
    assert_eq!(kc["kind"], "Config");
    let want = format!(
        "{}.{}.svc:{}",
        s["name"].as_str().unwrap(),
        s["namespace"].as_str().unwrap(),
        s["port"]
    );
    let user = kc["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == want.as_str())
        .unwrap_or_else(|| panic!("no kubeconfig user {want}"));
    for field in ["client-certificate", "client-key", "tokenFile"] {
        let path = user["user"][field].as_str().unwrap();
        // Next to the kubeconfig the admission configuration names.
        assert_eq!(
            Path::new(path).parent(),
            Path::new(kubeconfig_path).parent(),
            "{field}"
        );
    }
}
