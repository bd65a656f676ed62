#![no_main]
//! `k8s_psat` tokens as an agent could send them: any bytes, and the real EKS token with the
//! input's bytes folded into it (so the signature and claim checks are reached), never a
//! panic. The trust set is that cluster's real JWKS from testdata/k8s.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_nodeattest::k8s_psat::{K8sPsat, PsatCluster};
use vouch_nodeattest::{NodeAttestation, NodeAttestor};

const JWKS: &[u8] = include_bytes!("../../testdata/k8s/eks_jwks.json");
const TOKEN: &[u8] = include_bytes!("../../testdata/k8s/eks_psat_token.jwt");
const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/B88E7287E54DB073AC9CDC2FD1BE0969";
/// Inside the token's validity.
const NOW: u64 = 1_763_969_878 + 60;

fn attestor() -> &'static Option<K8sPsat> {
    static A: OnceLock<Option<K8sPsat>> = OnceLock::new();
    A.get_or_init(|| {
        let allow = vec!["hakawai:hakawai-litellm-proxy".to_string()];
        let c = PsatCluster::new("eks", ISSUER, "sts.amazonaws.com", &allow, JWKS).ok()?;
        K8sPsat::new(vec![c]).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(a) = attestor() else { return };
    fn att(data: &[u8]) -> NodeAttestation<'_> {
        NodeAttestation {
            data,
            nonce: "n",
            audience: "vouch",
        }
    }
    let _ = a.attest(&att(data), NOW);
    // The real token with the input xored in from a position the first two bytes choose.
    if data.len() > 2 {
        let mut t = TOKEN.to_vec();
        let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % t.len();
        for (i, b) in data[2..].iter().enumerate() {
            if let Some(x) = t.get_mut(at + i) {
                *x ^= b;
            }
        }
        let _ = a.attest(&att(&t), NOW);
    }
});
