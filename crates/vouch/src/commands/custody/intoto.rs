//! The in-toto parts of `vouch custody` that read untrusted bytes and need nothing of the
//! rest of Vouch (so fuzz/fuzz_targets/intoto.rs can build them alone): securesystemslib's
//! canonical JSON, metablocks and their signatures, artifact rules and how they consume a
//! step's materials and products, artifacts, expiry dates.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use super::glob;

/// Most signatures read from one metablock.
pub(super) const MAX_SIGNATURES: usize = 64;
/// Most artifacts read from one link's materials or products.
pub(super) const MAX_ARTIFACTS: usize = 100_000;
/// Most rules a step's expected_materials or expected_products may hold.
pub(super) const MAX_RULES: usize = 1000;
/// Where a signature carries the verifier's countersignature (`timestamp::FIELD`).
pub(super) const TIMESTAMP_FIELD: &str = "timestamp";

/// Why the chain was refused.
#[derive(Debug)]
pub(super) struct Refused(pub(super) String);

pub(super) fn refused<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// securesystemslib's canonical JSON (`formats.encode_canonical`).
pub(super) fn canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), Refused> {
    fn string(s: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push(b'\\');
            }
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        out.push(b'"');
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return refused("canonical JSON has no floats");
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut items: Vec<(&String, &Value)> = m.iter().collect();
            items.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, x)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                canonical(x, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A parsed metablock (or DSSE envelope): `signed` (the payload), the bytes its signatures
/// are over (canonical JSON of `signed`, or the envelope's pre-authentication encoding), and
/// the signatures.
pub(super) struct Metablock {
    pub(super) signed: Map<String, Value>,
    pub(super) canonical: Vec<u8>,
    pub(super) signatures: Vec<Signature>,
}

/// One signature of a metablock.
pub(super) struct Signature {
    pub(super) keyid: String,
    pub(super) sig: Vec<u8>,
    /// The signer's certificate chain, PEM, leaf first (in-toto-golang's `cert` field, ITE-7).
    pub(super) cert: Option<String>,
    /// The verifier's countersignature of `sig` (`vouch custody sign --timestamp-url`).
    pub(super) timestamp: Option<Value>,
}

pub(super) fn parse_metablock(name: &str, bytes: &[u8]) -> Result<Metablock, Refused> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| Refused(format!("{name}: not JSON: {e}")))?;
    let dsse = v.get("payloadType").is_some();
    let (signed, canon) = if dsse {
        dsse_payload(name, &v)?
    } else {
        let Some(signed) = v.get("signed").and_then(Value::as_object) else {
            return refused(format!("{name}: no \"signed\" object"));
        };
        let mut canon = Vec::new();
        canonical(&Value::Object(signed.clone()), &mut canon)
            .map_err(|e| Refused(format!("{name}: {}", e.0)))?;
        (signed.clone(), canon)
    };
    let Some(sigs) = v.get("signatures").and_then(Value::as_array) else {
        return refused(format!("{name}: no \"signatures\" array"));
    };
    if sigs.len() > MAX_SIGNATURES {
        return refused(format!("{name}: more than {MAX_SIGNATURES} signatures"));
    }
    let mut signatures = Vec::new();
    for s in sigs {
        let keyid = s.get("keyid").and_then(Value::as_str);
        // A metablock's signatures are hex, a DSSE envelope's base64 (securesystemslib).
        let sig = s.get("sig").and_then(Value::as_str).and_then(|t| {
            if dsse {
                base64::engine::general_purpose::STANDARD.decode(t).ok()
            } else {
                hex::decode(t).ok()
            }
        });
        let cert = match s.get("cert") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(c.clone()),
            Some(_) => return refused(format!("{name}: a signature's cert is not a string")),
        };
        match (keyid, sig) {
            (Some(k), Some(sig)) => signatures.push(Signature {
                keyid: k.to_owned(),
                sig,
                cert,
                timestamp: s.get(TIMESTAMP_FIELD).cloned(),
            }),
            _ => {
                return refused(format!(
                    "{name}: a signature without keyid or {} sig",
                    if dsse { "base64" } else { "hex" }
                ));
            }
        }
    }
    Ok(Metablock {
        signed,
        canonical: canon,
        signatures,
    })
}

