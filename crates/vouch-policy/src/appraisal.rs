use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use regorus::Value;
use serde::{Deserialize, Serialize};
use vouch_core::{ArStatus, ComponentView, TrustClaim, TrustVector, compare_versions, tier_of};

use crate::{PolicyError, ReferenceValues};

/// Our wrapper module: collects the policy's outputs into one object, defaulting what the
/// policy leaves undefined.
const DECISION_MODULE: &str = r#"
package vouch.decision
import rego.v1

deny := x if { x := data.vouch.appraisal.deny } else := set()
warn := x if { x := data.vouch.appraisal.warn } else := set()
trust_vector := x if { x := data.vouch.appraisal.trust_vector } else := {}

result := {"deny": deny, "warn": warn, "trust_vector": trust_vector}
"#;
const ENTRY: &str = "data.vouch.decision.result";

/// Value a `deny` finding sets its claim to.
const DENY_VALUE: i8 = 96;
/// Value a `warn` finding sets its claim to (unless the claim is already worse).
const WARN_VALUE: i8 = 32;

/// Package lists of at least this many entries are converted once and remembered.
const CACHED_PACKAGES_MIN: usize = 64;
/// Most package lists remembered (emptied when full): a converted list of ~800 packages takes
/// on the order of 100 KiB, so this bounds the cache near 13 MiB. Fleets built from the same
/// images share lists; nodes with lists of their own beyond this just convert each time.
const CACHED_PACKAGES_MAX: usize = 128;

type PackageCache = Mutex<HashMap<[u8; 32], Value>>;

fn package_cache() -> &'static PackageCache {
    static C: std::sync::OnceLock<PackageCache> = std::sync::OnceLock::new();
    C.get_or_init(Default::default)
}

/// The claims as the engine's value. A node's package list (`input.packages`, hundreds of
/// entries) is the same from one attestation to the next and was a good part of converting the
/// claims: it is converted once per distinct list (keyed by the SHA-256 of its JSON) and the
/// converted value shared; the rest is converted each time.
fn to_engine(input: &serde_json::Value) -> Value {
    let Some((obj, packages)) = input.as_object().and_then(|o| {
        o.get("packages")
            .filter(|p| {
                p.as_object()
                    .is_some_and(|m| m.len() >= CACHED_PACKAGES_MIN)
            })
            .map(|p| (o, p))
    }) else {
        return Value::from(input.clone());
    };
    let key: [u8; 32] = match serde_json::to_vec(packages) {
        Ok(bytes) => sha2::Sha256::digest(&bytes).into(),
        Err(_) => return Value::from(input.clone()),
    };
    let cached = package_cache()
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned());
    let converted = cached.unwrap_or_else(|| {
        let v = Value::from(packages.clone());
        if let Ok(mut c) = package_cache().lock() {
            if c.len() >= CACHED_PACKAGES_MAX {
                c.clear();
            }
            c.insert(key, v.clone());
        }
        v
    });
    let rest: serde_json::Map<String, serde_json::Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "packages")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut v = Value::from(serde_json::Value::Object(rest));
    if let Ok(o) = v.as_object_mut() {
        o.insert(Value::from("packages"), converted);
    }
    v
}

/// A policy as stored: id, version and Rego text. Versions are never overwritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// Policy id.
    pub id: String,
    /// Version, starting at 1.
    pub version: u32,
    /// Rego source.
    pub rego: String,
}

/// Builtins whose answer is not a function of their arguments and the input: the clock, random
/// numbers, random UUIDs, HTTP and the runtime's environment.
const NONDETERMINISTIC_BUILTINS: &[&str] = &[
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "http.send",
    "opa.runtime",
];

impl PolicySource {
    /// Whether an appraisal by this policy is a function of its input and reference values
    /// alone, so that one already made over the same claims can be reused. False when the text
    /// names any builtin that reads the clock, randomness, the network or the environment,
    /// anywhere (a comment included: a false "no" only costs a fresh appraisal).
    pub fn is_deterministic(&self) -> bool {
        !NONDETERMINISTIC_BUILTINS
            .iter()
            .any(|b| self.rego.contains(b))
    }
}

/// Whether a finding refuses or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// From the `deny` set.
    Deny,
    /// From the `warn` set.
    Warn,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Deny or warn.
    pub effect: Effect,
    /// The rule's name, as the policy reports it.
    pub rule: String,
    /// The AR4SI claim it affects, if it names one.
    pub claim: Option<String>,
    /// Why.
    pub message: String,
}

impl Finding {
    /// `deny executables (workload_executable): …`
    pub fn reason(&self) -> String {
        let effect = match self.effect {
            Effect::Deny => "deny",
            Effect::Warn => "warn",
        };
        match &self.claim {
            Some(c) => format!("{effect} {c} ({}): {}", self.rule, self.message),
            None => format!("{effect} ({}): {}", self.rule, self.message),
        }
    }
}

