//! Row → record mapping shared by the SQLite and PostgreSQL stores: both schemas have the same
//! columns (Unix times as 64-bit integers, JSON as text, keys as bytes), so one definition per
//! record serves both row types.

/// Define the mapping functions for one sqlx row type.
macro_rules! row_mappers {
    ($row:ty) => {
        fn u(i: i64) -> u64 {
            u64::try_from(i).unwrap_or(0)
        }

        fn i(v: u64) -> i64 {
            i64::try_from(v).unwrap_or(i64::MAX)
        }

        fn policy_row(r: &$row) -> crate::PolicyRecord {
            crate::PolicyRecord {
                id: r.get("id"),
                version: u32::try_from(r.get::<i64, _>("version")).unwrap_or(0),
                rego: r.get("rego"),
                sha256: r.get("sha256"),
                created_at: u(r.get("created_at")),
            }
        }

        fn workload_row(r: &$row) -> crate::WorkloadRecord {
            crate::WorkloadRecord {
                id: r.get("id"),
                node_id: r.get("node_id"),
                name: r.get("name"),
                status: r.get("status"),
                reason: r.get("reason"),
                last_attested_at: r.get::<Option<i64>, _>("last_attested_at").map(u),
                last_attestation_id: r.get("last_attestation_id"),
                deadline: r.get::<Option<i64>, _>("deadline").map(u),
                updated_at: u(r.get("updated_at")),
            }
        }

        fn json_col(r: &$row, col: &str) -> crate::Result<serde_json::Value> {
            let s: String = r.get(col);
            serde_json::from_str(&s).map_err(|e| crate::StoreError::Corrupt(format!("{col}: {e}")))
        }

        fn agent_key_row(r: &$row) -> crate::AgentKeyRecord {
            crate::AgentKeyRecord {
                id: r.get("id"),
                node_id: r.get("node_id"),
                public_key: r.get("public_key"),
                enrolled_at: u(r.get("enrolled_at")),
            }
        }

        fn attestation_row(r: &$row) -> crate::Result<crate::AttestationRecord> {
            let reasons: Vec<String> = serde_json::from_value(json_col(r, "reasons")?)
                .map_err(|e| crate::StoreError::Corrupt(format!("reasons: {e}")))?;
            Ok(crate::AttestationRecord {
                id: r.get("id"),
                workload_id: r.get("workload_id"),
                node_id: r.get("node_id"),
                key_id: r.get("key_id"),
                evidence_kind: r.get("evidence_kind"),
                evidence_sha256: r.get("evidence_sha256"),
                claims: json_col(r, "claims")?,
                status: r.get("status"),
                trust_vector: json_col(r, "trust_vector")?,
                reasons,
                policy_id: r.get("policy_id"),
                policy_version: u32::try_from(r.get::<i64, _>("policy_version")).unwrap_or(0),
                result: r.get("result"),
                created_at: u(r.get("created_at")),
                expires_at: u(r.get("expires_at")),
            })
        }

        fn node_row(r: &$row) -> crate::NodeRecord {
            crate::NodeRecord {
                id: r.get("id"),
                hostname: r.get("hostname"),
                created_at: u(r.get("created_at")),
            }
        }

        fn tpm_row(r: &$row) -> crate::TpmKeyRecord {
            crate::TpmKeyRecord {
                node_id: r.get("node_id"),
                ek_public: r.get("ek_public"),
                ek_cert: r.get("ek_cert"),
                ek_issuer: r.get("ek_issuer"),
                ak_public: r.get("ak_public"),
                ak_qualified_name: r.get("ak_qualified_name"),
                challenge_hash: r.get("challenge_hash"),
                challenge_expires: r.get::<Option<i64>, _>("challenge_expires").map(u),
                activated_at: r.get::<Option<i64>, _>("activated_at").map(u),
                last_clock: r.get("last_clock"),
                ima_state: r.get("ima_state"),
                created_at: u(r.get("created_at")),
                ek_key: r.get("ek_key"),
                bound_at: r.get::<Option<i64>, _>("bound_at").map(u),
            }
        }

        fn reenrollment_row(r: &$row) -> crate::TpmReenrollment {
            crate::TpmReenrollment {
                id: r.get("id"),
                node_id: r.get("node_id"),
                reason: r.get("reason"),
                requested_by: r.get("requested_by"),
                created_at: u(r.get("created_at")),
                expires_at: u(r.get("expires_at")),
                previous_ek: r.get("previous_ek"),
                previous_ak: r.get("previous_ak"),
                used_at: r.get::<Option<i64>, _>("used_at").map(u),
                ek_key: r.get("ek_key"),
            }
        }

        fn entry_row(r: &$row) -> crate::Result<vouch_identity::Entry> {
            let sel: String = r.get("selectors");
            Ok(vouch_identity::Entry {
                id: r.get("id"),
                spiffe_id: r.get("spiffe_id"),
                selectors: serde_json::from_str(&sel)
                    .map_err(|e| crate::StoreError::Corrupt(format!("entry selectors: {e}")))?,
                ttl: u(r.get("ttl")),
                created_at: u(r.get("created_at")),
            })
        }

        fn refvalue_row(r: &$row) -> vouch_policy::ReferenceValue {
            vouch_policy::ReferenceValue {
                kind: r.get("kind"),
                key: r.get("key"),
                value: r.get("value"),
            }
        }

        fn revocation_row(r: &$row) -> crate::RevocationRecord {
            crate::RevocationRecord {
                epoch: u(r.get("epoch")),
                kind: r.get("kind"),
                target: r.get("target"),
                reason: r.get("reason"),
                by: r.get("revoked_by"),
                created_at: u(r.get("created_at")),
                record: r.get("record"),
            }
        }
    };
}

pub(crate) use row_mappers;

/// The workload name in a workload id (`<node>/<name>`).
pub(crate) fn workload_name(workload_id: &str) -> &str {
    workload_id
        .rsplit_once('/')
        .map(|(_, n)| n)
        .unwrap_or(workload_id)
}

/// The reason stored with a workload's status.
pub(crate) fn workload_reason(rec: &crate::AttestationRecord) -> String {
    match rec.reasons.first() {
        Some(r) => r.clone(),
        None => format!(
            "appraised {} by policy {} v{}",
            rec.status, rec.policy_id, rec.policy_version
        ),
    }
}

/// SHA-256, hex.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The key id of an agent key.
pub(crate) fn key_id(public_key: &[u8]) -> String {
    format!("ak-{}", &hex_sha256(public_key)[..24])
}
