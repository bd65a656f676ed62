//! `[admission] require_provenance`: an image is admitted only with SLSA provenance from one
//! of `provenance_builders`.
//!
//! After its signature is checked, the image's digest is looked up in the image's own
//! repository for the attestations cosign attaches (`sha256-<hex>.att`), each verified by
//! [`vouch_image::ImageChecker::provenance`] with `[image_signatures] provenance_keys`: a
//! signature by a trusted key over the DSSE envelope, an in-toto Statement v1 with SLSA
//! provenance v1, a subject naming this very digest. The image passes when one verified
//! envelope's `runDetails.builder.id` is in `provenance_builders` (exact match). Definite
//! answers (verified builders, no provenance, none verifies) are kept per repository and digest
//! for [`TTL`] seconds in a bounded map, since a tag's digest is resolved on every review but
//! a digest's attestations rarely change; a registry that cannot be asked is asked again next
//! time, and the image is denied meanwhile (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;

use vouch_image::{Digest, ImageError, ImageRef};

use crate::images::ImageSignatures;

/// Seconds a digest's provenance answer is reused.
const TTL: u64 = 300;
/// Most answers kept.
const MAX_ENTRIES: usize = 4096;

type Answer = Result<Vec<String>, String>;

/// Provenance answers by `registry/repository@digest`: when, and the verified builder ids or
/// why there are none.
#[derive(Default)]
pub(crate) struct ProvenanceCache(Mutex<HashMap<String, (u64, Answer)>>);

impl ProvenanceCache {
    fn get(&self, key: &str, now: u64) -> Option<Answer> {
        let c = self.0.lock().ok()?;
        let (at, a) = c.get(key)?;
        (now < at.saturating_add(TTL)).then(|| a.clone())
    }

    fn put(&self, key: String, answer: Answer, now: u64) {
        if let Ok(mut c) = self.0.lock() {
            if c.len() >= MAX_ENTRIES {
                c.retain(|_, (at, _)| now < at.saturating_add(TTL));
                if c.len() >= MAX_ENTRIES
                    && let Some(oldest) = c
                        .iter()
                        .min_by_key(|(_, (at, _))| *at)
                        .map(|(k, _)| k.clone())
                {
                    c.remove(&oldest);
                }
            }
            c.insert(key, (now, answer));
        }
    }
}

/// `Ok` when `image` (resolved to `digest`) has verified provenance from one of `builders`;
/// else why not.
pub(super) async fn check(
    images: &ImageSignatures,
    cache: &ProvenanceCache,
    image: &str,
    digest: &str,
    builders: &[String],
    now: u64,
) -> Result<(), String> {
    let r = ImageRef::parse(image).map_err(|e| e.to_string())?;
    let d = Digest::parse(digest).map_err(|e| e.to_string())?;
    let key = format!("{}/{}@{}", r.registry, r.repository, d);
    let answer = match cache.get(&key, now) {
        Some(a) => a,
        None => match images.checker().provenance(&r, &d).await {
            Ok(v) => {
                let a: Answer = Ok(v.into_iter().map(|p| p.builder_id).collect());
                cache.put(key, a.clone(), now);
                a
            }
            Err(e @ ImageError::Registry(_)) => {
                return Err(format!("{digest}: provenance not fetched: {e}"));
            }
            Err(e) => {
                let a: Answer = Err(e.to_string());
                cache.put(key, a.clone(), now);
                a
            }
        },
    };
    let built_by = answer?;
    if built_by.iter().any(|b| builders.contains(b)) {
        return Ok(());
    }
    Err(format!(
        "{digest}: its provenance names builder {}, not one of provenance_builders",
        built_by
            .iter()
            .take(4)
            .map(|b| vouch_core::clip(b, 128))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
