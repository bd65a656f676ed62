//! `vouch custody`'s in-toto parsers on untrusted bytes (crates/vouch/src/commands/custody/
//! intoto.rs and glob.rs, built here alone): a metablock (JSON, signatures, canonical JSON of
//! `signed`), artifact rules and a link's artifacts, the rules applied, an expiry date
//! (commands/rfc3339.rs), a glob
//! pattern matched. None may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

#[path = "../../crates/vouch/src/commands/custody/glob.rs"]
#[allow(dead_code)]
mod glob;
#[path = "../../crates/vouch/src/commands/rfc3339.rs"]
#[allow(dead_code)]
mod rfc3339;
#[path = "../../crates/vouch/src/commands/custody/intoto.rs"]
#[allow(dead_code)]
mod intoto;

fuzz_target!(|data: &[u8]| {
    let _ = intoto::parse_metablock("fuzz", data);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        // Not JSON: still a pattern and a name.
        let s = String::from_utf8_lossy(data);
        let (pat, name) = s.split_once('\n').unwrap_or((&s, "dir/a.txt"));
        if let Ok(p) = glob::Pattern::new(pat) {
            let _ = p.matches(name);
        }
        return;
    };
    if let (Some(p), Some(n)) = (v["pattern"].as_str(), v["name"].as_str()) {
        let _ = intoto::fnmatch(n, p);
    }
    if let Some(e) = v["expires"].as_str() {
        let _ = rfc3339::rfc3339_seconds(e);
    }
    let mut out = Vec::new();
    let _ = intoto::canonical(&v, &mut out);
    let rules = intoto::parse_rules("s", "expected_materials", v.get("rules"));
    let materials = intoto::artifacts("l", "materials", v.get("materials"));
    let products = intoto::artifacts("l", "products", v.get("products"));
    if let (Ok(rules), Ok(materials), Ok(products)) = (rules, materials, products) {
        let link = intoto::Link {
            materials,
            products,
            command: intoto::link_command(v.get("command")),
        };
        let mut links = BTreeMap::new();
        links.insert(
            "prev".to_string(),
            intoto::Link {
                materials: link.products.clone(),
                products: link.materials.clone(),
                command: Vec::new(),
            },
        );
        let _ = intoto::verify_rules("s", "materials", &rules, &link, &links);
        let _ = intoto::verify_rules("s", "products", &rules, &link, &links);
    }
});
