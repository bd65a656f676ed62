//! Registration entries pushed to the agent (issue 13 item 5): the agent holds a long poll on
//! the verifier (`POST /v1/entries/watch`) and, when it fires, asks only for what changed
//! (`POST /v1/entries/sync` after the revision it holds). The new revision refreshes the
//! Workload API's caches and open streams at once, instead of at the next attestation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use vouch_core::wire::{EntriesRequest, EntriesSyncResponse, EntryRecord, entries_signing_input};
use vouch_evidence::AgentKey;

use crate::{AgentError, VerifierClient};

/// The registration entries that concern this node, as last synced, at a revision.
#[derive(Debug, Default, Clone)]
pub struct EntryMirror {
    revision: u64,
    entries: HashMap<String, EntryRecord>,
}

impl EntryMirror {
    /// The revision held (0: nothing synced yet).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One entry by id.
    pub fn get(&self, id: &str) -> Option<&EntryRecord> {
        self.entries.get(id)
    }

    /// Apply a sync answer: replace everything (`full`) or apply the changes.
    pub fn apply(&mut self, r: EntriesSyncResponse) {
        if r.full {
            self.entries.clear();
        }
        for id in &r.deleted {
            self.entries.remove(id);
        }
        for e in r.entries {
            self.entries.insert(e.id.clone(), e);
        }
        self.revision = r.revision;
    }

    /// Bring the mirror up to the verifier's revision with one sync request signed by `key`.
    /// Returns whether anything was applied.
    pub async fn sync(
        &mut self,
        client: &VerifierClient,
        key: &AgentKey,
        key_id: &str,
    ) -> Result<EntriesSyncResponse, AgentError> {
        let r = client
            .entries_sync(&signed(key, "sync", key_id, self.revision))
            .await?;
        let out = EntriesSyncResponse {
            revision: r.revision,
            full: r.full,
            entries: Vec::new(),
            deleted: Vec::new(),
        };
        self.apply(r);
        Ok(out)
    }
}

/// An entries request for `op` (`watch` or `sync`) signed by the agent key now.
pub fn signed(key: &AgentKey, op: &str, key_id: &str, since: u64) -> EntriesRequest {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    EntriesRequest {
        key_id: key_id.to_string(),
        since,
        iat,
        signature: key.sign_b64(&entries_signing_input(op, key_id, since, iat)),
    }
}

/// Follow the verifier's registration entries until the task is dropped: watch, sync what
/// changed, publish the new revision on `revision` (which refreshes the Workload API), watch
/// again. A refused or failed watch or sync moves to the next verifier of `clients` (from
/// `first`) after `retry` (the attestation result still carries the revision meanwhile).
pub(crate) async fn follow(
    clients: Vec<VerifierClient>,
    first: usize,
    key: Arc<AgentKey>,
    key_id: String,
    revision: Arc<tokio::sync::watch::Sender<u64>>,
    retry: Duration,
) {
    let mut mirror = EntryMirror::default();
    let mut at = first;
    loop {
        let Some(client) = clients.get(at % clients.len().max(1)) else {
            return;
        };
        let since = mirror.revision();
        let watched = client
            .entries_watch(
                &signed(&key, "watch", &key_id, since),
                Duration::from_secs(120),
            )
            .await;
        let moved = match watched {
            Ok(w) => w.changed || since == 0,
            Err(e) => {
                tracing::debug!("entries watch: {e}");
                at = at.wrapping_add(1);
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if !moved {
            continue;
        }
        match mirror.sync(client, &key, &key_id).await {
            Ok(r) => {
                tracing::debug!(
                    revision = r.revision,
                    full = r.full,
                    held = mirror.len(),
                    "registration entries synced"
                );
                revision.send_if_modified(|cur| {
                    let changed = *cur != r.revision;
                    *cur = r.revision;
                    changed
                });
            }
            Err(e) => {
                tracing::debug!("entries sync: {e}");
                at = at.wrapping_add(1);
                tokio::time::sleep(retry).await;
            }
        }
    }
}
