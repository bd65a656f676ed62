//! A real OCI registry on loopback for image-signature tests: Debian's `docker-registry` over
//! TLS under a CA only the test holds; images built from scratch by buildah and pushed by
//! skopeo; cosign-format signatures pushed by `cosign_sign.py` (Python's `cryptography`: an
//! independent signer, since Debian's skopeo and podman have sigstore signing compiled out).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python with Debian's `python3-cryptography`.
pub const PYTHON: &str = "/usr/bin/python3";

/// A running registry; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    dir: PathBuf,
    token_server: Option<Child>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = &mut self.token_server {
            let _ = t.kill();
            let _ = t.wait();
        }
    }
}

/// How [`Registry::require_auth`] makes the registry authenticate pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// `auth: htpasswd` (bcrypt, made by apache2-utils' `htpasswd -B`): HTTP Basic.
    Htpasswd,
    /// `auth: token` with the Docker token flow; the token server (registry_token.py, PyJWT)
    /// listens on HTTPS at this realm path of its own port. `realm_scheme` is the scheme the
    /// registry names for it (`https`, or `http` to test a downgrade).
    Token {
        /// The scheme written into the registry's realm URL.
        realm_scheme: &'static str,
    },
}

/// The user [`Registry::require_auth`] accepts.
pub const REGISTRY_USER: &str = "vouch-puller";
/// That user's password.
pub const REGISTRY_PASSWORD: &str = "correct horse battery staple";

fn registry_config(dir: &Path, addr: &str, auth: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
         rootdirectory: {}\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {}\n    \
         key: {}\n{auth}",
        dir.join("store").display(),
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    )
}

/// Why the registry tests cannot run here, if they cannot (scripts/deps.sh --test installs
/// what they need).
pub fn missing_tools() -> Option<String> {
    for tool in ["docker-registry", "skopeo", "buildah", PYTHON] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed (scripts/deps.sh --test)"));
        }
    }
    None
}

/// Why the registry authentication tests cannot run here, if they cannot: the registry's
/// tools, apache2-utils' `htpasswd` and PyJWT for the token server (scripts/deps.sh --test).
pub fn missing_auth_tools() -> Option<String> {
    if let Some(why) = missing_tools() {
        return Some(why);
    }
    let ok = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok("htpasswd", &["-nbB", "u", "p"]) {
        return Some("htpasswd (apache2-utils) is not installed (scripts/deps.sh --test)".into());
    }
    if !ok(PYTHON, &["-c", "import jwt"]) {
        return Some("PyJWT (python3-jwt) is not installed (scripts/deps.sh --test)".into());
    }
    None
}

