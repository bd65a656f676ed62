//! Registration entries in the verifier (issue 13 item 5, "Scale"): an in-memory index kept
//! current from the store's change log, the push path that tells agents when entries change
//! (`POST /v1/entries/watch`, a bounded long poll) and the incremental sync that sends them only
//! what changed (`POST /v1/entries/sync`).
//!
//! The index holds every entry once, keyed by id, and lists each entry under one of its
//! selectors: the one whose list is shortest when the entry arrives, the most specific one
//! ([`rank`]: a node before a binary digest before a uid …) among equals. Every selector of an
//! entry must be among a workload's for the entry to match, so the entry is found by looking up
//! the workload's own selectors (at most ~80) and checking the few candidates each lists: the
//! cost of matching follows the candidates, not the number of entries. A change moves the
//! store's entries revision; the index reads only the change-log rows after its own revision
//! (an index range scan), and reads everything again only when the log no longer reaches back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use vouch_core::ErrorKind;
use vouch_core::wire::{
    EntriesRequest, EntriesSyncResponse, EntriesWatchResponse, EntryRecord, entries_signing_input,
};
use vouch_evidence::verify_ed25519;
use vouch_identity::{Entry, Selector};
use vouch_store::EntriesSince;

use crate::ApiError;
use crate::state::{State, unix_now};

/// Changes read from the log in one step before the index (or an agent) reads everything again.
const MAX_DELTA: u32 = 10_000;
/// Entries read from the store in one page when the index is read in full.
const LOAD_PAGE: u32 = 10_000;
/// Most entries one sync answer carries; a node that more entries concern is refused
/// (`overloaded`): split the entries over node selectors.
const MAX_SYNC_ENTRIES: usize = 200_000;

/// How specific a selector is: the index lists an entry under its highest-ranked selector, so
/// the lists a workload's selectors reach stay short. Selectors most workloads share (status,
/// evidence kind, OS, TEE kind, flags) rank lowest.
fn rank(s: &Selector) -> u8 {
    match (s.kind.as_str(), s.value.split_once(':').map(|(k, _)| k)) {
        ("vouch", Some("node")) => 9,
        ("unix", Some("sha256")) | ("tpm", Some("ek_sha256")) => 8,
        ("tee", Some("measurement")) | ("tee", Some("signer")) => 7,
        ("vouch", Some("workload")) => 6,
        ("unix", Some("path")) => 5,
        ("unix", Some("uid")) | ("unix", Some("user")) => 4,
        ("unix", Some("gid")) | ("unix", Some("group")) => 3,
        ("unix", _) => 2,
        ("vouch", Some("status")) | ("vouch", Some("evidence")) => 0,
        ("os", _) | ("tpm", _) | ("tee", _) => 0,
        _ => 1,
    }
}

/// The node an entry is bound to (`vouch:node:<id>`), if any.
fn node_of<'a>(selectors: impl IntoIterator<Item = &'a Selector>) -> Option<&'a str> {
    selectors
        .into_iter()
        .find(|s| s.kind == "vouch" && s.value.starts_with("node:"))
        .and_then(|s| s.value.strip_prefix("node:"))
}

/// An entry as the index holds it: ids as shared strings, selectors shared with every other
/// entry that has them (a fleet's entries repeat the same node, uid and digest selectors), so
/// a million entries cost a few hundred bytes each.
#[derive(Debug)]
struct Held {
    id: Arc<str>,
    spiffe_id: Box<str>,
    selectors: Box<[Arc<Selector>]>,
    ttl: u64,
    created_at: u64,
    /// The position of the selector the entry is listed under.
    key: usize,
}

impl Held {
    fn matches(&self, available: &[Selector]) -> bool {
        self.selectors.iter().all(|s| available.contains(s))
    }

    fn entry(&self) -> Entry {
        Entry {
            id: self.id.to_string(),
            spiffe_id: self.spiffe_id.to_string(),
            selectors: self.selectors.iter().map(|s| (**s).clone()).collect(),
            ttl: self.ttl,
            created_at: self.created_at,
        }
    }

    fn record(&self) -> EntryRecord {
        EntryRecord {
            id: self.id.to_string(),
            spiffe_id: self.spiffe_id.to_string(),
            selectors: self.selectors.iter().map(ToString::to_string).collect(),
            ttl: self.ttl,
            created_at: self.created_at,
        }
    }

    fn node(&self) -> Option<&str> {
        node_of(self.selectors.iter().map(|s| &**s))
    }
}

