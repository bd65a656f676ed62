#![no_main]
//! Evidence of every kind as an enrolled agent could send it: the payload is the fuzzer's bytes,
//! signed with the agent key, so each kind's payload decoder, the quote parser and the TEE
//! verifiers see them (a TPM context with the real Trustee AK, the real vendor roots), and the
//! bytes are also tried as a payload text.
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_core::{Evidence, EvidenceKind, evidence_signing_input};
use vouch_evidence::{AgentKey, TpmContext, VerifyContext, decode_payload, verifier_for};

const TRUSTEE: &str = include_str!("../../testdata/tpm/trustee_tpm_evidence.json");
const AMD: &str = include_str!("../../testdata/snp/milan_ask_ark_asvk.pem");
const INTEL: &[u8] = include_bytes!("../../testdata/tdx/intel_sgx_root_ca.der");

struct Fixture {
    key: AgentKey,
    tpm: TpmContext,
    roots: vouch_tee::TeeRoots,
}

fn fixture() -> &'static Option<Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let t: serde_json::Value = serde_json::from_str(TRUSTEE).ok()?;
        let ak = STANDARD.decode(t["ak_public"].as_str()?).ok()?;
        let mut roots = vouch_x509::pem_certificates(AMD).get(1..2)?.to_vec();
        roots.push(INTEL.to_vec());
        Some(Fixture {
            key: AgentKey::generate().ok()?,
            tpm: TpmContext {
                ak: vouch_tpm::Ak::from_spki(&ak),
                ak_name: vec![0, 11, 1, 2, 3],
                last_clock: None,
                policy: vouch_tpm::QuotePolicy::default(),
                ek_issuer: None,
                ima_state: None,
                ima_allow: Default::default(),
                ima_deny: Default::default(),
            },
            roots: vouch_tee::TeeRoots::from_certs(&roots).ok()?,
        })
    })
}

const KINDS: [EvidenceKind; 5] = [
    EvidenceKind::Software,
    EvidenceKind::Tpm,
    EvidenceKind::Tee,
    EvidenceKind::Composite,
    EvidenceKind::Sample,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = decode_payload(s);
    }
    let (Some(f), Some((&k, body))) = (fixture(), data.split_first()) else {
        return;
    };
    let kind = KINDS[k as usize % KINDS.len()];
    let payload = URL_SAFE_NO_PAD.encode(body);
    let signature = f.key.sign_b64(&evidence_signing_input(kind, &payload));
    let ev = Evidence {
        kind,
        key_id: "k".into(),
        payload,
        signature,
    };
    let ctx = VerifyContext {
        public_key: f.key.public_key(),
        signers: &[],
        tpm: Some(&f.tpm),
        tee: Some(&f.roots),
        now: 1_717_200_000,
        parts: Some(&HalfHeld),
    };
    if let Some(v) = verifier_for(kind) {
        let _ = v.verify(&ev, &ctx);
    }
});

/// Parts sent by digest (`held`): those whose digest starts with `0` are "held" (an empty part
/// of the name asked for), the others are not, so both ways through `resolve_parts` are fuzzed.
#[derive(Debug)]
struct HalfHeld;

impl vouch_evidence::PartSource for HalfHeld {
    fn part(&self, name: &str, digest: &str) -> Option<vouch_evidence::HeldPart> {
        use std::sync::Arc;
        use vouch_evidence::HeldPart;
        if !digest.starts_with('0') {
            return None;
        }
        Some(match name {
            "files" => HeldPart::Files(Arc::default()),
            "processes" => HeldPart::Processes(Arc::default()),
            "listening" => HeldPart::Listening(Arc::default()),
            _ => HeldPart::Packages(Arc::default()),
        })
    }
}
