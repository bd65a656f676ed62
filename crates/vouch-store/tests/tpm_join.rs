//! `enroll_attested_tpm`: a node that joined through its TPM alone is created together with its
//! agent key and its activated TPM binding, or not at all (issue 14, zero-touch `tpm`). Run on
//! both backends, like tests/store.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_store::{
    AttestedNode, PgStore, SqliteStore, Store, StoreError, TpmJoinRecord, TpmKeyRecord,
};

macro_rules! on_both_backends {
    ($($t:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $t() {
                    let d = tempfile::tempdir().unwrap();
                    let s = super::SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
                    super::$t(&s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $t() {
                    let pg = vouch_testkit::Postgres::start();
                    let s = super::PgStore::connect(&pg.fresh_database()).await.unwrap();
                    super::$t(&s).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_tpm_join_writes_node_key_and_binding_together_or_nothing,
    open_tpm_joins_are_bounded_one_per_ek_taken_once_and_expire,
);

fn node(id: &str, ek: &str) -> AttestedNode {
    AttestedNode {
        node_id: id.into(),
        method: "tpm".into(),
        node_key: format!("tpm:ek:{ek}"),
        selectors: vec![format!("tpm:ek:{ek}")],
        hostname: "h".into(),
        reattestable: true,
    }
}

fn binding(id: &str, ek: &str, ak: u8) -> TpmKeyRecord {
    TpmKeyRecord {
        node_id: id.into(),
        ek_public: ek.as_bytes().to_vec(),
        ek_cert: Some(vec![0x30, 0x82, 0]),
        ek_issuer: Some("CN=ca".into()),
        ak_public: vec![ak; 70],
        ak_qualified_name: vec![0, 11, ak],
        challenge_hash: None,
        challenge_expires: None,
        activated_at: None,
        last_clock: None,
        ima_state: None,
        created_at: 0,
        ek_key: Some(ek.into()),
        bound_at: None,
    }
}

async fn a_tpm_join_writes_node_key_and_binding_together_or_nothing(s: &dyn Store) {
    // First join: node, key and an activated, bound TPM binding.
    let e1 = s
        .enroll_attested_tpm(&node("n1", "ek1"), &[1; 32], &binding("n1", "ek1", 1), 10)
        .await
        .unwrap();
    assert_eq!(e1.node_id, "n1");
    let t = s.tpm_key("n1").await.unwrap().unwrap();
    assert_eq!(
        (t.activated_at, t.bound_at, t.challenge_hash.clone()),
        (Some(10), Some(10), None)
    );
    assert_eq!(
        s.tpm_node_for_ek("ek1").await.unwrap().as_deref(),
        Some("n1")
    );
    assert_eq!(
        s.node_attestation("n1").await.unwrap().unwrap().method,
        "tpm"
    );
    s.set_tpm_state("n1", "{\"reset_count\":4}", None)
        .await
        .unwrap();

    // The machine re-installed: a new agent key and a new AK under the same EK take over; the
    // old key is revoked, the binding's first bound_at and the TPM's clock stay.
    let e2 = s
        .enroll_attested_tpm(&node("n1", "ek1"), &[2; 32], &binding("n1", "ek1", 2), 20)
        .await
        .unwrap();
    assert_eq!(e2.node_id, "n1");
    assert!(s.agent_key(&e1.key_id).await.unwrap().is_none());
    assert!(s.agent_key(&e2.key_id).await.unwrap().is_some());
    let t = s.tpm_key("n1").await.unwrap().unwrap();
    assert_eq!((t.activated_at, t.bound_at), (Some(20), Some(10)));
    assert_eq!(t.ak_public, vec![2; 70]);
    assert_eq!(t.last_clock.as_deref(), Some("{\"reset_count\":4}"));

    // An EK that another bound node (here one that joined with a token) holds: refused, and
    // nothing of the join stays: no node, no key, no attestation record.
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let j = s.enroll("t", &[3; 32], "h", 30).await.unwrap();
    let mut held = binding(&j.node_id, "ek2", 3);
    held.challenge_hash = Some("c".into());
    s.put_tpm_enrollment(&held).await.unwrap();
    s.activate_tpm(&j.node_id, 31).await.unwrap();
    let r = s
        .enroll_attested_tpm(&node("n2", "ek2"), &[4; 32], &binding("n2", "ek2", 4), 32)
        .await;
    assert!(
        matches!(&r, Err(StoreError::EkEnrolled { node_id }) if *node_id == j.node_id),
        "{r:?}"
    );
    assert_eq!(s.node_attestation("n2").await.unwrap(), None);
    assert!(s.tpm_key("n2").await.unwrap().is_none());
    assert!(!s.nodes().await.unwrap().iter().any(|n| n.id == "n2"));
    // The key is not enrolled anywhere: a token enrollment of it still succeeds.
    s.create_join_token("t2", None, 0, 100).await.unwrap();
    s.enroll("t2", &[4; 32], "h", 33).await.unwrap();

    // A binding that names another node than the one attested is refused before any write.
    assert!(
        s.enroll_attested_tpm(&node("n3", "ek3"), &[5; 32], &binding("nX", "ek3", 5), 40)
            .await
            .is_err()
    );
    assert_eq!(s.node_attestation("n3").await.unwrap(), None);
}

fn join(id: &str, ek: &str, expires_at: u64) -> TpmJoinRecord {
    TpmJoinRecord {
        id: id.into(),
        ek_key: ek.into(),
        node_id: format!("node-{ek}"),
        public_key: vec![1; 32],
        hostname: "h".into(),
        ek_public: vec![2; 10],
        ek_cert: vec![0x30, 3],
        ek_issuer: "CN=ca".into(),
        ak_public: vec![4; 10],
        ak_qualified_name: vec![5; 34],
        secret_hash: "ab".repeat(32),
        expires_at,
    }
}

async fn open_tpm_joins_are_bounded_one_per_ek_taken_once_and_expire(s: &dyn Store) {
    // Held and read back whole, once.
    assert!(
        s.open_tpm_join(&join("j1", "ek1", 100), 3, 10)
            .await
            .unwrap()
    );
    assert_eq!(
        s.take_tpm_join("j1").await.unwrap(),
        Some(join("j1", "ek1", 100))
    );
    assert_eq!(s.take_tpm_join("j1").await.unwrap(), None);
    // A newer join of the same EK replaces the older.
    assert!(
        s.open_tpm_join(&join("j2", "ek1", 100), 3, 10)
            .await
            .unwrap()
    );
    assert!(
        s.open_tpm_join(&join("j3", "ek1", 100), 3, 11)
            .await
            .unwrap()
    );
    assert_eq!(s.take_tpm_join("j2").await.unwrap(), None);
    // At most max_open: the fourth waits until one is taken or expires.
    assert!(
        s.open_tpm_join(&join("j4", "ek2", 20), 3, 12)
            .await
            .unwrap()
    );
    assert!(
        s.open_tpm_join(&join("j5", "ek3", 100), 3, 12)
            .await
            .unwrap()
    );
    assert!(
        !s.open_tpm_join(&join("j6", "ek4", 100), 3, 13)
            .await
            .unwrap()
    );
    assert_eq!(s.take_tpm_join("j6").await.unwrap(), None);
    // j4 expired at 20: at 21 it is dropped and j6 fits.
    assert!(
        s.open_tpm_join(&join("j6", "ek4", 100), 3, 21)
            .await
            .unwrap()
    );
    assert_eq!(s.take_tpm_join("j4").await.unwrap(), None);
    assert!(s.take_tpm_join("j3").await.unwrap().is_some());
    assert!(s.take_tpm_join("j5").await.unwrap().is_some());
    assert!(s.take_tpm_join("j6").await.unwrap().is_some());
    // Joins nobody activates are dropped by the periodic sweep once expired, not before.
    assert!(
        s.open_tpm_join(&join("j7", "ek7", 50), 3, 30)
            .await
            .unwrap()
    );
    s.mark_overdue(50, 0).await.unwrap();
    assert!(s.take_tpm_join("j7").await.unwrap().is_some());
    assert!(
        s.open_tpm_join(&join("j8", "ek8", 50), 3, 30)
            .await
            .unwrap()
    );
    s.mark_overdue(51, 0).await.unwrap();
    assert_eq!(s.take_tpm_join("j8").await.unwrap(), None);
}