/// The payload type of in-toto metadata in a DSSE envelope (`in-toto-run --use-dsse`).
pub(super) const DSSE_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope's in-toto payload (a link or layout object, the JSON in-toto wrote) and
/// the bytes its signatures are over: the DSSE pre-authentication encoding
/// `DSSEv1 <len(type)> <type> <len(payload)> <payload>`.
fn dsse_payload(name: &str, v: &Value) -> Result<(Map<String, Value>, Vec<u8>), Refused> {
    let pt = v.get("payloadType").and_then(Value::as_str).unwrap_or("");
    if pt != DSSE_PAYLOAD_TYPE {
        return refused(format!(
            "{name}: DSSE payloadType {pt:?} is not {DSSE_PAYLOAD_TYPE:?}"
        ));
    }
    let payload = v
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .ok_or_else(|| Refused(format!("{name}: DSSE payload is not base64")))?;
    let signed: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|e| Refused(format!("{name}: DSSE payload is not a JSON object: {e}")))?;
    let mut pae = format!("DSSEv1 {} {pt} {} ", pt.len(), payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    Ok((signed, pae))
}

/// One artifact rule (in_toto.rulelib's unpacked rule).
#[derive(Debug, Clone)]
pub(super) enum Rule {
    Match {
        pattern: String,
        src_prefix: Option<String>,
        dest_products: bool,
        dest_prefix: Option<String>,
        dest_step: String,
    },
    Create(String),
    Delete(String),
    Modify(String),
    Allow(String),
    Disallow(String),
    Require(String),
}

pub(super) fn parse_rule(v: &Value) -> Result<Rule, String> {
    let toks: Vec<&str> = v
        .as_array()
        .ok_or("a rule is not a list")?
        .iter()
        .map(|t| t.as_str().ok_or("a rule token is not a string"))
        .collect::<Result<_, _>>()?;
    let show = || toks.join(" ");
    let Some(kw) = toks.first() else {
        return Err("an empty rule".into());
    };
    let kw = kw.to_ascii_uppercase();
    let pattern = |t: &str| -> Result<String, String> {
        glob::Pattern::new(t).map_err(|e| format!("rule {:?}: pattern {t:?}: {e}", show()))?;
        Ok(t.to_owned())
    };
    let simple = |toks: &[&str]| -> Result<String, String> {
        match toks {
            [_, p] => pattern(p),
            _ => Err(format!("rule {:?}: expected KEYWORD PATTERN", show())),
        }
    };
    Ok(match kw.as_str() {
        "CREATE" => Rule::Create(simple(&toks)?),
        "DELETE" => Rule::Delete(simple(&toks)?),
        "MODIFY" => Rule::Modify(simple(&toks)?),
        "ALLOW" => Rule::Allow(simple(&toks)?),
        "DISALLOW" => Rule::Disallow(simple(&toks)?),
        "REQUIRE" => Rule::Require(simple(&toks)?),
        "MATCH" => {
            let up: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
            let bad = || {
                format!(
                    "rule {:?}: expected MATCH PATTERN [IN PREFIX] WITH (MATERIALS|PRODUCTS) [IN PREFIX] FROM STEP",
                    show()
                )
            };
            let p = toks.get(1).ok_or_else(bad)?;
            let mut i = 2;
            let mut src_prefix = None;
            if up.get(i).map(String::as_str) == Some("IN") {
                src_prefix = Some((*toks.get(i + 1).ok_or_else(bad)?).to_owned());
                i += 2;
            }
            if up.get(i).map(String::as_str) != Some("WITH") {
                return Err(bad());
            }
            let dest_products = match up.get(i + 1).map(String::as_str) {
                Some("PRODUCTS") => true,
                Some("MATERIALS") => false,
                _ => return Err(bad()),
            };
            i += 2;
            let mut dest_prefix = None;
            if up.get(i).map(String::as_str) == Some("IN") {
                dest_prefix = Some((*toks.get(i + 1).ok_or_else(bad)?).to_owned());
                i += 2;
            }
            if up.get(i).map(String::as_str) != Some("FROM") || toks.len() != i + 2 {
                return Err(bad());
            }
            Rule::Match {
                pattern: pattern(p)?,
                src_prefix,
                dest_products,
                dest_prefix,
                dest_step: toks[i + 1].to_owned(),
            }
        }
        _ => return Err(format!("rule {:?}: rule type {kw} not implemented", show())),
    })
}

/// Artifacts: path → hash dictionary (compared whole, as in-toto does).
pub(super) type Artifacts = BTreeMap<String, Value>;

pub(super) struct Link {
    pub(super) materials: Artifacts,
    pub(super) products: Artifacts,
    /// The command the functionary ran (`command`).
    pub(super) command: Vec<String>,
}

