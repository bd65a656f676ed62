//! Vouch appraisal: Rego policies (evaluated with `regorus`) and reference values turn verified
//! claims into a decision and an AR4SI trust vector.
//!
//! # The policy contract
//!
//! A policy is a Rego module in package `vouch.appraisal` that may define:
//!
//! * `deny` — a set of findings; any one makes the result `contraindicated`;
//! * `warn` — a set of findings; any one makes the result at least `warning`;
//! * `trust_vector` — an object of AR4SI claim name to value, the positive appraisal.
//!
//! A finding is an object `{"rule": NAME, "claim": AR4SI-CLAIM, "msg": TEXT}` (or just a string).
//! A `deny` finding sets its claim to 96 (contraindicated), a `warn` finding to 32 (warning), so
//! the trust vector always says which aspect failed, and the findings say which rule and why.
//!
//! `input` is the verified claims (see `vouch-evidence`); `data.reference` holds the reference
//! values as `data.reference[KIND][KEY] = [VALUE, …]`. Two extensions compare versions as
//! versions (dpkg order): `vouch.version_cmp(a, b)` (-1, 0, 1) and
//! `vouch.version_at_least(version, minimum)`.
//!
//! Each (policy version, reference-value revision) pair is compiled once and reused; evaluation
//! needs only `&self`, so one compiled policy serves all requests concurrently.
#![deny(missing_docs)]

mod appraisal;
mod error;
mod refvalues;
mod secret;

pub use appraisal::{Appraisal, CompiledPolicy, Effect, Finding, PolicyCache, PolicySource};
pub use error::PolicyError;
pub use refvalues::{ReferenceValue, ReferenceValues};
pub use secret::{SECRET_POLICY_PACKAGE, SecretPolicy};

/// The default policy shipped with Vouch (`policies/default.rego`).
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/default.rego");
/// The id under which the default policy is installed.
pub const DEFAULT_POLICY_ID: &str = "default";
