//! The update cache of `vouch update`: the metadata a device verified last, kept between runs
//! for rollback and freeze protection, and never trusted as it lies on disk.
//!
//! tough's own datastore is trusted local state: a cached timestamp or snapshot that fails to
//! parse or to verify is silently skipped (and with it the rollback check it was kept for), the
//! cached targets are never read, and a root kept there was taken by `vouch update` as the root
//! to start from with only its own signatures checked. Here every run first re-verifies the
//! cache from the pinned root:
//!
//! * `roots/N.root.json`, each root version the device moved through since the pinned one,
//!   must form an unbroken chain from the pinned root (each signed by a threshold of the
//!   previous root's keys and of its own, versions one apart); its last root is the one to
//!   start from, and tough's `root.json` must be that root;
//! * the cached timestamp, snapshot and targets must be signed by a threshold of that root's
//!   keys for their role, and name each other (the timestamp's snapshot version, the
//!   snapshot's targets version);
//! * `latest_known_time.json` must be a time.
//!
//! A cache that does not verify is refused (exit 2, the file and the reason named) and left as
//! it is: discarding it would silently drop the rollback protection it holds, which is what a
//! local attacker rolling the device back wants, and a corrupt disk is something an operator
//! should see. `--reset-cache` discards it on purpose and starts again from the pinned root.
//!
//! Each run works on a copy (`gen-N+1/`) and the cache moves to it only when the run succeeded
//! (the symlink `current` replaced by a rename, after every file was synced): a run that fails
//! half-way (a slow server cut, a target refused) leaves the previous state as it was, and a
//! power cut leaves one generation or the other, never a mix. Only the latest time seen is kept
//! from a failed run. A lock file keeps two runs off one cache.

use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

/// The files of tough's datastore that are kept from one run to the next.
const KEPT: [&str; 5] = [
    "root.json",
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "latest_known_time.json",
];

/// No cached metadata file is read beyond this (the largest of the fetch limits).
const MAX_FILE: u64 = 8 << 20;

/// A verified cache and the generation this run writes into.
pub(super) struct Staged {
    dir: PathBuf,
    current: Option<PathBuf>,
    legacy: bool,
    next: PathBuf,
    start: Signed<Root>,
    start_bytes: Vec<u8>,
    committed: bool,
    _lock: std::fs::File,
}

/// Read at most `MAX_FILE` bytes of `p`, or None when it is not there. Only a regular file
/// is read: the file is opened without following a symlink and without blocking (a FIFO or a
/// device put in its place would stall or feed the run without end), then checked to be a
/// regular file, then read through a bound whatever its size says.
fn read(p: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            bail!("{} is a symlink, not a file of the cache", p.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let m = f
        .metadata()
        .with_context(|| format!("reading {}", p.display()))?;
    if !m.file_type().is_file() {
        bail!("{} is not a regular file", p.display());
    }
    if m.len() > MAX_FILE {
        bail!("{} is over {MAX_FILE} bytes", p.display());
    }
    let mut b = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut b)
        .with_context(|| format!("reading {}", p.display()))?;
    if b.len() as u64 > MAX_FILE {
        bail!("{} is over {MAX_FILE} bytes", p.display());
    }
    Ok(Some(b))
}

/// The root `next` follows from `prev`: signed by a threshold of both, exactly one version on.
pub(super) fn follows(prev: &Signed<Root>, next: &Signed<Root>) -> Result<(), String> {
    prev.signed
        .verify_role(next)
        .map_err(|e| format!("not signed by root version {}: {e}", prev.signed.version))?;
    next.signed
        .verify_role(next)
        .map_err(|e| format!("not signed by its own root keys: {e}"))?;
    if next.signed.version.get() != prev.signed.version.get().saturating_add(1) {
        return Err(format!(
            "version {} does not follow version {}",
            next.signed.version, prev.signed.version
        ));
    }
    Ok(())
}

