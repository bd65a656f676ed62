//! Attester side of software evidence: read this machine's state.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use vouch_core::{
    ContainerImage, FileMeasurement, ListeningSocket, OsRelease, ProcessInfo, SoftwareMeasurements,
    WorkloadMeasurement,
};

use crate::EvidenceError;

/// What the agent measures.
#[derive(Debug, Clone, Default)]
pub struct CollectConfig {
    /// Workload name, unique on the node.
    pub workload_name: String,
    /// The workload's executable.
    pub exe: PathBuf,
    /// Configuration files to hash.
    pub files: Vec<PathBuf>,
    /// Container image digest, when known.
    pub image_digest: Option<String>,
    /// Root of the file system to read `/proc`, `/etc` and `/var/lib/dpkg` from (`/` normally;
    /// tests point it elsewhere).
    pub root: PathBuf,
}

/// Collects software measurements, caching executable digests by (device, inode, size, mtime)
/// so that continuous attestation does not rehash every binary on every round.
#[derive(Debug, Default)]
pub struct SoftwareCollector {
    config: CollectConfig,
    cache: HashMap<PathBuf, (u64, u64, u64, i64, i64, String)>,
    containers: Vec<ContainerImage>,
    containers_unlisted: Option<String>,
}

/// SHA-256 of a file's content, lowercase hex, reading in 64 KiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn read_sig(path: &Path) -> Option<String> {
    let mut p = path.as_os_str().to_owned();
    p.push(".sig");
    let s = std::fs::read_to_string(PathBuf::from(p)).ok()?;
    let s = s.trim();
    (s.len() <= 128).then(|| s.to_string())
}

impl SoftwareCollector {
    /// A collector for `config`.
    pub fn new(config: CollectConfig) -> Self {
        Self {
            config,
            cache: HashMap::new(),
            containers: Vec::new(),
            containers_unlisted: None,
        }
    }

    /// The workload's running containers (from the agent's container runtime), reported in
    /// every collection from now on; at most [`vouch_core::MAX_WORKLOAD_CONTAINERS`] are kept.
    pub fn set_containers(&mut self, mut containers: Vec<ContainerImage>) {
        containers.truncate(vouch_core::MAX_WORKLOAD_CONTAINERS);
        self.containers = containers;
    }

    /// Why the workload's running containers could not be listed (its runtime did not answer),
    /// reported in every collection until cleared with `None` (a listing that succeeded); cut
    /// to [`vouch_core::MAX_CONTAINERS_UNLISTED`] bytes.
    pub fn set_containers_unlisted(&mut self, reason: Option<String>) {
        self.containers_unlisted = reason.map(|mut r| {
            let mut end = r.len().min(vouch_core::MAX_CONTAINERS_UNLISTED);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
            r
        });
    }

    /// The configuration.
    pub fn config(&self) -> &CollectConfig {
        &self.config
    }

    fn at(&self, p: &str) -> PathBuf {
        self.config.root.join(p.trim_start_matches('/'))
    }

    fn cached_sha256(&mut self, path: &Path) -> std::io::Result<String> {
        let md = std::fs::metadata(path)?;
        let stamp = (md.dev(), md.ino(), md.size(), md.mtime(), md.mtime_nsec());
        if let Some(c) = self.cache.get(path)
            && (c.0, c.1, c.2, c.3, c.4) == stamp
        {
            return Ok(c.5.clone());
        }
        let digest = sha256_file(path)?;
        self.cache.insert(
            path.to_path_buf(),
            (stamp.0, stamp.1, stamp.2, stamp.3, stamp.4, digest.clone()),
        );
        Ok(digest)
    }