/// Every registration entry, indexed for matching, at one revision.
#[derive(Debug, Default)]
pub(crate) struct EntryIndex {
    revision: u64,
    by_id: HashMap<Arc<str>, Arc<Held>>,
    by_key: HashMap<Arc<Selector>, Vec<Arc<Held>>>,
    /// Entries by the node they are bound to ("" for none), for a node's full sync.
    by_node: HashMap<Box<str>, Vec<Arc<Held>>>,
    /// Every selector some entry holds, once.
    selectors: std::collections::HashSet<Arc<Selector>>,
}

impl EntryIndex {
    fn intern(&mut self, s: Selector) -> Arc<Selector> {
        if let Some(a) = self.selectors.get(&s) {
            return a.clone();
        }
        let a = Arc::new(s);
        self.selectors.insert(a.clone());
        a
    }

    /// Where to list `selectors`: the one with the shortest list, the highest-ranked among
    /// equals.
    fn key_for(&self, selectors: &[Arc<Selector>]) -> usize {
        selectors
            .iter()
            .enumerate()
            .min_by_key(|(i, s)| {
                let len = self.by_key.get(*s).map_or(0, Vec::len);
                (len, std::cmp::Reverse(rank(s)), *i)
            })
            .map_or(0, |(i, _)| i)
    }

    fn put(&mut self, e: Entry) {
        self.remove(&e.id);
        let selectors: Box<[Arc<Selector>]> =
            e.selectors.into_iter().map(|s| self.intern(s)).collect();
        let key = self.key_for(&selectors);
        let held = Arc::new(Held {
            id: Arc::from(e.id),
            spiffe_id: e.spiffe_id.into_boxed_str(),
            selectors,
            ttl: e.ttl,
            created_at: e.created_at,
            key,
        });
        if let Some(sel) = held.selectors.get(key) {
            self.by_key
                .entry(sel.clone())
                .or_default()
                .push(held.clone());
        }
        let node = held.node().unwrap_or_default();
        match self.by_node.get_mut(node) {
            Some(list) => list.push(held.clone()),
            None => {
                self.by_node.insert(node.into(), vec![held.clone()]);
            }
        }
        self.by_id.insert(held.id.clone(), held);
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        fn drop_from<
            K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        >(
            map: &mut HashMap<K, Vec<Arc<Held>>>,
            key: &Q,
            id: &str,
        ) {
            if let Some(list) = map.get_mut(key) {
                list.retain(|e| &*e.id != id);
                if list.is_empty() {
                    map.remove(key);
                }
            }
        }
        if let Some(k) = old.selectors.get(old.key) {
            drop_from(&mut self.by_key, &**k, id);
        }
        drop_from(&mut self.by_node, old.node().unwrap_or_default(), id);
        // Selectors no other entry holds any more (the interner's own reference, this
        // entry's, and none else).
        for s in old.selectors.iter() {
            if Arc::strong_count(s) <= 2 {
                self.selectors.remove(&**s);
            }
        }
    }

