//! The trust domain's X.509 authorities over time: the active CA that signs, a prepared next
//! CA that relying parties learn (through the bundle) before it signs anything, and retired CAs
//! kept in the bundle until every SVID they signed has expired. Rotation never breaks an SVID
//! in flight.
//!
//! On disk, under the CA directory: `ca.crt`/`ca.key` (active), `next/ca.crt`/`next/ca.key`
//! (prepared), `retired/<keep-until>.crt` (certificates only; their keys are deleted), and
//! `sequence` (the bundle's `spiffe_sequence`, bumped on every change, so processes sharing the
//! directory notice).

use std::path::{Path, PathBuf};

use crate::{IdentityError, SvidCa, TrustDomain};

fn io(what: &Path) -> impl Fn(std::io::Error) -> IdentityError + '_ {
    move |e| IdentityError::X509(format!("{}: {e}", what.display()))
}

/// The authorities of a trust domain and their rotation.
#[derive(Debug)]
pub struct CaSet {
    dir: PathBuf,
    td: TrustDomain,
    active: SvidCa,
    next: Option<SvidCa>,
    /// (DER, keep in the bundle until)
    retired: Vec<(Vec<u8>, u64)>,
    sequence: u64,
}

fn read_sequence(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("sequence"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

impl CaSet {
    /// Load the set under `dir`, creating the first CA (valid `ttl` seconds) when there is none.
    pub fn load_or_create(
        dir: &Path,
        td: &TrustDomain,
        ttl: u64,
        now: u64,
    ) -> Result<Self, IdentityError> {
        let active = SvidCa::load_or_create(dir, td, ttl, now)?;
        Self::around(dir, td, active)
    }

    /// A set whose active CA is `active` (e.g. held in an HSM), with the next and retired CAs
    /// found under `dir`.
    pub fn around(dir: &Path, td: &TrustDomain, active: SvidCa) -> Result<Self, IdentityError> {
        let next_dir = dir.join("next");
        let next = if next_dir.join("ca.key").exists() {
            Some(SvidCa::load_or_create(&next_dir, td, 0, 0)?)
        } else {
            None
        };
        let mut retired = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("retired")) {
            for e in rd.flatten() {
                let p = e.path();
                let until = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok());
                if let Some(until) = until {
                    let pem = std::fs::read_to_string(&p).map_err(io(&p))?;
                    retired.push((crate::x509::pem_body(&pem)?, until));
                }
            }
        }
        retired.sort_by_key(|(_, u)| *u);
        Ok(Self {
            dir: dir.to_path_buf(),
            td: td.clone(),
            active,
            next,
            retired,
            sequence: read_sequence(dir),
        })
    }

    /// The CA that signs.
    pub fn active(&self) -> &SvidCa {
        &self.active
    }

    /// The prepared CA, if any.
    pub fn next(&self) -> Option<&SvidCa> {
        self.next.as_ref()
    }

    /// The bundle's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Whether another process changed the set on disk since it was loaded.
    pub fn changed_on_disk(&self) -> bool {
        read_sequence(&self.dir) != self.sequence
    }

    /// Every authority a relying party should trust at `now`: the active CA, the prepared one,
    /// and retired ones whose SVIDs may still be valid.
    pub fn authorities(&self, now: u64) -> Vec<&[u8]> {
        let mut out = vec![self.active.cert_der()];
        if let Some(n) = &self.next {
            out.push(n.cert_der());
        }
        out.extend(
            self.retired
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(d, _)| d.as_slice()),
        );
        out
    }

    fn bump(&mut self) -> Result<(), IdentityError> {
        self.sequence = read_sequence(&self.dir).max(self.sequence) + 1;
        let p = self.dir.join("sequence");
        let tmp = self.dir.join("sequence.tmp");
        std::fs::write(&tmp, self.sequence.to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }

    /// Create the next CA (valid `ttl` seconds from `now`) and publish it in the bundle; it
    /// signs nothing until [`CaSet::activate`]. Refused when one is already prepared.
    pub fn prepare(&mut self, ttl: u64, now: u64) -> Result<(), IdentityError> {
        if self.next.is_some() {
            return Err(IdentityError::X509(
                "a next CA is already prepared; activate it first".into(),
            ));
        }
        self.next = Some(SvidCa::load_or_create(
            &self.dir.join("next"),
            &self.td,
            ttl,
            now,
        )?);
        self.bump()
    }

    /// Make the prepared CA the signing one. The old CA's certificate stays in the bundle for
    /// `keep_for` seconds (the longest SVID lifetime) and its key is deleted.
    pub fn activate(&mut self, keep_for: u64, now: u64) -> Result<(), IdentityError> {
        if self.next.is_none() {
            return Err(IdentityError::X509(
                "no next CA is prepared; run prepare first".into(),
            ));
        }
        if !self.dir.join("ca.key").exists() {
            return Err(IdentityError::X509(
                "the active CA key is not a file (PKCS#11): rotate it in the token".into(),
            ));
        }
        let retired_dir = self.dir.join("retired");
        std::fs::create_dir_all(&retired_dir).map_err(io(&retired_dir))?;
        let until = now + keep_for;
        let kept = retired_dir.join(format!("{until}.crt"));
        std::fs::write(&kept, self.active.cert_pem()).map_err(io(&kept))?;
        let next_dir = self.dir.join("next");
        for f in ["ca.crt", "ca.key"] {
            let (from, to) = (next_dir.join(f), self.dir.join(f));
            std::fs::rename(&from, &to).map_err(io(&from))?;
        }
        let _ = std::fs::remove_dir(&next_dir);
        let next = self.next.take();
        if let Some(n) = next {
            let old = std::mem::replace(&mut self.active, n);
            self.retired.push((old.cert_der().to_vec(), until));
        }
        self.prune(now);
        self.bump()
    }

    /// Rotate on schedule: prepare the next CA when the active one has passed half its
    /// lifetime, activate it when five sixths have passed (SPIRE's schedule). Returns whether
    /// anything changed.
    pub fn rotate_if_due(
        &mut self,
        ttl: u64,
        keep_for: u64,
        now: u64,
    ) -> Result<bool, IdentityError> {
        let (from, until) = self.active.validity();
        let life = until.saturating_sub(from).max(1);
        let elapsed = now.saturating_sub(from);
        if self.next.is_none() && elapsed * 2 >= life && self.dir.join("ca.key").exists() {
            self.prepare(ttl, now)?;
            return Ok(true);
        }
        if self.next.is_some() && elapsed * 6 >= life * 5 {
            self.activate(keep_for, now)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn prune(&mut self, now: u64) {
        let dir = self.dir.join("retired");
        self.retired.retain(|(_, until)| {
            let keep = *until > now;
            if !keep {
                let _ = std::fs::remove_file(dir.join(format!("{until}.crt")));
            }
            keep
        });
    }
}
