//! The TPM2 access broker and resource manager (`tpm2-abrmd`) in front of an swtpm, on a
//! private D-Bus session bus, so the `tabrmd` TCTI is exercised as a user would run it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::Swtpm;

/// A private `dbus-daemon --session` and a `tpm2-abrmd` on it.
pub struct Tabrmd {
    dbus: Child,
    abrmd: Child,
    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub bus_address: String,
}

impl Tabrmd {
    /// Start both in front of `tpm`. The caller's process must export [`Tabrmd::bus_address`]
    /// as `DBUS_SESSION_BUS_ADDRESS` before opening the TCTI.
    pub fn start(tpm: &Swtpm, dir: &Path) -> Self {
        use std::io::BufRead as _;
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian dbus; scripts/deps.sh --test installs it)");
        let mut line = String::new();
        std::io::BufReader::new(dbus.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus_address = line.trim().to_string();
        let mut cmd = Command::new("tpm2-abrmd");
        cmd.arg("--session")
            .arg(format!("--tcti={}", tpm.tcti()))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
        {
            cmd.arg("--allow-root");
        }
        let abrmd = cmd
            .spawn()
            .expect("tpm2-abrmd (Debian tpm2-abrmd; scripts/deps.sh --test installs it)");
        let me = Self {
            dbus,
            abrmd,
            bus_address,
        };
        // Ready once a TPM command goes through the broker.
        for _ in 0..100 {
            let ok = Command::new("tpm2_getrandom")
                .args(["--hex", "4"])
                .env("TPM2TOOLS_TCTI", me.tcti())
                .env("DBUS_SESSION_BUS_ADDRESS", &me.bus_address)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return me;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("tpm2-abrmd did not come up");
    }

    /// The TCTI configuration string.
    pub fn tcti(&self) -> String {
        "tabrmd:bus_type=session".into()
    }
}

impl Drop for Tabrmd {
    fn drop(&mut self) {
        for c in [&mut self.abrmd, &mut self.dbus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
