//! Secrets to release to attested workloads (issue 17 item 4), stored sealed: the store never
//! sees a secret in the clear (the verifier encrypts it under its at-rest key first). The SQL
//! is the same on both backends, like [`crate::audit`].

use async_trait::async_trait;

use crate::Result;

/// A stored secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Its name.
    pub name: String,
    /// Its version, from 1.
    pub version: u32,
    /// The secret encrypted under the verifier's at-rest key.
    pub sealed: Vec<u8>,
    /// Its release policy (Rego).
    pub policy: String,
    /// Size of the secret in the clear, bytes.
    pub size: u64,
    /// When this version was stored.
    pub updated_at: u64,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The secrets table.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Store `sealed` as the next version of secret `name` (1 when new); returns the version.
    async fn put_secret(
        &self,
        name: &str,
        sealed: &[u8],
        policy: &str,
        size: u64,
        now: u64,
    ) -> Result<u32>;

    /// The secret `name`, when stored.
    async fn secret(&self, name: &str) -> Result<Option<SecretRecord>>;

    /// Every secret, by name.
    async fn secrets(&self) -> Result<Vec<SecretRecord>>;

    /// Delete secret `name`; whether it was there.
    async fn delete_secret(&self, name: &str) -> Result<bool>;
}

pub(crate) fn secret_row<R>(r: &R) -> Result<SecretRecord>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(SecretRecord {
        name: r.try_get("name")?,
        version: u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0),
        sealed: r.try_get("sealed")?,
        policy: r.try_get("policy")?,
        size: n(r.try_get("size")?),
        updated_at: n(r.try_get("updated_at")?),
    })
}

/// Implement [`Secrets`] for a store with a `pool` field (invoked next to `store_impl!`).
macro_rules! secrets_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::secrets::Secrets for $store {
            async fn put_secret(
                &self,
                name: &str,
                sealed: &[u8],
                policy: &str,
                size: u64,
                now: u64,
            ) -> crate::Result<u32> {
                let v: i64 = sqlx::query_scalar(
                    "INSERT INTO secrets (name, version, sealed, policy, size, updated_at)
                     VALUES ($1, 1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET version = secrets.version + 1,
                       sealed = excluded.sealed, policy = excluded.policy,
                       size = excluded.size, updated_at = excluded.updated_at
                     RETURNING version",
                )
                .bind(name)
                .bind(sealed)
                .bind(policy)
                .bind(i64::try_from(size).unwrap_or(i64::MAX))
                .bind(i64::try_from(now).unwrap_or(i64::MAX))
                .fetch_one(&self.pool)
                .await?;
                Ok(u32::try_from(v).unwrap_or(u32::MAX))
            }

            async fn secret(&self, name: &str) -> crate::Result<Option<crate::SecretRecord>> {
                let row = sqlx::query("SELECT * FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(crate::secrets::secret_row).transpose()
            }

            async fn secrets(&self) -> crate::Result<Vec<crate::SecretRecord>> {
                let rows = sqlx::query("SELECT * FROM secrets ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(crate::secrets::secret_row).collect()
            }

            async fn delete_secret(&self, name: &str) -> crate::Result<bool> {
                let n = sqlx::query("DELETE FROM secrets WHERE name = $1")
                    .bind(name)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }
        }
    };
}
pub(crate) use secrets_impl;
