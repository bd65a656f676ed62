//! One group-commit batch holding records that must be refused next to records that must
//! commit, written through the committer's own function so the batch is exactly these records:
//! each gets its own answer, the good ones are durable, the refused ones leave nothing.

/// The test body for one backend: `$store` is an open store of type `$ty`.
macro_rules! one_batch_mixed_answers {
    ($ty:ty, $store:expr) => {{
        use crate::group::{Job, Prepared};
        use crate::{AttestationRecord, RevocationRecord, Store, StoreError};
        use serde_json::json;

        let s: $ty = $store;
        let rec = |id: &str, node: &str, name: &str| AttestationRecord {
            id: id.into(),
            workload_id: format!("{node}/{name}"),
            node_id: node.into(),
            key_id: "ak".into(),
            evidence_kind: "software".into(),
            evidence_sha256: "00".into(),
            claims: json!({"id": id}),
            status: "affirming".into(),
            trust_vector: json!({}),
            reasons: vec![],
            policy_id: "default".into(),
            policy_version: 1,
            result: "jwt".into(),
            created_at: 10,
            expires_at: 70,
        };
        s.create_join_token("ta", None, 0, 100).await.unwrap();
        s.create_join_token("tb", None, 0, 100).await.unwrap();
        let a = s.enroll("ta", &[1; 32], "a", 1).await.unwrap().node_id;
        let b = s.enroll("tb", &[2; 32], "b", 1).await.unwrap().node_id;
        s.record_attestation(&rec("b-first", &b, "revoked"), 100, None)
            .await
            .unwrap();
        s.append_revocation(&RevocationRecord {
            epoch: 1,
            kind: "workload".into(),
            target: format!("{b}/revoked"),
            reason: "test".into(),
            by: "admin".into(),
            created_at: 5,
            record: "jws".into(),
        })
        .await
        .unwrap();
        s.use_nonce("used", 1_000).await.unwrap();
        let before = s.commit_stats();

        let batch = [
            (rec("good-1", &a, "w1"), Some("n-good-1")),
            (rec("replay", &a, "w2"), Some("used")),
            (rec("revoked", &b, "revoked"), Some("n-revoked")),
            (rec("dup-b", &b, "w4"), Some("dup")),
            (rec("dup-a", &a, "w5"), Some("dup")),
            (rec("ghost", "no-such-node", "w6"), Some("n-ghost")),
            (rec("good-2", &b, "w7"), None),
        ];
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for (r, nonce) in &batch {
            let (reply, answer) = tokio::sync::oneshot::channel();
            jobs.push(Job {
                rec: Prepared::new(r, 100, nonce.map(|n| (n, 1_000))),
                reply,
            });
            answers.push((r.id.clone(), answer));
        }
        <$ty>::record_batch(&s.pool, jobs, &s.stats).await;
        let mut got = std::collections::HashMap::new();
        for (id, answer) in answers {
            got.insert(id, answer.await.unwrap());
        }
        assert!(got["good-1"].is_ok(), "{:?}", got["good-1"]);
        assert!(got["good-2"].is_ok(), "{:?}", got["good-2"]);
        assert!(matches!(got["replay"], Err(StoreError::NonceReused)), "{:?}", got["replay"]);
        assert!(matches!(got["revoked"], Err(StoreError::Revoked(_))), "{:?}", got["revoked"]);
        // A constraint (the node does not exist): its own error, nobody else's.
        assert!(matches!(got["ghost"], Err(StoreError::Database(_))), "{:?}", got["ghost"]);
        // Two records with one nonce: the first (in node order) has it, the other is refused.
        let (first, second) = if a < b { ("dup-a", "dup-b") } else { ("dup-b", "dup-a") };
        assert!(got[first].is_ok(), "{:?}", got[first]);
        assert!(matches!(got[second], Err(StoreError::NonceReused)), "{:?}", got[second]);

        // One transaction for the three good records.
        let after = s.commit_stats();
        assert_eq!(after.transactions, before.transactions + 1);
        assert_eq!(after.records, before.records + 3);
        assert_eq!(after.record_by_record, before.record_by_record + 1);
        for id in ["good-1", "good-2", first] {
            assert!(s.attestation(id).await.unwrap().is_some(), "{id}");
        }
        for id in ["replay", "revoked", "ghost", second] {
            assert!(s.attestation(id).await.unwrap().is_none(), "{id}");
        }
        // A refused record's writes were rolled back with its savepoint: its nonce is unused.
        assert!(!s.nonce_used("n-revoked").await.unwrap());
        assert!(!s.nonce_used("n-ghost").await.unwrap());
        assert!(s.nonce_used("n-good-1").await.unwrap());
        let w = s.workload(&format!("{b}/revoked")).await.unwrap().unwrap();
        assert_eq!(w.status, "contraindicated");
        assert_eq!(w.last_attestation_id.as_deref(), Some("b-first"));

        // The same batch without its bad records goes the fast (bulk) way: all commit, one
        // transaction, the same rows as record by record.
        let before = s.commit_stats();
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for (i, node) in [&a, &b, &a, &a].into_iter().enumerate() {
            let r = rec(&format!("bulk-{i}"), node, "same");
            let (reply, answer) = tokio::sync::oneshot::channel();
            let nonce = format!("bulk-n{i}");
            jobs.push(Job {
                rec: Prepared::new(&r, 200 + i as u64, Some((&nonce, 1_000))),
                reply,
            });
            answers.push(answer);
        }
        <$ty>::record_batch(&s.pool, jobs, &s.stats).await;
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let after = s.commit_stats();
        assert_eq!(after.transactions, before.transactions + 1);
        assert_eq!(after.records, before.records + 4);
        assert_eq!(after.record_by_record, before.record_by_record, "the bulk path failed");
        // The workload's row is its last record's (arrival order kept within a node).
        let w = s.workload(&format!("{a}/same")).await.unwrap().unwrap();
        assert_eq!(w.last_attestation_id.as_deref(), Some("bulk-3"));
        assert_eq!(w.deadline, Some(203));
        let w = s.workload(&format!("{b}/same")).await.unwrap().unwrap();
        assert_eq!(w.last_attestation_id.as_deref(), Some("bulk-1"));
        assert!(s.nonce_used("bulk-n2").await.unwrap());
        assert_eq!(s.attestation("bulk-2").await.unwrap().unwrap().claims, json!({"id": "bulk-2"}));
    }};
}

pub(crate) use one_batch_mixed_answers;
