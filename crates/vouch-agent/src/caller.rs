//! Who is calling the Workload API: the process behind a connection, pinned at connect time.
//!
//! The kernel gives the connecting process's pid, uid and gid (`SO_PEERCRED`, as of
//! `connect()`). A pid alone is not an identity: the process may exec another binary, or exit
//! and have its pid reused, while the connection — inherited by a child, or passed on — lives
//! on. So the caller is pinned when the agent accepts the connection: the pid, its start time
//! (field 22 of `/proc/<pid>/stat`, which a reused pid does not share) and its executable (the
//! device and inode behind `/proc/<pid>/exe`, which an exec changes). Before every issuance the
//! agent checks that the pid still has that start time and that executable; if not, the
//! connection gets nothing more. The executable is hashed once, while pinned: a running
//! executable cannot be written (`ETXTBSY`), and a replaced one is another inode.
//!
//! The container the process runs in (the container ids its `/proc/<pid>/cgroup` names, see
//! [`crate::container`]) is read while pinned too, between the two start-time reads, and
//! must be the same before every issuance: what the container runtime is asked about is the
//! container the caller was in when it connected.
//!
//! Left open (as in SPIRE's unix attestor): a process that execs between its `connect()` and
//! the agent's accept is measured as the binary it exec'd. The window is the accept latency;
//! pin entries to node and path as well as uid where that matters.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::container::{ContainerError, ContainerId, container_ids_of};

/// What a caller was when its connection was accepted.
#[derive(Debug)]
pub struct Caller {
    uid: u32,
    gid: u32,
    process: Option<Process>,
    sha256: OnceLock<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    pid: i32,
    start_time: u64,
    exe: Exe,
    containers: Result<Vec<ContainerId>, ContainerError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Exe {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// Why a caller gets nothing more on its connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallerChanged {
    /// The process has exited (or can no longer be inspected).
    #[error("the calling process {0} has exited since it connected")]
    Exited(i32),
    /// The pid now belongs to another process (another start time).
    #[error("pid {0} belongs to another process than the one that connected")]
    PidReused(i32),
    /// The process runs another executable than when it connected (it exec'd).
    #[error("the calling process {pid} now runs {now}, not the {then} it ran when it connected")]
    Execed {
        /// The pid.
        pid: i32,
        /// The executable at connect time.
        then: String,
        /// The executable now.
        now: String,
    },
    /// The process is in other cgroups (another container) than when it connected.
    #[error("the calling process {0} has moved to another cgroup since it connected")]
    Moved(i32),
}

/// The name of `id` in a `name:password:id:...` database (`/etc/passwd`, `/etc/group`): the
/// first line whose third field is `id`, read from at most 4 MiB of the file. A name with
/// characters a selector cannot hold gives none.
fn name_of(db: &std::path::Path, id: u32) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(db)
        .ok()?
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    name_in(&text, id)
}

fn name_in(text: &str, id: u32) -> Option<String> {
    let id = id.to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            f.next()?;
            (f.next()? == id).then(|| name.to_string())
        })
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 256
                && !n.chars().any(|c| c.is_control() || c.is_whitespace())
        })
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses; fields resume after the
    // last ')'. starttime is field 22, the 20th after comm.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