/// The outcome of appraising one set of claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    /// Overall status.
    pub status: ArStatus,
    /// The AR4SI trust vector.
    pub trust_vector: TrustVector,
    /// Every deny and warn finding, denies first.
    pub findings: Vec<Finding>,
    /// Policy id that decided.
    pub policy_id: String,
    /// Policy version that decided.
    pub policy_version: u32,
}

impl Appraisal {
    /// One line per finding (empty when nothing fired).
    pub fn reasons(&self) -> Vec<String> {
        self.findings.iter().map(Finding::reason).collect()
    }

    /// A human explanation of which rules decided and why.
    pub fn explain(&self) -> String {
        let mut s = format!(
            "status: {} (policy {} v{})\n",
            self.status, self.policy_id, self.policy_version
        );
        let _ = writeln!(s, "trust vector:");
        for c in TrustClaim::ALL {
            let v = self.trust_vector.get(c);
            let _ = writeln!(s, "  {:<18} {:>4}  {}", c.as_str(), v, tier_of(v));
        }
        if self.findings.is_empty() {
            let _ = writeln!(
                s,
                "decided by: no deny or warn rule fired; status follows the trust vector"
            );
        } else {
            let _ = writeln!(s, "decided by:");
            for f in &self.findings {
                let _ = writeln!(s, "  {}", f.reason());
            }
        }
        s
    }
}

/// A policy compiled together with one revision of the reference values.
pub struct CompiledPolicy {
    id: String,
    version: u32,
    inner: regorus::CompiledPolicy,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn version_arg(v: &Value) -> anyhow::Result<&str> {
    Ok(v.as_string()?.as_ref())
}

fn add_extensions(engine: &mut regorus::Engine) -> anyhow::Result<()> {
    engine.add_extension(
        "vouch.version_cmp".to_string(),
        2,
        Box::new(|args: Vec<Value>| {
            let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
                anyhow::bail!("vouch.version_cmp takes two strings");
            };
            let o = compare_versions(version_arg(a)?, version_arg(b)?);
            Ok(Value::from(o as i64))
        }),
    )?;
    engine.add_extension(
        "vouch.version_at_least".to_string(),
        2,
        Box::new(|args: Vec<Value>| {
            let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
                anyhow::bail!("vouch.version_at_least takes two strings");
            };
            let o = compare_versions(version_arg(a)?, version_arg(b)?);
            Ok(Value::from(o != std::cmp::Ordering::Less))
        }),
    )?;
    Ok(())
}

