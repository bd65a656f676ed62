//! Issue 12: a policy's trust vector becomes the result's status through AR4SI's tiers exactly,
//! negative values included (they are not mirror images of the positive ranges).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use vouch_core::ArStatus;
use vouch_policy::{CompiledPolicy, PolicySource, ReferenceValues};

/// A policy whose whole appraisal is the `hardware` value it is given.
const ECHO: &str = r#"package vouch.appraisal
import rego.v1

trust_vector := {"hardware": input.hardware}
"#;

#[test]
fn the_status_of_a_trust_vector_follows_ar4si_at_the_negative_boundaries() {
    let src = PolicySource {
        id: "echo".into(),
        version: 1,
        rego: ECHO.into(),
    };
    let policy = CompiledPolicy::compile(&src, &ReferenceValues::default()).unwrap();
    for (value, status) in [
        (-1, ArStatus::None),
        (-2, ArStatus::Affirming),
        (-32, ArStatus::Affirming),
        (-33, ArStatus::Warning),
        (-96, ArStatus::Warning),
        (-97, ArStatus::Contraindicated),
        (-128, ArStatus::Contraindicated),
    ] {
        let a = policy.appraise(&json!({"hardware": value})).unwrap();
        assert_eq!(a.status, status, "hardware {value}");
        assert!(a.findings.is_empty());
    }
}