    /// Entries whose every selector is in `available`.
    fn matching(&self, available: &[Selector]) -> Vec<Entry> {
        let mut out = Vec::new();
        for s in available {
            if let Some(list) = self.by_key.get(s) {
                out.extend(
                    list.iter()
                        .filter(|e| e.matches(available))
                        .map(|e| e.entry()),
                );
            }
        }
        // A selector listed twice in `available` finds its entries twice.
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    /// The entries that concern `node`: bound to it, or to no node.
    fn for_node(&self, node: &str) -> impl Iterator<Item = &Arc<Held>> {
        let own = self.by_node.get(node).into_iter().flatten();
        let unbound = if node.is_empty() {
            None
        } else {
            self.by_node.get("")
        };
        own.chain(unbound.into_iter().flatten())
    }

    /// Whether `e` concerns `node`: bound to it, or to no node.
    fn concerns(e: &Entry, node: &str) -> bool {
        node_of(&e.selectors).is_none_or(|n| n == node)
    }

    /// Apply changes up to `revision`.
    fn apply(&mut self, revision: u64, upserted: Vec<Entry>, deleted: &[String]) {
        for id in deleted {
            self.remove(id);
        }
        for entry in upserted {
            self.put(entry);
        }
        self.revision = self.revision.max(revision);
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The verifier's entries: the index, who is told about changes, and the watch limits.
#[derive(Debug)]
pub(crate) struct Entries {
    index: RwLock<EntryIndex>,
    /// Set once the index has been read from the store.
    loaded: std::sync::atomic::AtomicBool,
    /// One refresh at a time; the others wait for it and find the index current.
    refreshing: tokio::sync::Mutex<()>,
    /// The revision the index is at; watchers wait on it.
    revision: tokio::sync::watch::Sender<u64>,
    watchers: AtomicUsize,
    per_key: Mutex<HashMap<String, usize>>,
}

impl Default for Entries {
    fn default() -> Self {
        Self {
            index: RwLock::default(),
            loaded: false.into(),
            refreshing: tokio::sync::Mutex::new(()),
            revision: tokio::sync::watch::Sender::new(0),
            watchers: AtomicUsize::new(0),
            per_key: Mutex::new(HashMap::new()),
        }
    }
}

/// A watcher's place, given back when it ends however it ends.
struct WatchSlot<'a> {
    entries: &'a Entries,
    key: String,
}

impl Drop for WatchSlot<'_> {
    fn drop(&mut self) {
        self.entries.watchers.fetch_sub(1, Ordering::AcqRel);
        let mut m = self
            .entries
            .per_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn record(e: &Entry) -> EntryRecord {
    EntryRecord {
        id: e.id.clone(),
        spiffe_id: e.spiffe_id.clone(),
        selectors: e.selectors.iter().map(ToString::to_string).collect(),
        ttl: e.ttl,
        created_at: e.created_at,
    }
}

impl State {
    /// Bring the entries index up to the store's revision (the change log after the index's
    /// revision, or everything when the log does not reach back) and wake the watchers. One
    /// row is read when nothing changed.
    pub(crate) async fn refresh_entries(&self) -> Result<u64, ApiError> {
        let e = &self.entries;
        let current = self.store.revision(vouch_store::ENTRIES_REVISION).await?;
        let loaded = e.loaded.load(Ordering::Acquire);
        if loaded && read(&e.index).revision >= current {
            return Ok(read(&e.index).revision);
        }
        let _one = e.refreshing.lock().await;
        let (loaded, at) = (e.loaded.load(Ordering::Acquire), read(&e.index).revision);
        if loaded && at >= current {
            return Ok(at);
        }
        let delta = if loaded {
            self.store.entries_since(at, MAX_DELTA).await?
        } else {
            EntriesSince::Resync { revision: current }
        };
        let revision = match delta {
            EntriesSince::Changes {
                revision,
                upserted,
                deleted,
            } => {
                let mut ix = e.index.write().unwrap_or_else(|p| p.into_inner());
                ix.apply(revision, upserted, &deleted);
                revision
            }
            EntriesSince::Resync { .. } => {
                // Read in pages (never every row at once), at the revision read first; what
                // changed meanwhile comes from the log after it (applying it twice is
                // harmless: an added entry replaces itself, a deleted one stays deleted).
                let at = self.store.revision(vouch_store::ENTRIES_REVISION).await?;
                let mut fresh = EntryIndex {
                    revision: at,
                    ..EntryIndex::default()
                };
                let mut after = String::new();
                loop {
                    let page = self.store.entries_page(&after, LOAD_PAGE).await?;
                    let Some(last) = page.last() else { break };
                    after = last.id.clone();
                    for entry in page {
                        fresh.put(entry);
                    }
                }
                if let EntriesSince::Changes {
                    revision,
                    upserted,
                    deleted,
                } = self.store.entries_since(at, MAX_DELTA).await?
                {
                    fresh.apply(revision, upserted, &deleted);
                }
                let revision = fresh.revision;
                *e.index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                e.loaded.store(true, Ordering::Release);
                revision
            }
        };
        e.revision.send_if_modified(|r| {
            let moved = revision > *r;
            *r = (*r).max(revision);
            moved
        });
        Ok(revision)
    }

    /// The registration entries that apply to a workload with `available` selectors, from the
    /// index brought up to date first.
    pub(crate) async fn matching_entries(
        &self,
        available: &[Selector],
    ) -> Result<Vec<Entry>, ApiError> {
        self.refresh_entries().await?;
        Ok(read(&self.entries.index).matching(available))
    }

    /// Entries in the index (for the metrics page and the scale benchmark).
    pub(crate) fn entries_held(&self) -> usize {
        read(&self.entries.index).len()
    }

    /// The enrolled key that signed an entries request for `op`, after checking its size, its
    /// date (within the clock skew) and its signature.
    async fn entries_caller(
        &self,
        op: &str,
        req: &EntriesRequest,
    ) -> Result<vouch_store::AgentKeyRecord, ApiError> {
        if req.key_id.is_empty() || req.key_id.len() > 128 || req.signature.len() > 128 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "key_id of 1-128 bytes and an Ed25519 signature",
            ));
        }
        let (now, skew) = (unix_now(), self.cfg.clock_skew);
        if req.iat.saturating_add(skew) < now {
            return Err(ApiError::new(
                ErrorKind::NonceExpired,
                format!(
                    "the entries request was signed {} s ago; sign a new one",
                    now.saturating_sub(req.iat)
                ),
            ));
        }
        if req.iat > now.saturating_add(skew) {
            return Err(ApiError::new(
                ErrorKind::NonceFromFuture,
                "the entries request is dated ahead of this verifier's clock",
            ));
        }
        let key = self.store.agent_key(&req.key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!(
                    "key {:?} is not enrolled",
                    vouch_core::clip(&req.key_id, 64)
                ),
            )
        })?;
        let msg = entries_signing_input(op, &req.key_id, req.since, req.iat);
        if !verify_ed25519(&key.public_key, &msg, &req.signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "entries request is not signed by the agent key it names",
            ));
        }
        Ok(key)
    }

    /// `POST /v1/entries/watch`: answer as soon as the entries revision moves past `since`, or
    /// after the watch timeout. Bounded: at most `max_entry_watchers` at once on this verifier
    /// and `max_entry_watchers_per_key` per agent key (`overloaded` past either).
    pub(crate) async fn watch_entries(
        &self,
        req: EntriesRequest,
    ) -> Result<EntriesWatchResponse, ApiError> {
        let key = self.entries_caller("watch", &req).await?;
        let e = &self.entries;
        let busy = |what: &str| {
            ApiError::new(
                ErrorKind::Overloaded,
                format!("too many entry watchers {what}; poll /v1/entries/sync or retry later"),
            )
        };
        {
            let mut m = e.per_key.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(key.id.clone()).or_default();
            if *n >= self.cfg.max_entry_watchers_per_key {
                if *n == 0 {
                    m.remove(&key.id);
                }
                return Err(busy("for this agent key"));
            }
            if e.watchers.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_entry_watchers {
                e.watchers.fetch_sub(1, Ordering::AcqRel);
                if *n == 0 {
                    m.remove(&key.id);
                }
                return Err(busy("on this verifier"));
            }
            *n += 1;
        }
        // Given back when the watch ends, however it ends (answered, timed out, dropped).
        let _slot = WatchSlot {
            entries: e,
            key: key.id.clone(),
        };
        let mut rx = e.revision.subscribe();
        if !e.loaded.load(Ordering::Acquire) || *rx.borrow() <= req.since {
            // Whatever another replica changed since the poller last looked.
            let current = self.refresh_entries().await?;
            if req.since > current {
                // Ahead of the store itself (a store restored from a backup, another
                // cluster's revision): no change would ever pass it. Answer now, so the agent
                // syncs, and is given everything again.
                return Ok(EntriesWatchResponse {
                    revision: current,
                    changed: true,
                });
            }
        }
        // Under the connection's idle timeout, so the listener does not close a waiting watch.
        let wait = Duration::from_secs(
            self.cfg
                .entries_watch_timeout
                .min(self.cfg.idle_timeout.saturating_sub(5))
                .max(1),
        );
        let since = req.since;
        let changed = matches!(
            tokio::time::timeout(wait, rx.wait_for(|r| *r > since)).await,
            Ok(Ok(_))
        );
        let revision = *rx.borrow();
        Ok(EntriesWatchResponse { revision, changed })
    }

    /// `POST /v1/entries/sync`: the entries that concern the caller's node, as the changes
    /// after `since` (from the store's change log) or, when the log does not reach back that
    /// far (or `since` is 0), in full from the index.
    pub(crate) async fn sync_entries(
        &self,
        req: EntriesRequest,
    ) -> Result<EntriesSyncResponse, ApiError> {
        let key = self.entries_caller("sync", &req).await?;
        let node = key.node_id.as_str();
        let delta = if req.since == 0 {
            None
        } else {
            match self.store.entries_since(req.since, MAX_DELTA).await? {
                EntriesSince::Changes {
                    revision,
                    upserted,
                    deleted,
                } => Some(EntriesSyncResponse {
                    revision,
                    full: false,
                    entries: upserted
                        .iter()
                        .filter(|e| EntryIndex::concerns(e, node))
                        .map(record)
                        .collect(),
                    // A tombstone cannot say whom its entry concerned: all are sent, and an
                    // agent drops the ids it holds.
                    deleted,
                }),
                EntriesSince::Resync { .. } => None,
            }
        };
        if let Some(d) = delta {
            return Ok(d);
        }
        self.refresh_entries().await?;
        let ix = read(&self.entries.index);
        let entries: Vec<EntryRecord> = ix
            .for_node(node)
            .take(MAX_SYNC_ENTRIES + 1)
            .map(|e| e.record())
            .collect();
        if entries.len() > MAX_SYNC_ENTRIES {
            return Err(ApiError::new(
                ErrorKind::Overloaded,
                format!("more than {MAX_SYNC_ENTRIES} entries concern node {node}"),
            ));
        }
        Ok(EntriesSyncResponse {
            revision: ix.revision,
            full: true,
            entries,
            deleted: Vec::new(),
        })
    }

    /// Entry watchers waiting now.
    pub(crate) fn entry_watchers(&self) -> usize {
        self.entries.watchers.load(Ordering::Acquire)
    }
}

