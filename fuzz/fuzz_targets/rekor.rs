#![no_main]
//! A sigstore bundle's transparency-log material, untrusted: the whole bundle (its entries,
//! bodies, inclusion proofs and checkpoints) checked against the real public-good trusted
//! root, a checkpoint note alone, an inclusion proof's path, a trusted root, and cosign's
//! `dev.sigstore.cosign/bundle` annotation with a certificate annotation (key-less images).
use libfuzzer_sys::fuzz_target;
use vouch_image::Digest;
use vouch_image::cosign::{KeylessIdentity, verify_keyless_payload};
use vouch_image::rekor::{self, Checkpoint, TransparencyLog};

const TRUSTED_ROOT: &[u8] = include_bytes!("../../testdata/slsa/trusted_root.json");

fuzz_target!(|data: &[u8]| {
    let _ = TransparencyLog::from_trusted_root(data);
    let text = String::from_utf8_lossy(data);
    let _ = Checkpoint::parse(&text);
    if let Ok(entry) = rekor::entry_from_cosign_bundle(&text)
        && let Ok(logs) = TransparencyLog::from_trusted_root(TRUSTED_ROOT)
    {
        let expected = rekor::Expected::HashedRekord {
            sha256: [0; 32],
            signature: data.to_vec(),
            certificate: data.to_vec(),
        };
        let require = rekor::Require::Promise;
        assert!(rekor::verify_entry(&entry, &logs, &expected, (0, u64::MAX), require).is_err());
    }
    if let Ok(trusted) = KeylessIdentity::new(TRUSTED_ROOT, "a@example.com", "https://x") {
        let (cert, bundle) = text.split_once('\n').unwrap_or((&text, ""));
        let digest = Digest::of(b"image");
        let r = verify_keyless_payload(data, "", cert, bundle, &[trusted], &digest);
        assert!(r.is_err());
    }
    if let Ok(logs) = TransparencyLog::from_trusted_root(TRUSTED_ROOT)
        && let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data)
    {
        // No entry made by the fuzzer carries Rekor's signatures: all are refused.
        assert!(rekor::verify_bundle(&bundle, data, (0, u64::MAX), &logs).is_err());
    }
    // Any path over any index and size: an answer or an error, never a panic.
    if data.len() >= 16 {
        let index = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        let size = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
        let path: Vec<[u8; 32]> = data[16..]
            .chunks_exact(32)
            .take(rekor::MAX_PROOF_HASHES)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        let _ = rekor::root_from_inclusion_proof([0; 32], index, size, &path);
    }
});
