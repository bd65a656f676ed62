//! The public API, checked: rustdoc documents the crate (every feature), and the items it
//! lists, their declarations, inherent methods and trait implementations are compared with
//! `public-api.txt`. A change to the API then shows up as a diff of that file in review; one
//! that removes or alters a line is a breaking change (a new minor version while 0.x). After
//! a deliberate change: `VOUCH_BLESS_API=1 cargo test -p vouch-rp --test public_api`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

/// The text of `html` with tags removed and entities decoded, whitespace collapsed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ");
    // Line wrapping is rustdoc's layout, not the API.
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(", )", ")")
        .replace(",)", ")")
}

/// Implementations rustdoc shows or hides depending on its version (compiler-internal marker
/// traits, and unwind safety, which no one relies on across an SDK boundary); `Send`, `Sync`,
/// `Unpin` and every real trait stay.
const UNSTABLE_IMPLS: &[&str] = &[
    "Freeze",
    "UnsafeUnpin",
    "RefUnwindSafe",
    "UnwindSafe",
    "StructuralPartialEq",
];

/// Every `open … close` span of `s`, the part between.
fn spans<'a>(s: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The API lines of one item page: its declaration, its inherent methods, and the traits it
/// implements (not blanket implementations, which come from other crates). Rustdoc's HTML
/// changes a little between toolchains: after an upgrade, bless the listing if only its
/// layout moved.
fn item_lines(name: &str, page: &str, out: &mut BTreeSet<String>) {
    for d in spans(page, "<pre class=\"rust item-decl\">", "</pre>") {
        out.insert(format!("{name}: {}", text(d)));
    }
    let trait_impls = page.find("id=\"trait-implementations\"");
    let synthetic = page.find("id=\"synthetic-implementations\"");
    let blanket = page
        .find("id=\"blanket-implementations\"")
        .unwrap_or(page.len());
    let inherent_end = trait_impls.or(synthetic).unwrap_or(blanket);
    for m in spans(&page[..inherent_end], "<h4 class=\"code-header\">", "</h4>") {
        out.insert(format!("{name}: {}", text(m)));
    }
    let impls = &page[inherent_end.min(blanket)..blanket];
    for h in spans(impls, "<h3 class=\"code-header\">", "</h3>") {
        let h = text(h);
        let skip = UNSTABLE_IMPLS
            .iter()
            .any(|t| h.contains(&format!(" {t} for ")) || h.contains(&format!("!{t} for ")));
        if !skip {
            out.insert(format!("{name}: {h}"));
        }
    }
}

fn api() -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"));
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "doc",
            "--offline",
            "-p",
            "vouch-rp",
            "--all-features",
            "--no-deps",
        ])
        .current_dir(manifest)
        .output()
        .expect("cargo doc runs");
    assert!(
        out.status.success(),
        "cargo doc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = target.join("doc/vouch_rp");
    let all = std::fs::read_to_string(doc.join("all.html")).unwrap();
    let mut lines = BTreeSet::new();
    for link in spans(&all, "<a href=\"", "</a>") {
        let Some((href, label)) = link.split_once("\">") else {
            continue;
        };
        if href.starts_with("http") || href.contains('#') || !href.ends_with(".html") {
            continue;
        }
        let page = std::fs::read_to_string(doc.join(href)).unwrap();
        let kind = href.rsplit('/').next().unwrap().split('.').next().unwrap();
        item_lines(&format!("{kind} {}", text(label)), &page, &mut lines);
    }
    assert!(lines.len() > 50, "too few API lines: {lines:?}");
    lines.into_iter().map(|l| l + "\n").collect()
}

#[test]
fn public_api_matches_the_committed_listing() {
    let listing = Path::new(env!("CARGO_MANIFEST_DIR")).join("public-api.txt");
    let now = api();
    if std::env::var_os("VOUCH_BLESS_API").is_some() {
        std::fs::write(&listing, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&listing).unwrap_or_default();
    if committed != now {
        let old: BTreeSet<&str> = committed.lines().collect();
        let new: BTreeSet<&str> = now.lines().collect();
        let gone: Vec<_> = old.difference(&new).collect();
        let added: Vec<_> = new.difference(&old).collect();
        panic!(
            "vouch-rp's public API changed.\nremoved or altered (breaking):\n  {}\nadded:\n  {}\n\
             If this is deliberate, run VOUCH_BLESS_API=1 cargo test -p vouch-rp --test public_api \
             and commit public-api.txt (a removed or altered line needs a new minor version while 0.x).",
            gone.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("\n  "),
            added
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}