    /// Collect everything, binding `nonce`.
    pub fn collect(
        &mut self,
        nonce: &str,
        now: u64,
    ) -> Result<SoftwareMeasurements, EvidenceError> {
        let exe = self.config.exe.clone();
        let exe_sha256 = self
            .cached_sha256(&exe)
            .map_err(|source| EvidenceError::Collect {
                what: format!("workload executable {}", exe.display()),
                source,
            })?;
        let workload = WorkloadMeasurement {
            name: self.config.workload_name.clone(),
            exe_path: exe.display().to_string(),
            exe_sha256,
            exe_signature: read_sig(&exe),
            image_digest: self.config.image_digest.clone(),
            containers: self.containers.clone(),
            containers_unlisted: self.containers_unlisted.clone(),
        };
        let files = self
            .config
            .files
            .iter()
            .map(|p| match sha256_file(p) {
                Ok(d) => FileMeasurement {
                    path: p.display().to_string(),
                    sha256: Some(d),
                    signature: read_sig(p),
                    error: None,
                },
                Err(e) => FileMeasurement {
                    path: p.display().to_string(),
                    sha256: None,
                    signature: None,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        let os = self.os_release();
        let kernel = read_trim(&self.at("/proc/sys/kernel/osrelease"));
        let hostname = read_trim(&self.at("/proc/sys/kernel/hostname"));
        let processes = self.processes();
        let listening = self.listening();
        let packages = self.packages();
        Ok(SoftwareMeasurements {
            nonce: nonce.to_string(),
            collected_at: now,
            hostname,
            workload,
            files,
            os,
            kernel,
            processes,
            listening,
            packages,
            held: Default::default(),
            release_key: None,
        })
    }

    fn os_release(&self) -> OsRelease {
        let text = std::fs::read_to_string(self.at("/etc/os-release"))
            .or_else(|_| std::fs::read_to_string(self.at("/usr/lib/os-release")))
            .unwrap_or_default();
        parse_os_release(&text)
    }

    fn processes(&mut self) -> Vec<ProcessInfo> {
        let Ok(dir) = std::fs::read_dir(self.at("/proc")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let base = entry.path();
            let name = read_trim(&base.join("comm"));
            let exe = std::fs::read_link(base.join("exe")).ok();
            // Hash through /proc/PID/exe so deleted or replaced binaries are still the real ones.
            let exe_sha256 = exe
                .as_ref()
                .and_then(|_| self.cached_sha256(&base.join("exe")).ok());
            out.push(ProcessInfo {
                pid,
                name,
                exe: exe.map(|p| p.display().to_string()),
                exe_sha256,
            });
        }
        out.sort_by_key(|p| p.pid);
        out
    }

    fn listening(&self) -> Vec<ListeningSocket> {
        let mut out = Vec::new();
        for (file, proto, state) in [
            ("/proc/net/tcp", "tcp", "0A"),
            ("/proc/net/tcp6", "tcp", "0A"),
            ("/proc/net/udp", "udp", "07"),
            ("/proc/net/udp6", "udp", "07"),
        ] {
            if let Ok(text) = std::fs::read_to_string(self.at(file)) {
                out.extend(parse_proc_net(&text, proto, state));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn packages(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.at("/var/lib/dpkg/status"))
            .map(|t| parse_dpkg_status(&t))
            .unwrap_or_default()
    }
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parse `/etc/os-release` (shell-style `KEY=value`, optionally quoted).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_ID" => os.version_id = v,
            "PRETTY_NAME" => os.pretty_name = v,
            _ => {}
        }
    }
    os
}

/// Parse `/proc/net/{tcp,udp}{,6}`: keep sockets in `state` (0A LISTEN for TCP, 07 for bound UDP).
pub fn parse_proc_net(text: &str, proto: &str, state: &str) -> Vec<ListeningSocket> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut cols = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_rem), Some(st)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        if st != state {
            continue;
        }
        let Some((addr_hex, port_hex)) = local.split_once(':') else {
            continue;
        };
        let (Ok(port), Some(address)) = (u16::from_str_radix(port_hex, 16), decode_addr(addr_hex))
        else {
            continue;
        };
        out.push(ListeningSocket {
            proto: proto.to_string(),
            address,
            port,
        });
    }
    out
}

/// Addresses in /proc/net are the in-kernel bytes printed as 32-bit host-order words.
fn decode_addr(hex_addr: &str) -> Option<String> {
    let bytes = hex::decode(hex_addr).ok()?;
    let mut fixed = Vec::with_capacity(bytes.len());
    for word in bytes.chunks(4) {
        let w: [u8; 4] = word.try_into().ok()?;
        fixed.extend_from_slice(&u32::from_be_bytes(w).swap_bytes().to_be_bytes());
    }
    match fixed.len() {
        4 => Some(std::net::Ipv4Addr::new(fixed[0], fixed[1], fixed[2], fixed[3]).to_string()),
        16 => {
            let a: [u8; 16] = fixed.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

/// Parse dpkg's status file: installed packages and their versions.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quoted_and_bare() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn proc_net_listen_entries() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1\n   1: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n";
        let s = parse_proc_net(tcp, "tcp", "0A");
        assert_eq!(
            s,
            vec![ListeningSocket {
                proto: "tcp".into(),
                address: "127.0.0.1".into(),
                port: 8080
            }]
        );
        let tcp6 = "hdr\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0\n";
        let s = parse_proc_net(tcp6, "tcp", "0A");
        assert_eq!(s[0].address, "::1");
        assert_eq!(s[0].port, 22);
        assert!(parse_proc_net("hdr\n garbage line\n 0: zz:zz 0 0A\n", "tcp", "0A").is_empty());
    }

    #[test]
    fn dpkg_status_installed_only() {
        let t = "Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let p = parse_dpkg_status(t);
        assert_eq!(
            p.get("openssl").map(String::as_str),
            Some("3.0.11-1~deb12u2")
        );
        assert!(!p.contains_key("gone"));
    }

    #[test]
    fn collects_this_machine() {
        let exe = std::env::current_exe().unwrap();
        let mut c = SoftwareCollector::new(CollectConfig {
            workload_name: "test".into(),
            exe: exe.clone(),
            files: vec![
                PathBuf::from("/etc/hostname"),
                PathBuf::from("/nonexistent"),
            ],
            image_digest: None,
            root: PathBuf::from("/"),
        });
        let m = c.collect("n", 1).unwrap();
        assert_eq!(m.workload.exe_sha256, sha256_file(&exe).unwrap());
        assert!(!m.kernel.is_empty());
        assert!(m.processes.iter().any(|p| p.pid == std::process::id()));
        assert!(m.files[1].sha256.is_none() && m.files[1].error.is_some());
        assert_eq!(m.workload.containers_unlisted, None);

        // A runtime that did not answer: the reason is reported, cut at a character boundary
        // to what the verifier accepts, until cleared; the last containers stay.
        c.set_containers(vec![ContainerImage {
            id: "c".repeat(64),
            image_digests: vec![],
        }]);
        c.set_containers_unlisted(Some("é".repeat(200)));
        let m = c.collect("n", 2).unwrap();
        let why = m.workload.containers_unlisted.clone().unwrap();
        assert_eq!(why, "é".repeat(128));
        assert_eq!(m.workload.containers.len(), 1);
        let json = serde_json::to_value(&m.workload).unwrap();
        assert!(serde_json::from_value::<vouch_core::WorkloadMeasurement>(json).is_ok());
        c.set_containers_unlisted(None);
        assert_eq!(
            c.collect("n", 3).unwrap().workload.containers_unlisted,
            None
        );
    }
}