impl CompiledPolicy {
    /// Parse and compile `source` with `refs` as `data.reference`.
    pub fn compile(source: &PolicySource, refs: &ReferenceValues) -> Result<Self, PolicyError> {
        let err = |message: String| PolicyError::Compile {
            id: source.id.clone(),
            version: source.version,
            message,
        };
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        add_extensions(&mut engine).map_err(|e| err(e.to_string()))?;
        engine
            .add_data(Value::from(refs.to_data()))
            .map_err(|e| err(e.to_string()))?;
        let package = engine
            .add_policy(format!("{}.rego", source.id), source.rego.clone())
            .map_err(|e| err(e.to_string()))?;
        if package != "data.vouch.appraisal" {
            return Err(err(format!(
                "the policy must be in package vouch.appraisal, not {}",
                package.trim_start_matches("data.")
            )));
        }
        engine
            .add_policy("vouch-decision.rego".into(), DECISION_MODULE.into())
            .map_err(|e| err(e.to_string()))?;
        let inner = engine
            .compile_with_entrypoint(&ENTRY.into())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            id: source.id.clone(),
            version: source.version,
            inner,
        })
    }

    /// Policy id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Policy version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Appraise one attester made of components (`composite` evidence): `input` is the whole,
    /// each of `components` says how a part's claims differ from it. The input is converted
    /// for the engine once; each part is the converted whole with its changes (a shallow
    /// copy). Returns the whole's appraisal, its status raised to the worst component's, and
    /// each component's, by submodule name.
    pub fn appraise_components(
        &self,
        input: &serde_json::Value,
        components: &[ComponentView],
    ) -> Result<(Appraisal, Vec<(String, Appraisal)>), PolicyError> {
        let converted = to_engine(input);
        let mut whole = self.eval(converted.clone())?;
        let mut parts = Vec::with_capacity(components.len());
        for c in components {
            let mut v = converted.clone();
            if let Ok(o) = v.as_object_mut() {
                for k in &c.without {
                    o.remove(&Value::from(k.as_str()));
                }
                if let Some(Ok(e)) = o
                    .get_mut(&Value::from("evidence"))
                    .map(|e| e.as_object_mut())
                {
                    e.insert(Value::from("kind"), Value::from(c.kind.as_str()));
                }
            }
            let a = self.eval(v)?;
            whole.status = whole.status.max(a.status);
            parts.push((c.name.clone(), a));
        }
        Ok((whole, parts))
    }

    /// Appraise verified claims.
    pub fn appraise(&self, input: &serde_json::Value) -> Result<Appraisal, PolicyError> {
        self.eval(to_engine(input))
    }

    fn eval(&self, input: Value) -> Result<Appraisal, PolicyError> {
        let out = self
            .inner
            .eval_with_input(input)
            .map_err(|e| PolicyError::Eval {
                id: self.id.clone(),
                version: self.version,
                message: e.to_string(),
            })?;
        let out: serde_json::Value = serde_json::to_value(&out).map_err(|e| self.contract(e))?;
        self.decide(&out)
    }

    fn contract(&self, message: impl ToString) -> PolicyError {
        PolicyError::Contract {
            id: self.id.clone(),
            version: self.version,
            message: message.to_string(),
        }
    }

    fn decide(&self, out: &serde_json::Value) -> Result<Appraisal, PolicyError> {
        let mut vector = TrustVector::default();
        if let Some(tv) = out.get("trust_vector").and_then(|v| v.as_object()) {
            for (k, v) in tv {
                let claim = TrustClaim::parse(k).ok_or_else(|| {
                    self.contract(format!("trust_vector names unknown claim {k:?}"))
                })?;
                let n = v
                    .as_i64()
                    .and_then(|n| i8::try_from(n).ok())
                    .ok_or_else(|| {
                        self.contract(format!("trust_vector[{k:?}] is not -128..127"))
                    })?;
                vector.set(claim, n);
            }
        }
        let mut findings = Vec::new();
        for (effect, key) in [(Effect::Deny, "deny"), (Effect::Warn, "warn")] {
            let items = match out.get(key) {
                Some(serde_json::Value::Array(a)) => a.clone(),
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(other) => return Err(self.contract(format!("{key} is not a set: {other}"))),
            };
            for item in items {
                findings.push(self.finding(effect, &item)?);
            }
        }
        let mut status = ArStatus::None;
        for f in &findings {
            let claim = f.claim.as_deref().and_then(TrustClaim::parse);
            match f.effect {
                Effect::Deny => {
                    status = ArStatus::Contraindicated;
                    if let Some(c) = claim {
                        vector.set(c, DENY_VALUE);
                    }
                }
                Effect::Warn => {
                    status = status.max(ArStatus::Warning);
                    if let Some(c) = claim
                        && vector.tier(c) < ArStatus::Warning
                    {
                        vector.set(c, WARN_VALUE);
                    }
                }
            }
        }
        status = status.max(vector.overall());
        Ok(Appraisal {
            status,
            trust_vector: vector,
            findings,
            policy_id: self.id.clone(),
            policy_version: self.version,
        })
    }

    fn finding(&self, effect: Effect, item: &serde_json::Value) -> Result<Finding, PolicyError> {
        match item {
            serde_json::Value::String(s) => Ok(Finding {
                effect,
                rule: "unnamed".into(),
                claim: None,
                message: s.clone(),
            }),
            serde_json::Value::Object(o) => {
                let claim = match o.get("claim").and_then(|c| c.as_str()) {
                    Some(c) if TrustClaim::parse(c).is_none() => {
                        return Err(self.contract(format!("finding names unknown claim {c:?}")));
                    }
                    c => c.map(str::to_string),
                };
                Ok(Finding {
                    effect,
                    rule: o
                        .get("rule")
                        .and_then(|r| r.as_str())
                        .unwrap_or("unnamed")
                        .to_string(),
                    claim,
                    message: o
                        .get("msg")
                        .map(|m| m.as_str().map(str::to_string).unwrap_or(m.to_string()))
                        .unwrap_or_default(),
                })
            }
            other => Err(self.contract(format!(
                "finding is neither a string nor an object: {other}"
            ))),
        }
    }
}

/// Compiled policies keyed by (id, version, reference-value revision): each combination is
/// compiled once and shared.
#[derive(Debug, Default)]
pub struct PolicyCache {
    map: Mutex<HashMap<(String, u32, u64), Arc<CompiledPolicy>>>,
}

impl PolicyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled form of `source` with `refs`, compiling it on first use.
    pub fn get(
        &self,
        source: &PolicySource,
        refs: &ReferenceValues,
    ) -> Result<Arc<CompiledPolicy>, PolicyError> {
        let key = (source.id.clone(), source.version, refs.revision);
        if let Some(p) = self.lock().get(&key) {
            return Ok(p.clone());
        }
        let compiled = Arc::new(CompiledPolicy::compile(source, refs)?);
        let mut map = self.lock();
        // Older revisions of the same policy are dead weight once a newer one is in use.
        map.retain(|k, _| k.0 != key.0 || (k.1 == key.1 && k.2 == key.2));
        map.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// How many compiled policies are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32, u64), Arc<CompiledPolicy>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
