//! The nonce and audience forms the agent uses for cloud documents (vouch-core) are the
//! ones the attestors check.

/// The agent (through vouch-core) and this attestor derive the same IMDS nonce and GCP
/// audience from a verifier nonce, or no agent's document would ever carry the right one.
#[test]
fn the_agent_and_the_attestors_agree_on_the_nonce_forms() {
    for n in ["", "abc", "AAAA-bbbb_cccc.dddd"] {
        assert_eq!(
            vouch_core::wire::node_attest_nonce("azure_imds", n),
            vouch_nodeattest::imds_nonce(n)
        );
        assert_eq!(
            vouch_core::wire::node_attest_audience("gcp_iit", "vouch", n),
            vouch_nodeattest::gcp_audience("vouch", n)
        );
        assert_eq!(vouch_core::wire::node_attest_nonce("aws_iid", n), n);
    }
}
