//! A real software TPM for tests: swtpm provisioned by swtpm_setup with EK certificates from a
//! private swtpm-localca, serving the TPM command port on loopback, driven by tpm2-tools.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Swtpm {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e} (is it installed? scripts/test.sh installs swtpm, swtpm-tools, tpm2-tools)"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Swtpm {
    /// Provision and start a TPM with the given PCR banks (e.g. "sha1,sha256").
    pub fn start(banks: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = d.join("ca");
        std::fs::create_dir_all(&ca).unwrap();
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::write(
            d.join("swtpm-localca.conf"),
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = {banks}\n",
                d.join("swtpm-localca.conf").display()
            ),
        )
        .unwrap();
        run(
            Command::new("swtpm_setup")
                .args([
                    "--tpm2",
                    "--create-ek-cert",
                    "--create-platform-cert",
                    "--overwrite",
                ])
                .arg("--tpmstate")
                .arg(d.join("state"))
                .arg("--config")
                .arg(d.join("swtpm_setup.conf"))
                .args(["--pcr-banks", banks]),
            "swtpm_setup",
        );
        let port = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", d.join("state").display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm is not installed (scripts/test.sh installs it)");
        let me = Self { dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The CA that signed the EK certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca/issuercert.pem")
    }

    /// Run a tpm2-tools command in the TPM's directory, then flush transient objects and
    /// sessions (swtpm has no resource manager).
    pub fn tool(&self, args: &[&str]) -> Output {
        let out = run(
            Command::new(args[0])
                .args(&args[1..])
                .current_dir(self.dir.path())
                .env("TPM2TOOLS_TCTI", self.tcti()),
            args[0],
        );
        for what in ["-t", "-s"] {
            let _ = Command::new("tpm2_flushcontext")
                .arg(what)
                .current_dir(self.dir.path())
                .env("TPM2TOOLS_TCTI", self.tcti())
                .output();
        }
        out
    }

    pub fn read(&self, p: &str) -> Vec<u8> {
        std::fs::read(self.path(p)).unwrap()
    }

    /// EK (RSA) + AK under it, in ek.pub / ak.pub / ak.ctx.
    pub fn ek_and_ak(&self, alg: &str) -> (Vec<u8>, Vec<u8>) {
        let (ek_alg, ak_alg, scheme) = match alg {
            "rsa" => ("rsa", "rsa", "rsassa"),
            _ => ("ecc", "ecc", "ecdsa"),
        };
        self.tool(&[
            "tpm2_createek",
            "-c",
            "ek.ctx",
            "-G",
            ek_alg,
            "-u",
            "ek.pub",
        ]);
        self.tool(&[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "ak.ctx",
            "-G",
            ak_alg,
            "-g",
            "sha256",
            "-s",
            scheme,
            "-u",
            "ak.pub",
            "-n",
            "ak.name",
            "-r",
            "ak.priv",
        ]);
        (self.read("ek.pub"), self.read("ak.pub"))
    }

    /// A quote over `pcrs` (tpm2-tools syntax, e.g. "sha256:0,1,2,10") with nonce `hex`.
    pub fn quote(&self, pcrs: &str, nonce_hex: &str, hash: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        self.tool(&[
            "tpm2_quote",
            "-c",
            "ak.ctx",
            "-l",
            pcrs,
            "-q",
            nonce_hex,
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
            "-g",
            hash,
        ]);
        (
            self.read("quote.msg"),
            self.read("quote.sig"),
            self.read("quote.pcrs"),
        )
    }

    pub fn extend(&self, pcr: u8, bank: &str, data_hex: &str) {
        let size = if bank == "sha1" { 20 } else { 32 };
        let digest = format!("{:0>width$}", data_hex, width = size * 2);
        self.tool(&["tpm2_pcrextend", &format!("{pcr}:{bank}={digest}")]);
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Swtpm {
    /// `tpm2_activatecredential` for the AK in ak.ctx under the EK in ek.ctx, with the
    /// credential file `input` (tpm2-tools format). Returns the recovered secret, or the tool's
    /// error output when the TPM refuses.
    pub fn activate_credential(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        std::fs::write(self.path("cred.in"), input).unwrap();
        let _ = std::fs::remove_file(self.path("cred.out"));
        let script = "set -e
tpm2_startauthsession --policy-session -S session.ctx
tpm2_policysecret -S session.ctx -c e >/dev/null
status=0
tpm2_activatecredential -c ak.ctx -C ek.ctx -i cred.in -o cred.out -P session:session.ctx >/dev/null || status=$?
tpm2_flushcontext session.ctx || true
tpm2_flushcontext -t || true
exit $status";
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(std::fs::read(self.path("cred.out")).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