fn run(env: &[(&str, PathBuf)], prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

impl Registry {
    /// docker-registry with TLS on a free loopback port; its storage, certificates and the
    /// images' build state live in `dir`.
    pub fn start(dir: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL (the Python signer's TLS) takes a leaf named like its
        // issuer for a self-signed certificate.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vouch test registry CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = leaf.signed_by(&key, &ca).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(dir.join("certs/ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        let addr = format!("127.0.0.1:{}", crate::free_port());
        std::fs::write(dir.join("registry.yml"), registry_config(dir, &addr, "")).unwrap();
        let child = spawn_registry(dir);
        let r = Self {
            child,
            addr,
            dir: dir.to_path_buf(),
            token_server: None,
        };
        wait_listening(&r.addr, dir);
        r
    }

    /// Restart the registry on the same port and storage with pulls (and pushes) requiring
    /// [`REGISTRY_USER`] / [`REGISTRY_PASSWORD`]: push what the test needs first.
    pub fn require_auth(&mut self, auth: RegistryAuth) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        let section = match auth {
            RegistryAuth::Htpasswd => {
                let line = run(&[], "htpasswd", &["-nbB", REGISTRY_USER, REGISTRY_PASSWORD]);
                std::fs::write(dir.join("htpasswd"), format!("{line}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: vouch-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            RegistryAuth::Token { realm_scheme } => {
                let key = rcgen::KeyPair::generate().unwrap();
                let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                p.distinguished_name
                    .push(rcgen::DnType::CommonName, "vouch test token signer");
                let cert = p.self_signed(&key).unwrap();
                std::fs::write(dir.join("token-signer.crt"), cert.pem()).unwrap();
                std::fs::write(dir.join("token-signer.key"), key.serialize_pem()).unwrap();
                let port = crate::free_port();
                let child = Command::new(PYTHON)
                    .args([TOKEN_SERVER, &port.to_string()])
                    .arg(dir.join("tls.crt"))
                    .arg(dir.join("tls.key"))
                    .arg(dir.join("token-signer.key"))
                    .arg(dir.join("token-signer.crt"))
                    .args(["vouch-test-issuer", REGISTRY_USER, REGISTRY_PASSWORD])
                    .arg(self.token_log())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.join("token-server.log")).unwrap())
                    .spawn()
                    .unwrap();
                self.token_server = Some(child);
                wait_listening(&format!("127.0.0.1:{port}"), &dir);
                format!(
                    "auth:\n  token:\n    realm: {realm_scheme}://127.0.0.1:{port}/token\n    \
                     service: vouch-test-registry\n    issuer: vouch-test-issuer\n    \
                     rootcertbundle: {}\n",
                    dir.join("token-signer.crt").display()
                )
            }
        };
        std::fs::write(
            dir.join("registry.yml"),
            registry_config(&dir, &self.addr, &section),
        )
        .unwrap();
        self.child = spawn_registry(&dir);
        wait_listening(&self.addr, &dir);
    }

    /// The token server's request log (`auth=<ok|bad|none> scope=<scope>` a line), empty
    /// until it is asked.
    pub fn token_log(&self) -> PathBuf {
        self.dir.join("token-requests.log")
    }

    /// The PEM CA certificate of the registry's TLS certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("certs/ca.crt")
    }

    /// Build an image from scratch holding `content`, push it as `repo:tag`, and return the
    /// digest skopeo reports for it.
    pub fn push_image(&self, repo: &str, tag: &str, content: &str) -> String {
        let dir = &self.dir;
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\ntmp_dir = \"{}\"\n",
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
        let env = [
            ("CONTAINERS_CONF", conf),
            ("CONTAINERS_STORAGE_CONF", storage),
        ];
        let file = dir.join(format!("{tag}.txt"));
        std::fs::write(&file, content).unwrap();
        let ctr = run(&env, "buildah", &["from", "scratch"]);
        run(
            &env,
            "buildah",
            &[
                "copy",
                "--quiet",
                &ctr,
                file.to_str().unwrap(),
                "/content.txt",
            ],
        );
        let layout = format!("oci:{}:{tag}", dir.join("layout").display());
        run(&env, "buildah", &["commit", "--quiet", &ctr, &layout]);
        run(&env, "buildah", &["rm", &ctr]);
        let certs = dir.join("certs");
        let dest = format!("docker://{}/{repo}:{tag}", self.addr);
        run(
            &env,
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
        run(
            &env,
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

    /// Copy `from` to `to` (each `repo:tag`) in this registry with skopeo, the manifest
    /// byte for byte (`--preserve-digests`): an image, or a `sha256-<hex>.sig` signature tag.
    pub fn copy(&self, from: &str, to: &str) {
        let certs = self.dir.join("certs");
        let certs = certs.to_str().unwrap();
        run(
            &[],
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--preserve-digests",
                "--src-cert-dir",
                certs,
                "--dest-cert-dir",
                certs,
                &format!("docker://{}/{from}", self.addr),
                &format!("docker://{}/{to}", self.addr),
            ],
        );
    }

    /// A new cosign key pair, `<dir>/<name>.key` (PKCS#8) and `<dir>/<name>.pub` (SPKI);
    /// returns the public key's path.
    pub fn cosign_key(&self, name: &str) -> PathBuf {
        run(
            &[],
            PYTHON,
            &[SIGNER, "genkey", self.dir.to_str().unwrap(), name],
        );
        self.dir.join(format!("{name}.pub"))
    }

    /// Sign `digest` in `repo` with key `name` and push the signature as cosign does
    /// (`sha256-<hex>.sig`, replacing what was there). `mode`: `good`, `flip-signature`,
    /// `flip-payload`, `other-digest:<digest>`, `no-annotation`.
    pub fn cosign_sign(&self, repo: &str, digest: &str, name: &str, mode: &str) {
        run(
            &[],
            PYTHON,
            &[
                SIGNER,
                "sign",
                &self.addr,
                repo,
                digest,
                self.dir.join(format!("{name}.key")).to_str().unwrap(),
                self.ca().to_str().unwrap(),
                mode,
            ],
        );
    }
}

impl Registry {
    /// Push a signature made elsewhere (a containers/image sigstore signature file: payload
    /// and layer annotations, byte for byte) as `digest`'s `sha256-<hex>.sig` in `repo`.
    pub fn cosign_copy(&self, repo: &str, digest: &str, signature_file: &Path) {
        run(
            &[],
            PYTHON,
            &[
                SIGNER,
                "copy",
                &self.addr,
                repo,
                digest,
                self.ca().to_str().unwrap(),
                signature_file.to_str().unwrap(),
            ],
        );
    }

    /// Attach SLSA v1 provenance for `digest` in `repo`, signed with key `name`, as
    /// `cosign attest` stores it (`sha256-<hex>.att`, replacing what was there); made by the
    /// PyPI in-toto-attestation and securesystemslib packages. The builder is
    /// [`TEST_BUILDER`], the source [`TEST_SOURCE`], unless `mode` says otherwise: `good`,
    /// `builder:<id>`, `source:<repo>`, `other-digest:<digest>` (the subject names it),
    /// `flip-signature` (one bit of the DSSE signature flipped).
    pub fn cosign_attest(&self, repo: &str, digest: &str, name: &str, mode: &str) {
        run(
            &[],
            PYENV_PYTHON,
            &[
                SIGNER,
                "attest",
                &self.addr,
                repo,
                digest,
                self.dir.join(format!("{name}.key")).to_str().unwrap(),
                self.ca().to_str().unwrap(),
                mode,
            ],
        );
    }
}

/// The builder id of [`Registry::cosign_attest`]'s provenance.
pub const TEST_BUILDER: &str =
    "https://github.com/vouch-test/builder/.github/workflows/build.yml@refs/tags/v1.0.0";
/// The source repository of [`Registry::cosign_attest`]'s provenance.
pub const TEST_SOURCE: &str = "https://github.com/vouch-test/app";

const SIGNER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cosign_sign.py");
const TOKEN_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/registry_token.py");

fn spawn_registry(dir: &Path) -> Child {
    Command::new("docker-registry")
        .args(["serve", dir.join("registry.yml").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .unwrap()
}

fn wait_listening(addr: &str, dir: &Path) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{addr} did not listen: {}{}",
        std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("token-server.log")).unwrap_or_default()
    );
}

/// The Python with the PyPI in-toto-attestation and securesystemslib packages
/// (`scripts/deps.sh --test` makes it).
pub const PYENV_PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/pyenv/bin/python3"
);

/// Why [`Registry::cosign_attest`] cannot run here, if it cannot.
pub fn missing_attester() -> Option<String> {
    let ok = Command::new(PYENV_PYTHON)
        .args([
            "-c",
            "import in_toto_attestation.v1.statement, securesystemslib.dsse",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| format!("{PYENV_PYTHON} lacks in-toto-attestation (scripts/deps.sh --test)"))
}