/// Watch the store's entries revision (one row) every `every`, so changes made through another
/// replica reach this one's index and watchers; changes made here are applied at once.
pub(crate) async fn poll(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = state.refresh_entries().await {
            tracing::warn!("entries refresh failed: {}", e.message);
        }
    }
}

/// Sign an entries request for `op` (`watch` or `sync`) with an agent key (for agents and
/// tests).
pub fn sign_entries_request(
    key: &vouch_evidence::AgentKey,
    op: &str,
    key_id: &str,
    since: u64,
    iat: u64,
) -> EntriesRequest {
    EntriesRequest {
        key_id: key_id.to_string(),
        since,
        iat,
        signature: key.sign_b64(&entries_signing_input(op, key_id, since, iat)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(id: &str, sels: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            spiffe_id: format!("spiffe://td/{id}"),
            selectors: sels.iter().map(|s| Selector::parse(s).unwrap()).collect(),
            ttl: 60,
            created_at: 0,
        }
    }

    fn sels(s: &[&str]) -> Vec<Selector> {
        s.iter().map(|s| Selector::parse(s).unwrap()).collect()
    }

    #[test]
    fn the_index_matches_as_a_scan_would() {
        let all = vec![
            entry("a", &["unix:uid:1000", "vouch:node:n1"]),
            entry("b", &["unix:uid:1000"]),
            entry("c", &["vouch:status:affirming"]),
            entry("d", &["unix:uid:1000", "unix:sha256:ab", "vouch:node:n2"]),
            entry("e", &["os:id:debian", "unix:gid:5"]),
        ];
        let mut ix = EntryIndex::default();
        ix.apply(7, all.clone(), &[]);
        for avail in [
            sels(&["unix:uid:1000", "vouch:node:n1", "vouch:status:affirming"]),
            sels(&["unix:uid:1000", "unix:sha256:ab", "vouch:node:n2"]),
            sels(&["os:id:debian", "unix:gid:5", "unix:gid:5"]),
            sels(&["unix:uid:1"]),
        ] {
            let want: Vec<Entry> = vouch_identity::matching(&all, &avail)
                .into_iter()
                .cloned()
                .collect();
            assert_eq!(ix.matching(&avail), want, "{avail:?}");
        }
        ix.remove("a");
        ix.put(entry("a2", &["unix:uid:1000", "vouch:node:n1"]));
        let got = ix.matching(&sels(&["unix:uid:1000", "vouch:node:n1"]));
        assert_eq!(
            got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a2", "b"]
        );
        assert_eq!(ix.len(), 5);
        assert!(EntryIndex::concerns(&all[0], "n1"));
        assert!(!EntryIndex::concerns(&all[0], "n2"));
        assert!(EntryIndex::concerns(&all[1], "n2"));
    }

    /// Ten thousand entries of one node, each with its own uid: listed under the uid once the
    /// node's list is the longer, so a lookup checks a handful of candidates, not 10,000.
    #[test]
    fn lists_stay_short_when_many_entries_share_a_selector() {
        let mut ix = EntryIndex::default();
        for i in 0..10_000 {
            ix.put(entry(
                &format!("e{i}"),
                &["vouch:node:n1", &format!("unix:uid:{i}")],
            ));
        }
        assert!(ix.by_key.values().map(Vec::len).max().unwrap() <= 2);
        let avail = sels(&["vouch:node:n1", "unix:uid:77", "vouch:status:affirming"]);
        let got = ix.matching(&avail);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "e77");
    }
}
