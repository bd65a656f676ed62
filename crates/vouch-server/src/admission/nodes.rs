//! `[admission] require_attested_node`: a pod may run only on a node Vouch holds affirming.
//!
//! The Kubernetes node name (a Pod's `spec.nodeName`, a Binding's `target.name`) is mapped to
//! Vouch's node by what the node's own platform signed: the `k8s_psat` node attestation of
//! the configured `cluster`, whose projected token named that node
//! (`k8s_psat:agent_node_name:<name>`, `k8s_psat:cluster:<cluster>`). A host name an agent
//! declared at a join-token enrollment is never used: it is the agent's word, not the
//! cluster's. When a node name was attested more than once (a node re-created under the same
//! name gets another uid, so another Vouch node), the most recently attested one is the node.
//! It must not be revoked, and its workload `node_workload` (the agent's own, `host` by
//! default) must be affirming with its deadline not passed — the rule that grants SVIDs.

use crate::state::State;

/// Longest Kubernetes node name (a DNS subdomain).
const MAX_NODE_NAME: usize = 253;

/// `Ok` when `node` (a Kubernetes node name) is a Vouch node attested affirming; else why not.
pub(super) async fn check(
    st: &State,
    cluster: &str,
    workload: &str,
    node: &str,
    now: u64,
) -> Result<(), String> {
    let shown = vouch_core::clip(node, 64);
    if node.is_empty()
        || node.len() > MAX_NODE_NAME
        || !node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(format!("node {shown:?} is not a Kubernetes node name"));
    }
    let lookup = |e: vouch_store::StoreError| format!("node {shown}: store: {e}");
    let want_cluster = format!("k8s_psat:cluster:{cluster}");
    let found = st
        .store
        .nodes_attested_with("k8s_psat", &format!("k8s_psat:agent_node_name:{node}"))
        .await
        .map_err(lookup)?
        .into_iter()
        .find(|r| r.selectors.contains(&want_cluster))
        .ok_or_else(|| {
            format!("node {shown} of cluster {cluster} was never attested (no k8s_psat node attestation names it)")
        })?;
    let id = &found.node_id;
    if let Some(r) = st.store.revocation("node", id).await.map_err(lookup)? {
        return Err(format!(
            "node {shown} (vouch node {id}) is revoked: {}",
            vouch_core::clip(&r.reason, 256)
        ));
    }
    let wid = format!("{id}/{workload}");
    let w = st
        .store
        .workload(&wid)
        .await
        .map_err(lookup)?
        .ok_or_else(|| format!("node {shown}: workload {wid} was never attested"))?;
    if w.status != "affirming" {
        return Err(format!(
            "node {shown}: workload {wid} is {} ({})",
            w.status,
            vouch_core::clip(&w.reason, 256)
        ));
    }
    if w.deadline.is_some_and(|d| d < now) {
        return Err(format!(
            "node {shown}: workload {wid} missed its attestation deadline"
        ));
    }
    Ok(())
}
