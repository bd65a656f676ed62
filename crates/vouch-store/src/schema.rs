//! Schema migrations are applied on purpose, never as a side effect of opening a store (issue
//! 16 item 1): a newer binary pointed at a production database must not change its schema
//! behind the operator's back. [`Migrations::Apply`] is what `vouch server --migrate` and
//! `vouch migrate` ask for; [`Migrations::RefuseOutdated`] (the verifier's default) creates the
//! schema of a brand-new, empty database and refuses one with migrations still to apply.

use crate::{Result, StoreError};

/// What opening a store does about schema migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Migrations {
    /// Apply every pending migration (an explicit `--migrate`, tests, benchmarks).
    #[default]
    Apply,
    /// Create the schema of a new, empty database; refuse an existing database with pending
    /// migrations ([`StoreError::SchemaOutdated`]).
    RefuseOutdated,
}

/// What the database holds, read before deciding.
pub(crate) struct Found {
    /// Versions recorded as applied (`None`: no migrations table).
    pub applied: Option<Vec<i64>>,
    /// Whether the database has any table at all.
    pub has_tables: bool,
}

/// Whether to run the migrator, or why not to open the database.
pub(crate) fn decide(
    migrator: &sqlx::migrate::Migrator,
    found: Found,
    mode: Migrations,
) -> Result<bool> {
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    let Some(applied) = found.applied else {
        if found.has_tables {
            return Err(StoreError::Corrupt(
                "the database has tables but no migration record: not a Vouch store".into(),
            ));
        }
        // A brand-new database: creating its schema changes nothing anyone relied on.
        return Ok(true);
    };
    if let Some(v) = applied.iter().find(|v| !known.contains(v)) {
        return Err(StoreError::SchemaNewer { version: *v });
    }
    let pending: Vec<i64> = known
        .iter()
        .copied()
        .filter(|v| !applied.contains(v))
        .collect();
    match (pending.is_empty(), mode) {
        (true, _) => Ok(false),
        (false, Migrations::Apply) => Ok(true),
        (false, Migrations::RefuseOutdated) => Err(StoreError::SchemaOutdated {
            applied: applied.len(),
            pending: pending.len(),
            first: pending.first().copied().unwrap_or_default(),
        }),
    }
}
