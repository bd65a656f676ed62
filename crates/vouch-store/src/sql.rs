//! The [`Store`](crate::Store) implementation shared by the SQLite and PostgreSQL stores. The
//! SQL is written once, in the dialect both accept (`$N` parameters, `ON CONFLICT`, `RETURNING`,
//! `BIGINT` casts), so the two backends cannot drift apart; each backend only opens its pool.

/// Implement `Store` for `$store` (a struct with `pool`, `writer` and `stats` fields) whose
/// connections are `$conn` to a `$db` database. `$lock_nodes` is the statement that locks
/// node rows for a batch, in node order, as the text before and after the list of ids.
/// The row mappers of [`crate::rows::row_mappers`] must be in scope.
macro_rules! store_impl {
    ($store:ty, $conn:ty, $db:ty, $lock_nodes:expr) => {
        impl $store {
            /// A write to `tpm_keys` that broke the one-EK-per-bound-node index becomes
            /// [`StoreError::EkEnrolled`] naming the node that holds `ek_key`.
            async fn ek_conflict<T>(
                &self,
                r: std::result::Result<T, sqlx::Error>,
                ek_key: Option<&str>,
            ) -> Result<()> {
                match r {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        let holder: Option<String> = match ek_key {
                            Some(k) => sqlx::query_scalar(
                                "SELECT node_id FROM tpm_keys WHERE ek_key = $1 AND bound_at IS NOT NULL",
                            )
                            .bind(k)
                            .fetch_optional(&self.pool)
                            .await?,
                            None => None,
                        };
                        Err(StoreError::EkEnrolled {
                            node_id: holder.unwrap_or_else(|| "another node".into()),
                        })
                    }
                    Err(e) => Err(e.into()),
                }
            }

            /// One attestation's checks and writes, on `conn`, inside a transaction (or a
            /// savepoint of one) that the caller commits.
            async fn record_in(
                conn: &mut $conn,
                rec: &crate::group::Prepared,
                stats: &crate::group::Stats,
            ) -> Result<()> {
                // The node's row is the serialisation point this shares with every revocation
                // that can change this workload (`append_revocation` takes the same lock before
                // it writes a workload): whichever commits second sees the other. Without it,
                // under PostgreSQL's READ COMMITTED a revocation committed between the check
                // below and the upsert was overwritten. On SQLite this write also takes the
                // database's write lock at once.
                sqlx::query("UPDATE nodes SET hostname = hostname WHERE id = $1")
                    .bind(&rec.node_id)
                    .execute(&mut *conn)
                    .await?;
                if let Some((id, expires_at)) = &rec.nonce {
                    let fresh = sqlx::query(
                        "INSERT INTO used_nonces (id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(i(*expires_at))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if fresh != 1 {
                        return Err(StoreError::NonceReused);
                    }
                }
                // After the node lock, in the same transaction as the write: a revocation
                // committed before this point is never overwritten by a result appraised before
                // it, and one that commits later waits for this transaction and then applies.
                // The agent key too: it was looked up before this transaction, and a revocation
                // of it committed since must not let this result through.
                if let Some(kind) = sqlx::query_scalar::<_, String>(
                    "SELECT kind FROM revocation_log
                     WHERE (kind = 'workload' AND target = $1) OR (kind = 'node' AND target = $2)
                        OR (kind = 'agent-key' AND target = $3)",
                )
                .bind(&rec.workload_id)
                .bind(&rec.node_id)
                .bind(&rec.key_id)
                .fetch_optional(&mut *conn)
                .await?
                {
                    let what = match kind.as_str() {
                        "node" => &rec.node_id,
                        "agent-key" => &rec.key_id,
                        _ => &rec.workload_id,
                    };
                    return Err(StoreError::Revoked(format!("{kind} {what}")));
                }
                // Its claim parts not known to be stored (marked as stored only after the commit).
                let parts = stats.known.unknown(rec.claims.parts.iter());
                stats.parts(parts.len(), rec.claims.parts.len() - parts.len());
                Self::insert_parts(&mut *conn, &parts).await?;
                sqlx::query(
                    "INSERT INTO attestations (id, workload_id, node_id, key_id, evidence_kind,
                        evidence_sha256, claims, status, trust_vector, reasons, policy_id, policy_version,
                        result, created_at, expires_at, claims_parts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(&rec.id)
                .bind(&rec.workload_id)
                .bind(&rec.node_id)
                .bind(&rec.key_id)
                .bind(&rec.evidence_kind)
                .bind(&rec.evidence_sha256)
                .bind(&rec.claims.claims)
                .bind(&rec.status)
                .bind(&rec.trust_vector)
                .bind(&rec.reasons)
                .bind(&rec.policy_id)
                .bind(i64::from(rec.policy_version))
                .bind(&rec.result)
                .bind(i(rec.created_at))
                .bind(i(rec.expires_at))
                .bind(rec.claims.refs.as_deref())
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO workloads (id, node_id, name, status, reason, last_attested_at,
                        last_attestation_id, deadline, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                        last_attested_at = excluded.last_attested_at,
                        last_attestation_id = excluded.last_attestation_id,
                        deadline = excluded.deadline, updated_at = excluded.updated_at",
                )
                .bind(&rec.workload_id)
                .bind(&rec.node_id)
                .bind(&rec.name)
                .bind(&rec.status)
                .bind(&rec.reason)
                .bind(i(rec.created_at))
                .bind(&rec.id)
                .bind(i(rec.deadline))
                .bind(i(rec.created_at))
                .execute(&mut *conn)
                .await?;
                // The decision, in the audit log, in the same transaction (issue 16 item 3):
                // last, so the audit counter's row lock is held only until the commit.
                crate::audit::append_in!(&mut *conn, &rec.audit);
                Ok(())
            }

            /// Store claim parts (each once, in digest order: see
            /// [`crate::parts::KnownParts::unknown`]); one already there (written by another
            /// transaction or replica) is left as it is.
            async fn insert_parts(
                conn: &mut $conn,
                parts: &[&crate::parts::Part],
            ) -> std::result::Result<(), sqlx::Error> {
                if parts.is_empty() {
                    return Ok(());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO claim_parts (sha256, body) ");
                q.push_values(parts, |mut b, p| {
                    b.push_bind(p.hex.as_str()).push_bind(p.body.as_str());
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().persistent(false).execute(&mut *conn).await?;
                Ok(())
            }

            /// One record in its own transaction (group commit off, or a record retried
            /// after its batch).
            async fn record_alone(
                pool: &sqlx::Pool<$db>,
                rec: &crate::group::Prepared,
                stats: &crate::group::Stats,
            ) -> Result<()> {
                let mut tx = pool.begin().await?;
                Self::record_in(&mut tx, rec, stats).await?;
                tx.commit().await?;
                stats.known.committed(rec.claims.parts.iter());
                stats.committed(1);
                Ok(())
            }

            /// The fast path of a batch: every record's checks and writes as one statement per
            /// kind (node locks, revocation check, nonces, attestations, workloads) instead of
            /// five per record. Taken only when it gives exactly what record-by-record would:
            /// `Ok(false)` (and the transaction must be rolled back) as soon as any record
            /// could be refused (two records with one nonce, a nonce already used, anything
            /// revoked) or a statement fails; the caller then takes the record-by-record path.
            async fn record_bulk(
                conn: &mut $conn,
                jobs: &[crate::group::Job],
                stats: &crate::group::Stats,
            ) -> std::result::Result<bool, sqlx::Error> {
                let recs: Vec<&crate::group::Prepared> = jobs.iter().map(|j| &j.rec).collect();
                let nonces: Vec<(&str, u64)> = recs
                    .iter()
                    .filter_map(|r| r.nonce.as_ref().map(|(id, exp)| (id.as_str(), *exp)))
                    .collect();
                {
                    let mut seen = std::collections::HashSet::new();
                    if !nonces.iter().all(|(id, _)| seen.insert(*id)) {
                        return Ok(false);
                    }
                }
                let mut nodes: Vec<&str> = recs.iter().map(|r| r.node_id.as_str()).collect();
                nodes.sort_unstable();
                nodes.dedup();
                // The node locks first, in node order (see `record_in`; on SQLite this write
                // takes the database's write lock at once).
                let mut q = sqlx::QueryBuilder::<$db>::new($lock_nodes.0);
                let mut list = q.separated(", ");
                for n in &nodes {
                    list.push_bind(*n);
                }
                q.push($lock_nodes.1);
                q.build().persistent(false).execute(&mut *conn).await?;
                // Revocations, after the locks (see `record_in`).
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM revocation_log WHERE (kind = 'workload' AND target IN (",
                );
                let mut list = q.separated(", ");
                for r in &recs {
                    list.push_bind(r.workload_id.as_str());
                }
                q.push(")) OR (kind = 'node' AND target IN (");
                let mut list = q.separated(", ");
                for n in &nodes {
                    list.push_bind(*n);
                }
                q.push(")) OR (kind = 'agent-key' AND target IN (");
                let mut list = q.separated(", ");
                for r in &recs {
                    list.push_bind(r.key_id.as_str());
                }
                q.push("))");
                let revoked: i64 = q
                    .build_query_scalar()
                    .persistent(false)
                    .fetch_one(&mut *conn)
                    .await?;
                if revoked != 0 {
                    return Ok(false);
                }
                if !nonces.is_empty() {
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new("INSERT INTO used_nonces (id, expires_at) ");
                    q.push_values(&nonces, |mut b, (id, exp)| {
                        b.push_bind(*id).push_bind(i(*exp));
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    let fresh = q.build().persistent(false).execute(&mut *conn).await?;
                    if usize::try_from(fresh.rows_affected()).ok() != Some(nonces.len()) {
                        return Ok(false);
                    }
                }
                // The batch's claim parts not known to be stored, each once however many
                // records share it.
                let parts = stats.known.unknown(recs.iter().flat_map(|r| r.claims.parts.iter()));
                let all: usize = recs.iter().map(|r| r.claims.parts.len()).sum();
                stats.parts(parts.len(), all - parts.len());
                Self::insert_parts(&mut *conn, &parts).await?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO attestations (id, workload_id, node_id, key_id, evidence_kind,
                        evidence_sha256, claims, status, trust_vector, reasons, policy_id,
                        policy_version, result, created_at, expires_at, claims_parts) ",
                );
                q.push_values(&recs, |mut b, r| {
                    b.push_bind(r.id.as_str())
                        .push_bind(r.workload_id.as_str())
                        .push_bind(r.node_id.as_str())
                        .push_bind(r.key_id.as_str())
                        .push_bind(r.evidence_kind.as_str())
                        .push_bind(r.evidence_sha256.as_str())
                        .push_bind(r.claims.claims.as_str())
                        .push_bind(r.status.as_str())
                        .push_bind(r.trust_vector.as_str())
                        .push_bind(r.reasons.as_str())
                        .push_bind(r.policy_id.as_str())
                        .push_bind(i64::from(r.policy_version))
                        .push_bind(r.result.as_str())
                        .push_bind(i(r.created_at))
                        .push_bind(i(r.expires_at))
                        .push_bind(r.claims.refs.as_deref());
                });
                q.build().persistent(false).execute(&mut *conn).await?;
                // One upsert per workload, its last record's: record by record, each upsert
                // overwrites every column the previous one of the same workload set (and one
                // statement may not touch a row twice).
                let mut last: Vec<&crate::group::Prepared> = Vec::with_capacity(recs.len());
                {
                    let mut seen = std::collections::HashSet::new();
                    for r in recs.iter().rev() {
                        if seen.insert(r.workload_id.as_str()) {
                            last.push(r);
                        }
                    }
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO workloads (id, node_id, name, status, reason, last_attested_at,
                        last_attestation_id, deadline, updated_at) ",
                );
                q.push_values(&last, |mut b, r| {
                    b.push_bind(r.workload_id.as_str())
                        .push_bind(r.node_id.as_str())
                        .push_bind(r.name.as_str())
                        .push_bind(r.status.as_str())
                        .push_bind(r.reason.as_str())
                        .push_bind(i(r.created_at))
                        .push_bind(r.id.as_str())
                        .push_bind(i(r.deadline))
                        .push_bind(i(r.created_at));
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                        last_attested_at = excluded.last_attested_at,
                        last_attestation_id = excluded.last_attestation_id,
                        deadline = excluded.deadline, updated_at = excluded.updated_at",
                );
                q.build().persistent(false).execute(&mut *conn).await?;
                // The decisions, in the audit log (issue 16 item 3), in the batch's order: the
                // counter moved once by the batch's size, the entries in one statement.
                let n = i64::try_from(recs.len()).unwrap_or(i64::MAX);
                let end: i64 = sqlx::query_scalar(
                    "UPDATE audit_size SET size = size + $1 WHERE id = 0 RETURNING size",
                )
                .bind(n)
                .fetch_one(&mut *conn)
                .await?;
                let rows: Vec<(i64, String, Vec<u8>)> = recs
                    .iter()
                    .zip(end - n..)
                    .map(|(r, seq)| {
                        let (entry, hash) = crate::audit::encode(u64::try_from(seq).unwrap_or(0), &r.audit);
                        (seq, entry, hash.to_vec())
                    })
                    .collect();
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry, leaf_hash) ",
                );
                q.push_values(recs.iter().zip(&rows), |mut b, (r, (seq, entry, hash))| {
                    b.push_bind(*seq)
                        .push_bind(i(r.audit.time))
                        .push_bind(r.audit.kind.as_str())
                        .push_bind(r.audit.actor.as_str())
                        .push_bind(r.audit.subject.as_str())
                        .push_bind(entry.as_str())
                        .push_bind(hash.as_slice());
                });
                q.build().persistent(false).execute(&mut *conn).await?;
                Ok(true)
            }

            /// Write a batch in one transaction and answer each caller after the commit (see
            /// [`crate::group`]): all at once when no record can be refused
            /// ([`Self::record_bulk`]), else record by record, a savepoint each.
            async fn record_batch(
                pool: &sqlx::Pool<$db>,
                mut jobs: Vec<crate::group::Job>,
                stats: &crate::group::Stats,
            ) {
                // Node rows are locked in node order (a stable sort keeps each node's records in
                // arrival order), so two batches (two replicas on one PostgreSQL) never wait
                // for each other's node locks in a cycle.
                jobs.sort_by(|a, b| a.rec.node_id.cmp(&b.rec.node_id));
                if jobs.len() == 1 {
                    // Alone in the queue: written as it was before group commit.
                    for job in jobs {
                        let r = Self::record_alone(pool, &job.rec, stats).await;
                        job.answer(r);
                    }
                    return;
                }
                let mut tx = match pool.begin().await {
                    Ok(tx) => tx,
                    Err(e) => return crate::group::fail_all(jobs, e),
                };
                {
                    match Self::record_bulk(&mut tx, &jobs, stats).await {
                        Ok(true) => {
                            if let Err(e) = tx.commit().await {
                                return crate::group::fail_all(jobs, e);
                            }
                            stats.known.committed(jobs.iter().flat_map(|j| j.rec.claims.parts.iter()));
                            stats.committed(jobs.len());
                            for job in jobs {
                                job.answer(Ok(()));
                            }
                            return;
                        }
                        Ok(false) | Err(_) => {
                            // Nothing of it stays: start again, record by record.
                            stats.record_by_record();
                            if let Err(e) = tx.rollback().await {
                                return crate::group::fail_all(jobs, e);
                            }
                            tx = match pool.begin().await {
                                Ok(tx) => tx,
                                Err(e) => return crate::group::fail_all(jobs, e),
                            };
                        }
                    }
                }
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in &jobs {
                    if let Err(e) = sqlx::query("SAVEPOINT vouch_record").execute(&mut *tx).await {
                        return crate::group::fail_all(jobs, e);
                    }
                    let r = Self::record_in(&mut tx, &job.rec, stats).await;
                    let end: &[&str] = if r.is_ok() {
                        &["RELEASE SAVEPOINT vouch_record"]
                    } else {
                        // This record's writes go; the batch's earlier records stay.
                        &["ROLLBACK TO SAVEPOINT vouch_record", "RELEASE SAVEPOINT vouch_record"]
                    };
                    for sql in end {
                        if let Err(e) = sqlx::query(sql).execute(&mut *tx).await {
                            return crate::group::fail_all(jobs, e);
                        }
                    }
                    outcomes.push(r);
                }
                if let Err(e) = tx.commit().await {
                    return crate::group::fail_all(jobs, e);
                }
                stats.known.committed(
                    jobs.iter()
                        .zip(&outcomes)
                        .filter(|(_, r)| r.is_ok())
                        .flat_map(|(j, _)| j.rec.claims.parts.iter()),
                );
                stats.committed(outcomes.iter().filter(|r| r.is_ok()).count());
                let mut again = Vec::new();
                for (job, r) in jobs.into_iter().zip(outcomes) {
                    if crate::group::retry_alone(&r) {
                        again.push(job);
                    } else {
                        job.answer(r);
                    }
                }
                // Committed first, so this batch's locks are gone: alone, a record takes one
                // node's and one workload's locks, as it did before group commit.
                for job in again {
                    let r = Self::record_alone(pool, &job.rec, stats).await;
                    job.answer(r);
                }
            }

            /// The committer task of a store: batches until the store is dropped.
            async fn committer(
                pool: sqlx::Pool<$db>,
                mut rx: tokio::sync::mpsc::Receiver<crate::group::Job>,
                max_batch: usize,
                stats: std::sync::Arc<crate::group::Stats>,
            ) {
                while let Some(jobs) = crate::group::next_batch(&mut rx, max_batch.max(1)).await {
                    Self::record_batch(&pool, jobs, &stats).await;
                }
            }

            /// Start the committer (when `opts` ask for group commit) and give the store's
            /// handles on it.
            fn start_writer(
                pool: &sqlx::Pool<$db>,
                opts: crate::WriteOptions,
            ) -> (Option<crate::group::Writer>, std::sync::Arc<crate::group::Stats>) {
                let stats = std::sync::Arc::new(crate::group::Stats::default());
                // Outside a tokio runtime there is nowhere to run the committer: every record
                // is then its own transaction.
                let runtime = match tokio::runtime::Handle::try_current() {
                    Ok(h) if opts.group_commit => h,
                    _ => return (None, stats),
                };
                let (writer, rx) = crate::group::Writer::channel(opts.max_batch);
                runtime.spawn(Self::committer(pool.clone(), rx, opts.max_batch, stats.clone()));
                (Some(writer), stats)
            }

            /// What this store's attestation writes have cost so far (shared by its clones).
            pub fn commit_stats(&self) -> crate::CommitStats {
                self.stats.snapshot()
            }

            async fn bump_revision(conn: &mut $conn, key: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, '1')
                     ON CONFLICT (key) DO UPDATE
                     SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)",
                )
                .bind(key)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Move the entries revision on by `n` changes and return the new revision.
            async fn bump_entries_revision(conn: &mut $conn, n: u64) -> Result<u64> {
                let r: i64 = sqlx::query_scalar(
                    "INSERT INTO settings (key, value) VALUES ($1, $3)
                     ON CONFLICT (key) DO UPDATE
                     SET value = CAST(CAST(settings.value AS BIGINT) + $2 AS TEXT)
                     RETURNING CAST(value AS BIGINT)",
                )
                .bind(crate::ENTRIES_REVISION)
                .bind(i(n))
                .bind(n.to_string())
                .fetch_one(&mut *conn)
                .await?;
                Ok(u(r))
            }

            /// Append one change to the entries change log at `revision` (`entry` the added
            /// entry's JSON, `None` for a deletion).
            async fn log_entry_change(
                conn: &mut $conn,
                revision: u64,
                entry_id: &str,
                entry: Option<&str>,
            ) -> Result<()> {
                sqlx::query("INSERT INTO entries_log (revision, entry_id, entry) VALUES ($1, $2, $3)")
                    .bind(i(revision))
                    .bind(entry_id)
                    .bind(entry)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Forget change-log rows at or below `upto` and raise the floor to it.
            async fn prune_log_in(conn: &mut $conn, upto: u64) -> Result<()> {
                sqlx::query("DELETE FROM entries_log WHERE revision <= $1")
                    .bind(i(upto))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE
                     SET value = CASE WHEN CAST(settings.value AS BIGINT) < CAST(excluded.value AS BIGINT)
                                 THEN excluded.value ELSE settings.value END",
                )
                .bind(crate::ENTRIES_LOG_FLOOR)
                .bind(upto.to_string())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Insert one entry on `conn` (a duplicate is [`StoreError::Duplicate`]).
            async fn insert_entry(conn: &mut $conn, e: &vouch_identity::Entry, selectors: &str) -> Result<()> {
                let r = sqlx::query(
                    "INSERT INTO entries (id, spiffe_id, selectors, ttl, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&e.id)
                .bind(&e.spiffe_id)
                .bind(selectors)
                .bind(i(e.ttl))
                .bind(i(e.created_at))
                .execute(&mut *conn)
                .await;
                match r {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(StoreError::Duplicate(
                        format!("an entry for {} with these selectors (or its id)", e.spiffe_id),
                    )),
                    Err(err) => Err(err.into()),
                }
            }

            /// [`Store::enroll_attested`]'s checks and writes, on `conn`, inside a transaction
            /// that the caller commits (or drops: then nothing of it stays).
            async fn enroll_attested_in(
                conn: &mut $conn,
                node: &crate::AttestedNode,
                public_key: &[u8],
                now: u64,
            ) -> Result<Enrollment> {
                let key_id = key_id(public_key);
                let selectors = serde_json::to_string(&node.selectors)
                    .map_err(|e| StoreError::Corrupt(format!("node selectors: {e}")))?;
                // Write first, so the transaction takes the write lock at once: two agents
                // attesting the same node race on this row.
                let seen = sqlx::query(
                    "UPDATE node_attestations SET attestations = attestations + 1
                     WHERE node_id = $1 RETURNING method",
                )
                .bind(&node.node_id)
                .fetch_optional(&mut *conn)
                .await?;
                let existing = sqlx::query("SELECT id, node_id FROM agent_keys WHERE public_key = $1")
                    .bind(public_key)
                    .fetch_optional(&mut *conn)
                    .await?;
                if let Some(r) = &existing {
                    let holder: String = r.get("node_id");
                    if holder != node.node_id || seen.is_none() {
                        return Err(StoreError::KeyAlreadyEnrolled { key_id: r.get("id") });
                    }
                }
                match seen {
                    None => {
                        let clash: Option<String> =
                            sqlx::query_scalar("SELECT id FROM nodes WHERE id = $1")
                                .bind(&node.node_id)
                                .fetch_optional(&mut *conn)
                                .await?;
                        if clash.is_some() {
                            return Err(StoreError::Duplicate(format!(
                                "node {} (enrolled another way)",
                                node.node_id
                            )));
                        }
                        sqlx::query("INSERT INTO nodes (id, hostname, created_at) VALUES ($1, $2, $3)")
                            .bind(&node.node_id)
                            .bind(&node.hostname)
                            .bind(i(now))
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(
                            "INSERT INTO node_attestations
                               (node_id, method, node_key, selectors, first_at, attested_at, attestations)
                             VALUES ($1, $2, $3, $4, $5, $5, 1)",
                        )
                        .bind(&node.node_id)
                        .bind(&node.method)
                        .bind(&node.node_key)
                        .bind(&selectors)
                        .bind(i(now))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Some(r) => {
                        let method: String = r.get("method");
                        if method != node.method {
                            return Err(StoreError::Duplicate(format!(
                                "node {} (attested with {method})",
                                node.node_id
                            )));
                        }
                        // The latest document's selectors (a refusal below rolls this back).
                        sqlx::query(
                            "UPDATE node_attestations SET selectors = $1, attested_at = $2
                             WHERE node_id = $3",
                        )
                        .bind(&selectors)
                        .bind(i(now))
                        .bind(&node.node_id)
                        .execute(&mut *conn)
                        .await?;
                        if existing.is_some() {
                            // The same agent key attesting again: the enrollment it has.
                            return Ok(Enrollment {
                                node_id: node.node_id.clone(),
                                key_id,
                            });
                        }
                        if !node.reattestable {
                            let opened = sqlx::query(
                                "UPDATE tpm_reenrollments SET used_at = $1
                                 WHERE id = (SELECT id FROM tpm_reenrollments
                                   WHERE node_id = $2 AND used_at IS NULL AND expires_at >= $1
                                   ORDER BY created_at DESC, id LIMIT 1)",
                            )
                            .bind(i(now))
                            .bind(&node.node_id)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                            if opened != 1 {
                                return Err(StoreError::NodeAttested {
                                    node_id: node.node_id.clone(),
                                    method,
                                });
                            }
                        }
                        // One agent per node: the key it had stops working.
                        sqlx::query(
                            "UPDATE agent_keys SET revoked_at = $1
                             WHERE node_id = $2 AND revoked_at IS NULL",
                        )
                        .bind(i(now))
                        .bind(&node.node_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO agent_keys (id, node_id, public_key, enrolled_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&key_id)
                .bind(&node.node_id)
                .bind(public_key)
                .bind(i(now))
                .execute(&mut *conn)
                .await?;
                Ok(Enrollment {
                    node_id: node.node_id.clone(),
                    key_id,
                })
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn create_join_token(
                &self,
                token_hash: &str,
                node_name: Option<&str>,
                now: u64,
                expires_at: u64,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO join_tokens (token_hash, node_name, created_at, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(node_name)
                .bind(i(now))
                .bind(i(expires_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn enroll(
                &self,
                token_hash: &str,
                public_key: &[u8],
                hostname: &str,
                now: u64,
            ) -> Result<Enrollment> {
                let mut tx = self.pool.begin().await?;
                let node_id = uuid::Uuid::new_v4().to_string();
                let key_id = key_id(public_key);
                // Write first, so the transaction takes the write lock at once and the token can be
                // consumed by exactly one enrollment.
                let claimed = sqlx::query(
                    "UPDATE join_tokens SET used_at = $1, used_by = $2
                     WHERE token_hash = $3 AND used_at IS NULL AND expires_at >= $4",
                )
                .bind(i(now))
                .bind(&node_id)
                .bind(token_hash)
                .bind(i(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed != 1 {
                    let row =
                        sqlx::query("SELECT used_at, expires_at FROM join_tokens WHERE token_hash = $1")
                            .bind(token_hash)
                            .fetch_optional(&mut *tx)
                            .await?;
                    return Err(match row {
                        None => StoreError::TokenInvalid,
                        Some(r) if r.get::<Option<i64>, _>("used_at").is_some() => StoreError::TokenReused,
                        Some(_) => StoreError::TokenExpired,
                    });
                }
                let existing = sqlx::query("SELECT id FROM agent_keys WHERE public_key = $1")
                    .bind(public_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(r) = existing {
                    return Err(StoreError::KeyAlreadyEnrolled {
                        key_id: r.get("id"),
                    });
                }
                let name: Option<String> =
                    sqlx::query_scalar("SELECT node_name FROM join_tokens WHERE token_hash = $1")
                        .bind(token_hash)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query("INSERT INTO nodes (id, hostname, created_at) VALUES ($1, $2, $3)")
                    .bind(&node_id)
                    .bind(name.as_deref().unwrap_or(hostname))
                    .bind(i(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO agent_keys (id, node_id, public_key, enrolled_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&key_id)
                .bind(&node_id)
                .bind(public_key)
                .bind(i(now))
                .execute(&mut *tx)
                .await?;
                let event = crate::audit::enrollment_event(
                    "enroll.join-token",
                    &node_id,
                    serde_json::json!({
                        "key_id": key_id, "method": "join_token", "hostname": hostname,
                        "token_sha256": token_hash,
                    }),
                    now,
                );
                crate::audit::append_in!(&mut *tx, &event);
                tx.commit().await?;
                Ok(Enrollment { node_id, key_id })
            }

            async fn enroll_attested(
                &self,
                node: &crate::AttestedNode,
                public_key: &[u8],
                now: u64,
            ) -> Result<Enrollment> {
                let mut tx = self.pool.begin().await?;
                let e = Self::enroll_attested_in(&mut tx, node, public_key, now).await?;
                let event = crate::audit::enrollment_event(
                    "enroll.node-attestation",
                    &e.node_id,
                    serde_json::json!({
                        "key_id": e.key_id, "method": node.method, "hostname": node.hostname,
                        "selectors": node.selectors,
                    }),
                    now,
                );
                crate::audit::append_in!(&mut *tx, &event);
                tx.commit().await?;
                Ok(e)
            }

            async fn enroll_attested_tpm(
                &self,
                node: &crate::AttestedNode,
                public_key: &[u8],
                tpm: &TpmKeyRecord,
                now: u64,
            ) -> Result<Enrollment> {
                if tpm.node_id != node.node_id || tpm.ek_key.is_none() {
                    return Err(StoreError::Corrupt(
                        "a TPM join's binding must name the attested node and its EK key".into(),
                    ));
                }
                let mut tx = self.pool.begin().await?;
                let e = Self::enroll_attested_in(&mut tx, node, public_key, now).await?;
                // One EK, one node: checked here, in the transaction, before the write (a
                // unique violation would abort a PostgreSQL transaction); the index still
                // stops a race, as EkEnrolled.
                let holder: Option<String> = sqlx::query_scalar(
                    "SELECT node_id FROM tpm_keys
                     WHERE ek_key = $1 AND bound_at IS NOT NULL AND node_id <> $2",
                )
                .bind(&tpm.ek_key)
                .bind(&node.node_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(node_id) = holder {
                    return Err(StoreError::EkEnrolled { node_id });
                }
                // Activated and bound at once: the caller proved the AK by credential
                // activation before calling. The same EK again keeps its TPM's clock and IMA
                // replay (they are the TPM's, not the AK's).
                let r = sqlx::query(
                    "INSERT INTO tpm_keys (node_id, ek_public, ek_cert, ek_issuer, ak_public,
                        ak_qualified_name, challenge_hash, challenge_expires, activated_at, last_clock,
                        created_at, ek_key, bound_at)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, NULL, $7, $8, $7)
                     ON CONFLICT (node_id) DO UPDATE SET ek_public = excluded.ek_public,
                        ek_cert = excluded.ek_cert, ek_issuer = excluded.ek_issuer,
                        ak_public = excluded.ak_public, ak_qualified_name = excluded.ak_qualified_name,
                        challenge_hash = NULL, challenge_expires = NULL,
                        activated_at = excluded.activated_at,
                        last_clock = CASE WHEN tpm_keys.ek_key = excluded.ek_key
                            OR tpm_keys.ek_public = excluded.ek_public THEN tpm_keys.last_clock END,
                        ima_state = CASE WHEN tpm_keys.ek_key = excluded.ek_key
                            OR tpm_keys.ek_public = excluded.ek_public THEN tpm_keys.ima_state END,
                        ek_key = excluded.ek_key, created_at = excluded.created_at,
                        bound_at = COALESCE(tpm_keys.bound_at, excluded.bound_at)",
                )
                .bind(&tpm.node_id)
                .bind(&tpm.ek_public)
                .bind(&tpm.ek_cert)
                .bind(&tpm.ek_issuer)
                .bind(&tpm.ak_public)
                .bind(&tpm.ak_qualified_name)
                .bind(i(now))
                .bind(&tpm.ek_key)
                .execute(&mut *tx)
                .await;
                if let Err(err) = r {
                    drop(tx);
                    self.ek_conflict(Err::<(), _>(err), tpm.ek_key.as_deref()).await?;
                    return Err(StoreError::Corrupt("TPM join write failed".into()));
                }
                let event = crate::audit::enrollment_event(
                    "enroll.tpm",
                    &e.node_id,
                    serde_json::json!({
                        "key_id": e.key_id, "method": node.method, "hostname": node.hostname,
                        "ek_key": tpm.ek_key,
                    }),
                    now,
                );
                crate::audit::append_in!(&mut *tx, &event);
                tx.commit().await?;
                Ok(e)
            }

            async fn open_tpm_join(
                &self,
                join: &crate::TpmJoinRecord,
                max_open: u64,
                now: u64,
            ) -> Result<bool> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM tpm_joins WHERE expires_at < $1 OR ek_key = $2")
                    .bind(i(now))
                    .bind(&join.ek_key)
                    .execute(&mut *tx)
                    .await?;
                let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tpm_joins")
                    .fetch_one(&mut *tx)
                    .await?;
                if u(open) >= max_open {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO tpm_joins (id, ek_key, node_id, public_key, hostname, ek_public,
                        ek_cert, ek_issuer, ak_public, ak_qualified_name, secret_hash, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&join.id)
                .bind(&join.ek_key)
                .bind(&join.node_id)
                .bind(&join.public_key)
                .bind(&join.hostname)
                .bind(&join.ek_public)
                .bind(&join.ek_cert)
                .bind(&join.ek_issuer)
                .bind(&join.ak_public)
                .bind(&join.ak_qualified_name)
                .bind(&join.secret_hash)
                .bind(i(join.expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn take_tpm_join(&self, id: &str) -> Result<Option<crate::TpmJoinRecord>> {
                let row = sqlx::query("DELETE FROM tpm_joins WHERE id = $1 RETURNING *")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(r) = row else {
                    return Ok(None);
                };
                Ok(Some(crate::TpmJoinRecord {
                    id: r.try_get("id")?,
                    ek_key: r.try_get("ek_key")?,
                    node_id: r.try_get("node_id")?,
                    public_key: r.try_get("public_key")?,
                    hostname: r.try_get("hostname")?,
                    ek_public: r.try_get("ek_public")?,
                    ek_cert: r.try_get("ek_cert")?,
                    ek_issuer: r.try_get("ek_issuer")?,
                    ak_public: r.try_get("ak_public")?,
                    ak_qualified_name: r.try_get("ak_qualified_name")?,
                    secret_hash: r.try_get("secret_hash")?,
                    expires_at: u(r.try_get("expires_at")?),
                }))
            }

            async fn node_attestation(
                &self,
                node_id: &str,
            ) -> Result<Option<crate::NodeAttestationRecord>> {
                let row = sqlx::query("SELECT * FROM node_attestations WHERE node_id = $1")
                    .bind(node_id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(r) = row else {
                    return Ok(None);
                };
                let selectors: String = r.try_get("selectors")?;
                Ok(Some(crate::NodeAttestationRecord {
                    node_id: r.try_get("node_id")?,
                    method: r.try_get("method")?,
                    node_key: r.try_get("node_key")?,
                    selectors: serde_json::from_str(&selectors)
                        .map_err(|e| StoreError::Corrupt(format!("node selectors: {e}")))?,
                    first_at: u(r.try_get("first_at")?),
                    attested_at: u(r.try_get("attested_at")?),
                    attestations: u(r.try_get("attestations")?),
                }))
            }

            async fn nodes_attested_with(
                &self,
                method: &str,
                selector: &str,
            ) -> Result<Vec<crate::NodeAttestationRecord>> {
                // `selectors` is a JSON array of strings: a LIKE on the selector's JSON form
                // narrows the rows in the database, then each row is compared exactly.
                let quoted = serde_json::to_string(selector)
                    .map_err(|e| StoreError::Corrupt(format!("selector: {e}")))?;
                let pattern = format!(
                    "%{}%",
                    quoted
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT node_id FROM node_attestations
                     WHERE method = $1 AND selectors LIKE $2 ESCAPE '\\'
                     ORDER BY attested_at DESC, node_id LIMIT 64",
                )
                .bind(method)
                .bind(&pattern)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::new();
                for id in ids {
                    if let Some(r) = self.node_attestation(&id).await?
                        && r.selectors.iter().any(|s| s == selector)
                    {
                        out.push(r);
                    }
                }
                Ok(out)
            }

            async fn agent_key(&self, key_id: &str) -> Result<Option<AgentKeyRecord>> {
                let row = sqlx::query(
                    "SELECT id, node_id, public_key, enrolled_at FROM agent_keys
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map(agent_key_row))
            }

            async fn appraisal_context(
                &self,
                key_id: &str,
                default_policy: &str,
            ) -> Result<Option<crate::AppraisalContext>> {
                // One statement, so one round trip to the database (or its worker thread).
                let row = sqlx::query(
                    "SELECT k.id, k.node_id, k.public_key, k.enrolled_at,
                        (SELECT value FROM settings WHERE key = $2) AS refs_revision,
                        COALESCE((SELECT value FROM settings WHERE key = 'active_policy'), $3)
                            AS policy_id,
                        (SELECT CAST(MAX(version) AS BIGINT) FROM policies WHERE id =
                            COALESCE((SELECT value FROM settings WHERE key = 'active_policy'), $3))
                            AS policy_version,
                        (SELECT COUNT(*) FROM tpm_keys t
                            WHERE t.node_id = k.node_id AND t.bound_at IS NOT NULL) AS tpm_bound,
                        (SELECT COUNT(*) FROM tpm_keys t
                            WHERE t.node_id = k.node_id AND t.activated_at IS NOT NULL)
                            AS tpm_activated
                     FROM agent_keys k WHERE k.id = $1 AND k.revoked_at IS NULL",
                )
                .bind(key_id)
                .bind(crate::REFVALUES_REVISION)
                .bind(default_policy)
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else {
                    return Ok(None);
                };
                let refs: Option<String> = r.try_get("refs_revision")?;
                let version: Option<i64> = r.try_get("policy_version")?;
                Ok(Some(crate::AppraisalContext {
                    key: agent_key_row(&r),
                    refvalues_revision: refs.and_then(|v| v.parse().ok()).unwrap_or(0),
                    policy_id: r.try_get("policy_id")?,
                    policy_version: version.and_then(|v| u32::try_from(v).ok()),
                    tpm_bound: r.try_get::<i64, _>("tpm_bound")? > 0,
                    tpm_activated: r.try_get::<i64, _>("tpm_activated")? > 0,
                }))
            }

            async fn nonce_used(&self, nonce_id: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM used_nonces WHERE id = $1")
                    .bind(nonce_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n > 0)
            }

            async fn use_nonce(&self, id: &str, expires_at: u64) -> Result<()> {
                let fresh = sqlx::query(
                    "INSERT INTO used_nonces (id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(i(expires_at))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if fresh != 1 {
                    return Err(StoreError::NonceReused);
                }
                Ok(())
            }

            async fn add_policy(&self, id: &str, rego: &str, activate: bool, now: u64) -> Result<u32> {
                let mut tx = self.pool.begin().await?;
                let version: i64 = sqlx::query_scalar(
                    "INSERT INTO policies (id, version, rego, sha256, created_at)
                     SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM policies WHERE id = $5
                     RETURNING version",
                )
                .bind(id)
                .bind(rego)
                .bind(hex_sha256(rego.as_bytes()))
                .bind(i(now))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if activate {
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ('active_policy', $1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(u32::try_from(version).unwrap_or(0))
            }

            async fn policy(&self, id: &str, version: Option<u32>) -> Result<Option<PolicyRecord>> {
                let row = match version {
                    Some(v) => {
                        sqlx::query("SELECT * FROM policies WHERE id = $1 AND version = $2")
                            .bind(id)
                            .bind(i64::from(v))
                            .fetch_optional(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query("SELECT * FROM policies WHERE id = $1 ORDER BY version DESC LIMIT 1")
                            .bind(id)
                            .fetch_optional(&self.pool)
                            .await?
                    }
                };
                Ok(row.as_ref().map(policy_row))
            }

            async fn policies(&self) -> Result<Vec<PolicyRecord>> {
                let rows = sqlx::query(
                    "SELECT p.* FROM policies p
                     JOIN (SELECT id, MAX(version) AS v FROM policies GROUP BY id) m
                       ON p.id = m.id AND p.version = m.v
                     ORDER BY p.id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(policy_row).collect())
            }

            async fn active_policy_id(&self) -> Result<Option<String>> {
                Ok(
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = 'active_policy'")
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn activate_policy(&self, id: &str) -> Result<()> {
                if self.policy(id, None).await?.is_none() {
                    return Err(StoreError::NotFound(format!("policy {id}")));
                }
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ('active_policy', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn add_reference_value(&self, value: &ReferenceValue, now: u64) -> Result<i64> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO reference_values (kind, key, value, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&value.kind)
                .bind(&value.key)
                .bind(&value.value)
                .bind(i(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    Self::bump_revision(&mut tx, crate::REFVALUES_REVISION).await?;
                }
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM reference_values WHERE kind = $1 AND key = $2 AND value = $3",
                )
                .bind(&value.kind)
                .bind(&value.key)
                .bind(&value.value)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn remove_reference_value(&self, id: i64) -> Result<bool> {
                let mut tx = self.pool.begin().await?;
                let n = sqlx::query("DELETE FROM reference_values WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    Self::bump_revision(&mut tx, crate::REFVALUES_REVISION).await?;
                }
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn import_reference_values(
                &self,
                values: &[ReferenceValue],
                audit: &crate::AuditEvent,
                now: u64,
            ) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                let mut inserted = 0;
                // 4 parameters a row: well under either database's limit per statement.
                for chunk in values.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO reference_values (kind, key, value, created_at) ",
                    );
                    q.push_values(chunk, |mut b, v| {
                        b.push_bind(&v.kind)
                            .push_bind(&v.key)
                            .push_bind(&v.value)
                            .push_bind(i(now));
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    inserted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                if inserted > 0 {
                    Self::bump_revision(&mut tx, crate::REFVALUES_REVISION).await?;
                }
                crate::audit::append_in!(&mut *tx, audit);
                tx.commit().await?;
                Ok(inserted)
            }

            async fn reference_value_rows(&self) -> Result<Vec<(i64, ReferenceValue)>> {
                let rows = sqlx::query("SELECT id, kind, key, value FROM reference_values ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get("id"), refvalue_row(r)))
                    .collect())
            }

            async fn reference_values(&self) -> Result<ReferenceValues> {
                // Read the revision and the rows in one transaction so they agree.
                let mut tx = self.pool.begin().await?;
                let revision: Option<String> =
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                        .bind(crate::REFVALUES_REVISION)
                        .fetch_optional(&mut *tx)
                        .await?;
                let rows = sqlx::query("SELECT kind, key, value FROM reference_values ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ReferenceValues {
                    revision: revision.and_then(|r| r.parse().ok()).unwrap_or(0),
                    values: rows.iter().map(refvalue_row).collect(),
                })
            }

            async fn record_attestation(
                &self,
                rec: &AttestationRecord,
                deadline: u64,
                nonce: Option<(&str, u64)>,
            ) -> Result<()> {
                let rec = crate::group::Prepared::new(rec, deadline, nonce);
                let rec = match &self.writer {
                    Some(w) => match w.submit(rec).await {
                        Ok(answer) => return answer,
                        // No committer any more (its runtime shut down): write it alone.
                        Err(rec) => rec,
                    },
                    None => rec,
                };
                Self::record_alone(&self.pool, &rec, &self.stats).await
            }

            async fn attestation(&self, id: &str) -> Result<Option<AttestationRecord>> {
                let Some(r) = sqlx::query("SELECT * FROM attestations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let mut rec = attestation_row(&r)?;
                // Claims stored deduplicated: put their parts back ([`crate::parts`]).
                if let Some(refs) = r.get::<Option<String>, _>("claims_parts") {
                    let refs = crate::parts::parse_refs(&rec.id, &refs)?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT sha256, body FROM claim_parts WHERE sha256 IN (",
                    );
                    let mut list = q.separated(", ");
                    for (_, d) in &refs {
                        list.push_bind(d.as_str());
                    }
                    q.push(")");
                    let bodies: Vec<(String, String)> =
                        q.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                    rec.claims = crate::parts::join(&rec.id, rec.claims, &refs, &bodies)?;
                }
                Ok(Some(rec))
            }

            async fn attestation_count(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attestations")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u(n))
            }

            async fn workloads(&self) -> Result<Vec<WorkloadRecord>> {
                let rows = sqlx::query("SELECT * FROM workloads ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(workload_row).collect())
            }

            async fn workload(&self, id: &str) -> Result<Option<WorkloadRecord>> {
                let row = sqlx::query("SELECT * FROM workloads WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.as_ref().map(workload_row))
            }

            async fn mark_overdue(&self, now: u64, clock_skew: u64) -> Result<Vec<String>> {
                let mut tx = self.pool.begin().await?;
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE workloads SET status = 'contraindicated',
                        reason = 'no evidence before the deadline (' || deadline || '); the agent stopped attesting',
                        updated_at = $1
                     WHERE deadline IS NOT NULL AND deadline < $2 AND status != 'contraindicated'
                     RETURNING id",
                )
                .bind(i(now))
                .bind(i(now))
                .fetch_all(&mut *tx)
                .await?;
                // `expires_at` already holds one skew (issue time + ttl + skew); the second is
                // for this replica's clock running ahead of one that still accepts the nonce.
                sqlx::query("DELETE FROM used_nonces WHERE expires_at < $1")
                    .bind(i(now.saturating_sub(clock_skew)))
                    .execute(&mut *tx)
                    .await?;
                // TPM joins nobody activated (their challenge expired).
                sqlx::query("DELETE FROM tpm_joins WHERE expires_at < $1")
                    .bind(i(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn join_tokens(&self, limit: u32) -> Result<Vec<crate::JoinTokenRecord>> {
                let rows = sqlx::query(
                    "SELECT token_hash, node_name, created_at, expires_at, used_at, used_by
                     FROM join_tokens ORDER BY created_at DESC, token_hash LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| crate::JoinTokenRecord {
                        token_sha256: r.get("token_hash"),
                        node_name: r.get("node_name"),
                        created_at: u(r.get("created_at")),
                        expires_at: u(r.get("expires_at")),
                        used_at: r.get::<Option<i64>, _>("used_at").map(u),
                        used_by: r.get("used_by"),
                    })
                    .collect())
            }

            async fn nodes(&self) -> Result<Vec<NodeRecord>> {
                let rows = sqlx::query("SELECT id, hostname, created_at FROM nodes ORDER BY created_at")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(node_row).collect())
            }

            async fn put_tpm_enrollment(&self, rec: &TpmKeyRecord) -> Result<()> {
                // The same EK again (by key, or by its exact public area for rows enrolled
                // before the key was recorded) keeps its TPM's clock and IMA replay.
                let r = sqlx::query(
                    "INSERT INTO tpm_keys (node_id, ek_public, ek_cert, ek_issuer, ak_public,
                        ak_qualified_name, challenge_hash, challenge_expires, activated_at, last_clock,
                        created_at, ek_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10)
                     ON CONFLICT (node_id) DO UPDATE SET ek_public = excluded.ek_public,
                        ek_cert = excluded.ek_cert, ek_issuer = excluded.ek_issuer,
                        ak_public = excluded.ak_public, ak_qualified_name = excluded.ak_qualified_name,
                        challenge_hash = excluded.challenge_hash,
                        challenge_expires = excluded.challenge_expires, activated_at = NULL,
                        last_clock = CASE WHEN tpm_keys.ek_key = excluded.ek_key
                            OR tpm_keys.ek_public = excluded.ek_public THEN tpm_keys.last_clock END,
                        ima_state = CASE WHEN tpm_keys.ek_key = excluded.ek_key
                            OR tpm_keys.ek_public = excluded.ek_public THEN tpm_keys.ima_state END,
                        ek_key = excluded.ek_key, created_at = excluded.created_at",
                )
                .bind(&rec.node_id)
                .bind(&rec.ek_public)
                .bind(&rec.ek_cert)
                .bind(&rec.ek_issuer)
                .bind(&rec.ak_public)
                .bind(&rec.ak_qualified_name)
                .bind(&rec.challenge_hash)
                .bind(rec.challenge_expires.map(i))
                .bind(i(rec.created_at))
                .bind(&rec.ek_key)
                .execute(&self.pool)
                .await;
                self.ek_conflict(r, rec.ek_key.as_deref()).await
            }

            async fn tpm_key(&self, node_id: &str) -> Result<Option<TpmKeyRecord>> {
                let row = sqlx::query("SELECT * FROM tpm_keys WHERE node_id = $1")
                    .bind(node_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.as_ref().map(tpm_row))
            }

            async fn tpm_node_for_ek(&self, ek_key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT node_id FROM tpm_keys WHERE ek_key = $1 AND bound_at IS NOT NULL",
                )
                .bind(ek_key)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn activate_tpm(&self, node_id: &str, now: u64) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE tpm_keys SET activated_at = $1, bound_at = COALESCE(bound_at, $1),
                        challenge_hash = NULL, challenge_expires = NULL
                     WHERE node_id = $2",
                )
                .bind(i(now))
                .bind(node_id)
                .execute(&mut *tx)
                .await;
                let n = match r {
                    Ok(r) => r.rows_affected(),
                    Err(e) => {
                        drop(tx);
                        let ek: Option<String> =
                            sqlx::query_scalar("SELECT ek_key FROM tpm_keys WHERE node_id = $1")
                                .bind(node_id)
                                .fetch_optional(&self.pool)
                                .await?
                                .flatten();
                        return self.ek_conflict(Err::<(), _>(e), ek.as_deref()).await;
                    }
                };
                if n == 0 {
                    return Err(StoreError::NotFound(format!(
                        "TPM enrollment of node {node_id}"
                    )));
                }
                sqlx::query(
                    "UPDATE tpm_reenrollments SET used_at = $1,
                        ek_key = (SELECT ek_key FROM tpm_keys WHERE node_id = $2)
                     WHERE node_id = $2 AND used_at IS NULL AND expires_at >= $1",
                )
                .bind(i(now))
                .bind(node_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn tpm_keys_without_ek_key(&self) -> Result<Vec<TpmKeyRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM tpm_keys WHERE ek_key IS NULL AND NOT EXISTS
                        (SELECT 1 FROM revocation_log WHERE kind = 'node' AND target = tpm_keys.node_id)",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(tpm_row).collect())
            }

            async fn set_tpm_ek_key(&self, node_id: &str, ek_key: &str) -> Result<()> {
                let r = sqlx::query("UPDATE tpm_keys SET ek_key = $1 WHERE node_id = $2")
                    .bind(ek_key)
                    .bind(node_id)
                    .execute(&self.pool)
                    .await;
                self.ek_conflict(r, Some(ek_key)).await
            }

            async fn add_tpm_reenrollment(&self, rec: &crate::TpmReenrollment) -> Result<()> {
                sqlx::query(
                    "INSERT INTO tpm_reenrollments (id, node_id, reason, requested_by, created_at,
                        expires_at, previous_ek, previous_ak, used_at, ek_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&rec.id)
                .bind(&rec.node_id)
                .bind(&rec.reason)
                .bind(&rec.requested_by)
                .bind(i(rec.created_at))
                .bind(i(rec.expires_at))
                .bind(&rec.previous_ek)
                .bind(&rec.previous_ak)
                .bind(rec.used_at.map(i))
                .bind(&rec.ek_key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn open_tpm_reenrollment(
                &self,
                node_id: &str,
                now: u64,
            ) -> Result<Option<crate::TpmReenrollment>> {
                let row = sqlx::query(
                    "SELECT * FROM tpm_reenrollments
                     WHERE node_id = $1 AND used_at IS NULL AND expires_at >= $2
                     ORDER BY created_at DESC, id LIMIT 1",
                )
                .bind(node_id)
                .bind(i(now))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map(reenrollment_row))
            }

            async fn tpm_reenrollments(&self, node_id: &str) -> Result<Vec<crate::TpmReenrollment>> {
                let rows = sqlx::query(
                    "SELECT * FROM tpm_reenrollments WHERE node_id = $1 ORDER BY created_at DESC, id",
                )
                .bind(node_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(reenrollment_row).collect())
            }

            async fn set_tpm_state(
                &self,
                node_id: &str,
                clock_json: &str,
                ima_state_json: Option<&str>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE tpm_keys SET last_clock = $1, ima_state = COALESCE($2, ima_state)
                     WHERE node_id = $3",
                )
                .bind(clock_json)
                .bind(ima_state_json)
                .bind(node_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn add_entry(&self, e: &vouch_identity::Entry) -> Result<()> {
                self.add_entries(std::slice::from_ref(e)).await.map(|_| ())
            }

            async fn add_entries(&self, entries: &[vouch_identity::Entry]) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                // The revision first: the transaction takes the write lock at once.
                let top = Self::bump_entries_revision(&mut tx, entries.len() as u64).await?;
                let base = top.saturating_sub(entries.len() as u64);
                for (k, e) in entries.iter().enumerate() {
                    let selectors = serde_json::to_string(&e.selectors)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
                    let json = serde_json::to_string(e)
                        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
                    Self::insert_entry(&mut tx, e, &selectors).await?;
                    Self::log_entry_change(&mut tx, base + 1 + k as u64, &e.id, Some(&json)).await?;
                }
                if top > crate::ENTRIES_LOG_KEEP {
                    Self::prune_log_in(&mut tx, top - crate::ENTRIES_LOG_KEEP).await?;
                }
                tx.commit().await?;
                Ok(top)
            }

            async fn entries(&self) -> Result<Vec<vouch_identity::Entry>> {
                let rows = sqlx::query("SELECT * FROM entries ORDER BY spiffe_id, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(entry_row).collect()
            }

            async fn delete_entry(&self, id: &str) -> Result<bool> {
                let mut tx = self.pool.begin().await?;
                let n = sqlx::query("DELETE FROM entries WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    let top = Self::bump_entries_revision(&mut tx, 1).await?;
                    Self::log_entry_change(&mut tx, top, id, None).await?;
                    if top > crate::ENTRIES_LOG_KEEP {
                        Self::prune_log_in(&mut tx, top - crate::ENTRIES_LOG_KEEP).await?;
                    }
                }
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn entries_since(&self, since: u64, limit: u32) -> Result<crate::EntriesSince> {
                let mut tx = self.pool.begin().await?;
                let setting = |v: Option<String>| v.and_then(|r| r.parse::<u64>().ok()).unwrap_or(0);
                let revision = setting(
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                        .bind(crate::ENTRIES_REVISION)
                        .fetch_optional(&mut *tx)
                        .await?,
                );
                let floor = setting(
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                        .bind(crate::ENTRIES_LOG_FLOOR)
                        .fetch_optional(&mut *tx)
                        .await?,
                );
                if since > revision || since < floor {
                    tx.commit().await?;
                    return Ok(crate::EntriesSince::Resync { revision });
                }
                let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                    "SELECT revision, entry_id, entry FROM entries_log WHERE revision > $1
                     ORDER BY revision LIMIT $2",
                )
                .bind(i(since))
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                if rows.len() > limit as usize {
                    return Ok(crate::EntriesSince::Resync { revision });
                }
                // Each entry's latest state, in the order of its latest change.
                let mut latest: std::collections::HashMap<String, (i64, Option<String>)> =
                    std::collections::HashMap::with_capacity(rows.len());
                for (rev, id, entry) in rows {
                    latest.insert(id, (rev, entry));
                }
                let mut ordered: Vec<_> = latest.into_iter().collect();
                ordered.sort_by_key(|(_, (rev, _))| *rev);
                let (mut upserted, mut deleted) = (Vec::new(), Vec::new());
                for (id, (_, entry)) in ordered {
                    match entry {
                        Some(json) => upserted.push(serde_json::from_str(&json).map_err(|e| {
                            StoreError::Corrupt(format!("entries log row for {id}: {e}"))
                        })?),
                        None => deleted.push(id),
                    }
                }
                Ok(crate::EntriesSince::Changes { revision, upserted, deleted })
            }

            async fn workload_status_counts(&self) -> Result<Vec<(String, u64)>> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM workloads GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(|(s, n)| (s, u(n))).collect())
            }

            async fn entries_page(&self, after: &str, limit: u32) -> Result<Vec<vouch_identity::Entry>> {
                let json = self.entries_page_json(after, limit).await?;
                let mut page: Vec<vouch_identity::Entry> = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("entries page: {e}")))?;
                page.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(page)
            }

            async fn prune_entries_log(&self, upto: u64) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                Self::prune_log_in(&mut tx, upto).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revision(&self, key: &str) -> Result<u64> {
                let v: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(v.and_then(|r| r.parse().ok()).unwrap_or(0))
            }

            async fn entries_at_revision(&self) -> Result<(u64, Vec<vouch_identity::Entry>)> {
                let mut tx = self.pool.begin().await?;
                let v: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                    .bind(crate::ENTRIES_REVISION)
                    .fetch_optional(&mut *tx)
                    .await?;
                let rows = sqlx::query("SELECT * FROM entries ORDER BY spiffe_id, id")
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let entries = rows.iter().map(entry_row).collect::<Result<Vec<_>>>()?;
                Ok((v.and_then(|r| r.parse().ok()).unwrap_or(0), entries))
            }

            async fn revocation_epoch(&self) -> Result<u64> {
                let e: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(epoch), 0) FROM revocation_log")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u(e))
            }

            async fn append_revocation(&self, rec: &crate::RevocationRecord) -> Result<()> {
                // The insert comes first so the transaction takes the write lock at once
                // (SQLite cannot upgrade a read transaction once another writer committed).
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO revocation_log (epoch, kind, target, reason, revoked_by, created_at, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(i(rec.epoch))
                .bind(&rec.kind)
                .bind(&rec.target)
                .bind(&rec.reason)
                .bind(&rec.by)
                .bind(i(rec.created_at))
                .bind(&rec.record)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        drop(tx);
                        if let Some(e) = sqlx::query_scalar::<_, i64>(
                            "SELECT epoch FROM revocation_log WHERE kind = $1 AND target = $2",
                        )
                        .bind(&rec.kind)
                        .bind(&rec.target)
                        .fetch_optional(&self.pool)
                        .await?
                        {
                            return Err(StoreError::Duplicate(format!(
                                "a revocation of {} {} (epoch {e})",
                                rec.kind, rec.target
                            )));
                        }
                        return Err(StoreError::EpochTaken(rec.epoch));
                    }
                    Err(e) => return Err(e.into()),
                }
                // Gap-free: the epoch before this one exists (or this is the first).
                if rec.epoch != 1 {
                    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revocation_log WHERE epoch = $1")
                        .bind(i(rec.epoch) - 1)
                        .fetch_one(&mut *tx)
                        .await?;
                    if before != 1 {
                        return Err(StoreError::EpochTaken(rec.epoch));
                    }
                }
                let exists = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(&rec.target);
                let found = match rec.kind.as_str() {
                    "node" => exists("SELECT COUNT(*) FROM nodes WHERE id = $1").fetch_one(&mut *tx).await?,
                    "agent-key" => exists("SELECT COUNT(*) FROM agent_keys WHERE id = $1").fetch_one(&mut *tx).await?,
                    "workload" => exists("SELECT COUNT(*) FROM workloads WHERE id = $1").fetch_one(&mut *tx).await?,
                    "result" => exists("SELECT COUNT(*) FROM attestations WHERE id = $1").fetch_one(&mut *tx).await?,
                    _ => 1,
                };
                if found == 0 {
                    return Err(StoreError::NotFound(format!("{} {}", rec.kind, rec.target)));
                }
                // The lock `record_attestation` takes, before any workload is written: an
                // attestation of the node's workloads either committed before this (and is
                // contraindicated below) or waits and then sees this record.
                let node_of = match rec.kind.as_str() {
                    "node" => Some("UPDATE nodes SET hostname = hostname WHERE id = $1"),
                    "workload" => Some(
                        "UPDATE nodes SET hostname = hostname
                         WHERE id = (SELECT node_id FROM workloads WHERE id = $1)",
                    ),
                    _ => None,
                };
                if let Some(sql) = node_of {
                    sqlx::query(sql).bind(&rec.target).execute(&mut *tx).await?;
                }
                let why = format!("{} revoked: {}", rec.kind, rec.reason);
                let now = i(rec.created_at);
                match rec.kind.as_str() {
                    "node" => {
                        sqlx::query("UPDATE agent_keys SET revoked_at = $1 WHERE node_id = $2 AND revoked_at IS NULL")
                            .bind(now)
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                        // Its TPM is free to be bound to another node.
                        sqlx::query("UPDATE tpm_keys SET ek_key = NULL WHERE node_id = $1")
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("UPDATE workloads SET status = 'contraindicated', reason = $1, updated_at = $2 WHERE node_id = $3")
                            .bind(&why)
                            .bind(now)
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                    }
                    "agent-key" => {
                        sqlx::query("UPDATE agent_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                            .bind(now)
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                    }
                    "workload" => {
                        sqlx::query("UPDATE workloads SET status = 'contraindicated', reason = $1, updated_at = $2 WHERE id = $3")
                            .bind(&why)
                            .bind(now)
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                    }
                    // A revoked result no longer vouches for its workload: while it is the
                    // workload's latest, the workload gets no identity; its next attestation
                    // decides afresh.
                    "result" => {
                        sqlx::query("UPDATE workloads SET status = 'contraindicated', reason = $1, updated_at = $2 WHERE last_attestation_id = $3")
                            .bind(&why)
                            .bind(now)
                            .bind(&rec.target)
                            .execute(&mut *tx)
                            .await?;
                    }
                    _ => {}
                }
                // In the audit log, in the same transaction (issue 16 item 3).
                let event = crate::audit::AuditEvent {
                    time: rec.created_at,
                    kind: "revoke".into(),
                    actor: rec.by.clone(),
                    subject: format!("{}:{}", rec.kind, rec.target),
                    body: serde_json::json!({
                        "kind": rec.kind, "target": rec.target, "reason": rec.reason,
                        "epoch": rec.epoch,
                    }),
                };
                crate::audit::append_in!(&mut *tx, &event);
                tx.commit().await?;
                Ok(())
            }

            async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<crate::RevocationRecord>> {
                let rows = sqlx::query("SELECT * FROM revocation_log WHERE epoch > $1 ORDER BY epoch LIMIT $2")
                    .bind(i(after))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(revocation_row).collect())
            }

            async fn revocation(&self, kind: &str, target: &str) -> Result<Option<crate::RevocationRecord>> {
                let row = sqlx::query("SELECT * FROM revocation_log WHERE kind = $1 AND target = $2")
                    .bind(kind)
                    .bind(target)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.as_ref().map(revocation_row))
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn pool_stats(&self) -> crate::PoolStats {
                crate::PoolStats {
                    size: self.pool.size(),
                    idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
                    max: self.pool.options().get_max_connections(),
                }
            }
        }
    };
}

pub(crate) use store_impl;