/// A link's `command`: a list of strings, or absent.
pub(super) fn link_command(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn parse_rules(step: &str, what: &str, v: Option<&Value>) -> Result<Vec<Rule>, Refused> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let a = v
        .as_array()
        .ok_or_else(|| Refused(format!("step {step}: {what} is not a list")))?;
    if a.len() > MAX_RULES {
        return refused(format!("step {step}: more than {MAX_RULES} {what}"));
    }
    a.iter()
        .map(|r| parse_rule(r).map_err(|e| Refused(format!("step {step}: {what}: {e}"))))
        .collect()
}

pub(super) fn artifacts(name: &str, what: &str, v: Option<&Value>) -> Result<Artifacts, Refused> {
    let Some(m) = v.and_then(Value::as_object) else {
        return refused(format!("{name}: {what} is not an object"));
    };
    if m.len() > MAX_ARTIFACTS {
        return refused(format!("{name}: more than {MAX_ARTIFACTS} {what}"));
    }
    let mut out = BTreeMap::new();
    for (k, h) in m {
        if !h
            .as_object()
            .is_some_and(|h| !h.is_empty() && h.values().all(Value::is_string))
        {
            return refused(format!("{name}: {what} {k:?} has no hash dictionary"));
        }
        out.insert(k.clone(), h.clone());
    }
    Ok(out)
}

/// Python's `fnmatch.fnmatch` on POSIX ([`glob`]); a pattern CPython cannot translate
/// matches nothing (rules holding one are refused when the layout is read).
pub(super) fn fnmatch(name: &str, pat: &str) -> bool {
    glob::Pattern::new(pat).is_ok_and(|p| p.matches(name))
}

/// Python's `os.path.join(prefix, path)` with `/`.
pub(super) fn join(prefix: &str, path: &str) -> String {
    if path.starts_with('/') || prefix.is_empty() {
        path.to_owned()
    } else if prefix.ends_with('/') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}/{path}")
    }
}

/// in-toto's `verify_item_rules` for one step's materials or products.
pub(super) fn verify_rules(
    step: &str,
    what: &str,
    rules: &[Rule],
    link: &Link,
    links: &BTreeMap<String, Link>,
) -> Result<(), Refused> {
    let source = if what == "materials" {
        &link.materials
    } else {
        &link.products
    };
    let mut queue: BTreeSet<String> = source.keys().cloned().collect();
    for rule in rules {
        let consumed: BTreeSet<String> = match rule {
            Rule::Match {
                pattern,
                src_prefix,
                dest_products,
                dest_prefix,
                dest_step,
            } => {
                let mut c = BTreeSet::new();
                if let Some(dest) = links.get(dest_step) {
                    let dest_arts = if *dest_products { &dest.products } else { &dest.materials };
                    let src_norm = src_prefix.as_deref().map(|p| join(p, ""));
                    for a in &queue {
                        let rel = match &src_norm {
                            Some(p) => match a.strip_prefix(p.as_str()) {
                                Some(r) => r,
                                None => continue,
                            },
                            None => a.as_str(),
                        };
                        if !fnmatch(rel, pattern) {
                            continue;
                        }
                        let dest_path = match dest_prefix {
                            Some(p) => join(p, rel),
                            None => rel.to_owned(),
                        };
                        if dest_arts.get(&dest_path).is_some_and(|h| source.get(a) == Some(h)) {
                            c.insert(a.clone());
                        }
                    }
                }
                c
            }
            Rule::Allow(p) => queue.iter().filter(|a| fnmatch(a, p)).cloned().collect(),
            Rule::Create(p) => queue
                .iter()
                .filter(|a| fnmatch(a, p) && !link.materials.contains_key(*a))
                .cloned()
                .collect(),
            Rule::Delete(p) => queue
                .iter()
                .filter(|a| fnmatch(a, p) && !link.products.contains_key(*a))
                .cloned()
                .collect(),
            Rule::Modify(p) => queue
                .iter()
                .filter(|a| {
                    fnmatch(a, p)
                        && matches!((link.materials.get(*a), link.products.get(*a)), (Some(m), Some(q)) if m != q)
                })
                .cloned()
                .collect(),
            Rule::Disallow(p) => {
                if let Some(a) = queue.iter().find(|a| fnmatch(a, p)) {
                    return refused(format!(
                        "step {step}: {what} {a:?} is disallowed (DISALLOW {p}): no earlier rule of the layout accounts for it (not the matching step's artifact, or altered)"
                    ));
                }
                BTreeSet::new()
            }
            Rule::Require(p) => {
                if !queue.contains(p) {
                    return refused(format!("step {step}: {what} lacks required {p:?} (REQUIRE {p})"));
                }
                BTreeSet::new()
            }
        };
        queue.retain(|a| !consumed.contains(a));
    }
    Ok(())
}

/// A list of strings.
pub(super) fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}