/// The generation `current` points to (a plain `gen-N` beside it), the cache directory itself
/// when it holds an older, flat cache, or None for an empty cache.
fn current(dir: &Path) -> Result<Option<(PathBuf, bool)>> {
    let link = dir.join("current");
    match std::fs::read_link(&link) {
        Ok(t) => {
            let name = t.to_str().unwrap_or_default();
            if !name.starts_with("gen-")
                || name.len() > 32
                || name.contains('/')
                || t.components().count() != 1
            {
                bail!(
                    "{} points to {}, not a generation of this cache (--reset-cache discards \
                     it)",
                    link.display(),
                    t.display()
                );
            }
            Ok(Some((dir.join(t), false)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if KEPT.iter().any(|f| dir.join(f).exists()) || dir.join("roots").exists() {
                Ok(Some((dir.to_path_buf(), true)))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e).with_context(|| format!("{} is not a symlink", link.display())),
    }
}

fn generation(p: &Path) -> u64 {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("gen-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A time as jiff writes it (`2026-12-05T18:16:41.123Z`).
fn is_time(b: &[u8]) -> bool {
    let Ok(s) = serde_json::from_slice::<String>(b) else {
        return false;
    };
    let s = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        s.get(r)
            .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
    };
    s.len() >= 20
        && s.len() <= 40
        && digits(0..4)
        && s[4] == b'-'
        && digits(5..7)
        && s[7] == b'-'
        && digits(8..10)
        && s[10] == b'T'
        && digits(11..13)
        && s[13] == b':'
        && digits(14..16)
        && s[16] == b':'
        && digits(17..19)
        && s.ends_with(b"Z")
}

fn parse<T: serde::de::DeserializeOwned>(b: &[u8], f: &str) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("{f} is not metadata of its role: {e}"))
}

/// The root to start from, parsed and as its bytes.
type Start = (Signed<Root>, Vec<u8>);

/// Re-verify the generation `s` from the pinned root; the root to start from.
fn verify(s: &Path, pinned: &Signed<Root>, pinned_bytes: &[u8]) -> Result<Result<Start, String>> {
    let (mut end, mut end_bytes) = (pinned.clone(), pinned_bytes.to_vec());
    let roots = s.join("roots");
    let mut versions = Vec::new();
    if roots.exists() {
        for e in std::fs::read_dir(&roots).with_context(|| format!("{}", roots.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            match name
                .strip_suffix(".root.json")
                .and_then(|v| v.parse::<u64>().ok())
            {
                Some(v) => versions.push(v),
                None => return Ok(Err(format!("roots/{name} is not N.root.json"))),
            }
        }
    }
    versions.sort_unstable();
    for v in versions {
        if v <= pinned.signed.version.get() {
            continue; // kept from before a newer root was pinned
        }
        let f = format!("roots/{v}.root.json");
        let Some(b) = read(&s.join(&f))? else {
            continue;
        };
        let next: Signed<Root> = match parse(&b, &f) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if next.signed.version.get() != v {
            return Ok(Err(format!("{f} holds version {}", next.signed.version)));
        }
        if let Err(e) = follows(&end, &next) {
            return Ok(Err(format!(
                "{f} is not in the chain from the pinned root: {e}"
            )));
        }
        (end, end_bytes) = (next, b);
    }
    if let Some(b) = read(&s.join("root.json"))? {
        let r: Signed<Root> = match parse(&b, "root.json") {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // A root.json older than the pinned root is from before a newer root was pinned.
        let same = serde_json::to_value(&r).ok() == serde_json::to_value(&end).ok();
        if r.signed.version >= pinned.signed.version && !same {
            return Ok(Err(format!(
                "root.json (version {}) is another root than the one the chain from the pinned \
                 root ends in (version {})",
                r.signed.version, end.signed.version
            )));
        }
    }
    let root = &end.signed;
    let ts = match read(&s.join("timestamp.json"))? {
        None => None,
        Some(b) => {
            let t: Signed<Timestamp> = match parse(&b, "timestamp.json") {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = root.verify_role(&t) {
                return Ok(Err(format!(
                    "timestamp.json does not verify under root version {}: {e}",
                    root.version
                )));
            }
            Some(t)
        }
    };
    let snap = match read(&s.join("snapshot.json"))? {
        None => None,
        Some(b) => {
            let t: Signed<Snapshot> = match parse(&b, "snapshot.json") {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = root.verify_role(&t) {
                return Ok(Err(format!(
                    "snapshot.json does not verify under root version {}: {e}",
                    root.version
                )));
            }
            let named = ts
                .as_ref()
                .and_then(|ts| ts.signed.meta.get("snapshot.json"))
                .map(|m| m.version);
            if named.is_some_and(|v| v != t.signed.version) {
                return Ok(Err(format!(
                    "snapshot.json is version {}, the cached timestamp names version {}",
                    t.signed.version,
                    named.map(|v| v.get()).unwrap_or_default()
                )));
            }
            Some(t)
        }
    };
    if let Some(b) = read(&s.join("targets.json"))? {
        let t: Signed<Targets> = match parse(&b, "targets.json") {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = root.verify_role(&t) {
            return Ok(Err(format!(
                "targets.json does not verify under root version {}: {e}",
                root.version
            )));
        }
        let named = snap
            .as_ref()
            .and_then(|s| s.signed.meta.get("targets.json"))
            .map(|m| m.version);
        if named.is_some_and(|v| v != t.signed.version) {
            return Ok(Err(format!(
                "targets.json is version {}, the cached snapshot names version {}",
                t.signed.version,
                named.map(|v| v.get()).unwrap_or_default()
            )));
        }
    }
    if let Some(b) = read(&s.join("latest_known_time.json"))?
        && !is_time(&b)
    {
        return Ok(Err("latest_known_time.json is not a time".into()));
    }
    Ok(Ok((end, end_bytes)))
}

fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))
}

fn sync_dir(p: &Path) {
    if let Ok(d) = std::fs::File::open(p) {
        let _ = d.sync_all();
    }
}

/// Lock the cache, re-verify it from the pinned root (`Err` with the reason when it does not
/// verify) and copy it into the generation this run writes to.
pub(super) fn open(
    dir: &Path,
    pinned: &Signed<Root>,
    pinned_bytes: &[u8],
    reset: bool,
) -> Result<Result<Staged, String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("opening {}", dir.join("lock").display()))?;
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on a file descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!("another vouch update is using {}", dir.display());
        }
    }
    if reset {
        eprintln!(
            "update cache {}: discarded (--reset-cache); starting again from the pinned root",
            dir.display()
        );
        let _ = std::fs::remove_file(dir.join("current"));
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("gen-") || name == "roots" {
                std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            } else if KEPT.contains(&name.as_str()) {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    let cur = current(dir)?;
    let (start, start_bytes) = match &cur {
        None => (pinned.clone(), pinned_bytes.to_vec()),
        Some((s, _)) => match verify(s, pinned, pinned_bytes)? {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        },
    };
    let n = cur.as_ref().map_or(0, |(s, _)| generation(s));
    let next = dir.join(format!("gen-{}", n.saturating_add(1)));
    if next.exists() {
        // Left by a run that stopped before it committed or cleaned up.
        std::fs::remove_dir_all(&next).with_context(|| format!("removing {}", next.display()))?;
    }
    std::fs::create_dir_all(next.join("roots"))
        .with_context(|| format!("creating {}", next.display()))?;
    if let Some((s, _)) = &cur {
        for f in KEPT {
            if s.join(f).exists() {
                std::fs::copy(s.join(f), next.join(f))
                    .with_context(|| format!("copying {}", s.join(f).display()))?;
            }
        }
        if s.join("roots").exists() {
            for e in std::fs::read_dir(s.join("roots"))? {
                let p = e?.path();
                if let Some(name) = p.file_name() {
                    std::fs::copy(&p, next.join("roots").join(name))
                        .with_context(|| format!("copying {}", p.display()))?;
                }
            }
        }
    }
    let (current, legacy) = match cur {
        Some((p, l)) => (Some(p), l),
        None => (None, false),
    };
    Ok(Ok(Staged {
        dir: dir.to_path_buf(),
        current,
        legacy,
        next,
        start,
        start_bytes,
        committed: false,
        _lock: lock,
    }))
}

impl Staged {
    /// The root tough starts from (the end of the verified chain).
    pub(super) fn root_bytes(&self) -> &[u8] {
        &self.start_bytes
    }

    /// The directory tough's datastore writes into.
    pub(super) fn datastore(&self) -> &Path {
        &self.next
    }

    /// Keep the root versions this run moved through (the bytes tough fetched and verified,
    /// checked here again as a chain from the start root), sync every file, and make this
    /// run's generation the current one.
    pub(super) fn commit(
        mut self,
        root_version: u64,
        fetched: &BTreeMap<u64, Vec<u8>>,
    ) -> Result<Result<(), String>> {
        let mut prev = self.start.clone();
        let first = prev.signed.version.get().saturating_add(1);
        for v in first..=root_version {
            let Some(b) = fetched.get(&v) else {
                return Ok(Err(format!(
                    "root version {v} was accepted but its bytes were not kept"
                )));
            };
            let next: Signed<Root> = match parse(b, &format!("{v}.root.json")) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = follows(&prev, &next) {
                return Ok(Err(format!("{v}.root.json: {e}")));
            }
            let p = self.next.join("roots").join(format!("{v}.root.json"));
            std::fs::write(&p, b).with_context(|| format!("writing {}", p.display()))?;
            prev = next;
        }
        for d in [self.next.join("roots"), self.next.clone()] {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_file() {
                    std::fs::File::open(&p)?.sync_all()?;
                }
            }
            sync_dir(&d);
        }
        let name = self
            .next
            .file_name()
            .context("generation without a name")?
            .to_os_string();
        let tmp = self.dir.join(format!("current.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join("current"))
            .with_context(|| format!("replacing {}", self.dir.join("current").display()))?;
        sync_dir(&self.dir);
        self.committed = true;
        // The previous generation is no longer pointed to.
        match (&self.current, self.legacy) {
            (Some(old), false) => {
                let _ = std::fs::remove_dir_all(old);
            }
            (Some(old), true) => {
                for f in KEPT {
                    let _ = std::fs::remove_file(old.join(f));
                }
                let _ = std::fs::remove_dir_all(old.join("roots"));
            }
            (None, _) => {}
        }
        Ok(Ok(()))
    }
}

impl Drop for Staged {
    /// A run that did not commit: the previous generation stays; only the latest time seen is
    /// carried over to it (the clock check never goes back).
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let t = self.next.join("latest_known_time.json");
        if let (Some(cur), Ok(Some(b))) = (&self.current, read(&t))
            && is_time(&b)
        {
            let _ = copy_atomic(&t, &cur.join("latest_known_time.json"));
        }
        let _ = std::fs::remove_dir_all(&self.next);
    }
}