fn exe(pid: i32) -> Option<Exe> {
    let link = format!("/proc/{pid}/exe");
    let meta = std::fs::metadata(&link).ok()?;
    let path = std::fs::read_link(&link).ok()?;
    Some(Exe {
        path,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

fn process(pid: i32) -> Option<Process> {
    // Start time before and after the executable: a pid reused in between shows.
    let before = start_time(pid)?;
    let exe = exe(pid)?;
    let containers = container_ids_of(pid);
    (start_time(pid)? == before).then_some(Process {
        pid,
        start_time: before,
        exe,
        containers,
    })
}

impl Caller {
    /// Pin the process behind a connection from its kernel-reported credentials.
    pub fn pin(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self {
            uid,
            gid,
            process: pid.filter(|p| *p > 0).and_then(process),
            sha256: OnceLock::new(),
        }
    }

    /// The pid, when the kernel gave one and the process could be inspected.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(|p| p.pid)
    }

    /// The container ids the caller's cgroups named when it connected, outermost first (empty:
    /// in no container); `None` without a pid.
    pub fn containers(&self) -> Option<&Result<Vec<ContainerId>, ContainerError>> {
        self.process.as_ref().map(|p| &p.containers)
    }

    /// Check that the pid still is the process that connected, running the same executable.
    pub fn check(&self) -> Result<(), CallerChanged> {
        let Some(then) = &self.process else {
            return Ok(());
        };
        let Some(st) = start_time(then.pid) else {
            return Err(CallerChanged::Exited(then.pid));
        };
        if st != then.start_time {
            return Err(CallerChanged::PidReused(then.pid));
        }
        let Some(now) = exe(then.pid) else {
            return Err(CallerChanged::Exited(then.pid));
        };
        if now != then.exe {
            return Err(CallerChanged::Execed {
                pid: then.pid,
                then: then.exe.path.display().to_string(),
                now: now.path.display().to_string(),
            });
        }
        let moved = container_ids_of(then.pid) != then.containers;
        // The process may have exited and its pid been reused between the reads above: read
        // the start time once more.
        match start_time(then.pid) {
            Some(again) if again == then.start_time && moved => Err(CallerChanged::Moved(then.pid)),
            Some(again) if again == then.start_time => Ok(()),
            Some(_) => Err(CallerChanged::PidReused(then.pid)),
            None => Err(CallerChanged::Exited(then.pid)),
        }
    }

    /// The `unix:` selectors of the caller as it connected (uid, gid; with a process, its
    /// executable's path and SHA-256), after checking that it is still that process.
    pub fn selectors(&self) -> Result<Vec<String>, CallerChanged> {
        self.check()?;
        let mut out = vec![
            format!("unix:uid:{}", self.uid),
            format!("unix:gid:{}", self.gid),
        ];
        // The names of the uid and gid in this host's databases, when they have one (as
        // SPIRE's unix attestor: a name is only as good as /etc/passwd, which root owns).
        if let Some(user) = name_of(std::path::Path::new("/etc/passwd"), self.uid) {
            out.push(format!("unix:user:{user}"));
        }
        if let Some(group) = name_of(std::path::Path::new("/etc/group"), self.gid) {
            out.push(format!("unix:group:{group}"));
        }
        if let Some(p) = &self.process {
            out.push(format!("unix:path:{}", p.exe.path.display()));
            let digest = self.sha256.get_or_init(|| {
                // Through /proc/<pid>/exe: the file the process runs, even if its path was
                // replaced or removed since. Checked again after hashing: an exec during the
                // read would otherwise hash the new binary under the old pin.
                let d = vouch_evidence::sha256_file(std::path::Path::new(&format!(
                    "/proc/{}/exe",
                    p.pid
                )))
                .ok();
                d.filter(|_| exe(p.pid).as_ref() == Some(&p.exe))
            });
            self.check()?;
            if let Some(d) = digest {
                out.push(format!("unix:sha256:{d}"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn user_and_group_names_come_from_the_third_field() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment:x:1000\nalice:x:1000:1000::/home/alice:/bin/sh\nbad name:x:7:7::/:/bin/sh\n";
        assert_eq!(name_in(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_in(passwd, 7), None, "a name a selector cannot hold");
        assert_eq!(name_in(passwd, 42), None);
        assert_eq!(name_in("x:y:100", 10), None);
        // This host: uid 0 is root.
        assert_eq!(
            name_of(std::path::Path::new("/etc/passwd"), 0).as_deref(),
            Some("root")
        );
    }

    #[test]
    fn this_process_is_pinned_and_stays_itself() {
        let me = std::process::id() as i32;
        let c = Caller::pin(1, 2, Some(me));
        assert_eq!(c.pid(), Some(me));
        let s = c.selectors().unwrap();
        let of = |kind: &str| {
            s.iter()
                .find(|x| x.starts_with(&format!("unix:{kind}:")))
                .cloned()
        };
        assert_eq!(s[0], "unix:uid:1");
        assert_eq!(s[1], "unix:gid:2");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(of("path"), Some(format!("unix:path:{}", exe.display())));
        let sha = of("sha256").unwrap();
        assert_eq!(sha.len(), 12 + 64);
        // Names as this host's databases give them (Debian: daemon, bin).
        assert_eq!(
            of("user"),
            name_of(std::path::Path::new("/etc/passwd"), 1).map(|n| format!("unix:user:{n}"))
        );
        assert_eq!(
            of("group"),
            name_of(std::path::Path::new("/etc/group"), 2).map(|n| format!("unix:group:{n}"))
        );
        // No pid: uid and gid (and their names) only.
        assert!(
            Caller::pin(1, 2, None)
                .selectors()
                .unwrap()
                .iter()
                .all(|x| !x.starts_with("unix:path:") && !x.starts_with("unix:sha256:"))
        );
    }

    #[test]
    fn a_process_that_exits_or_execs_is_no_longer_the_caller() {
        // A child that execs: pinned as `sh`, then it becomes `sleep`.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "read x; exec sleep 5"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(100));
        let c = Caller::pin(0, 0, Some(pid));
        c.check().unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
        }
        let t = std::time::Instant::now();
        let e = loop {
            match c.check() {
                Err(e) => break e,
                Ok(()) => {
                    assert!(t.elapsed().as_secs() < 5, "the exec was not seen");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        assert!(matches!(e, CallerChanged::Execed { .. }), "{e}");
        assert!(c.selectors().is_err());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(c.check().unwrap_err(), CallerChanged::Exited(pid));
    }

    #[test]
    fn start_time_is_read_after_a_comm_with_spaces_and_parentheses() {
        // Our own stat line parses; the field is a number.
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
