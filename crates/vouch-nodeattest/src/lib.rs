//! Zero-touch node attestation: a node proves what it is with a document its platform signed
//! (a Kubernetes projected service-account token, a cloud's instance identity document), so it
//! joins without a join token.
//!
//! Each method is one [`NodeAttestor`]; the verifier's configuration picks which are accepted
//! (`node_attestors`). An attestor checks the document offline — against keys and certificates
//! it was configured with, never fetched while verifying — and answers with a
//! [`NodeIdentity`]: a stable key the node id derives from, and selectors from the document's
//! fields that registration entries can name.
//!
//! The TPM method (an EK certificate chaining to a manufacturer CA, then credential
//! activation) needs a round trip with the TPM and lives with the verifier's TPM enrollment.

use std::fmt::Debug;

pub mod aws_iid;
pub mod azure_imds;
mod cloud;
pub mod gcp_iit;
mod pkcs7;

pub use aws_iid::{AwsIidAttestor, AwsIidConfig, AwsIidData};
pub use azure_imds::{AzureImdsAttestor, AzureImdsConfig, imds_nonce};
pub use gcp_iit::{GcpIitAttestor, GcpIitConfig, gcp_audience};

pub mod k8s_psat;

/// The most bytes of attestation data any method accepts.
pub const MAX_DATA: usize = 64 * 1024;

/// What a node sent to be attested, after the verifier checked that the agent holds the key it
/// enrolls (its signature over method, data, key and nonce).
#[derive(Debug, Clone, Copy)]
pub struct NodeAttestation<'a> {
    /// The method's document, as the platform produced it (untrusted, at most [`MAX_DATA`]).
    pub data: &'a [u8],
    /// The verifier's nonce the agent signed over; methods whose document can carry a nonce
    /// (an audience, a nonce parameter) require it to be there.
    pub nonce: &'a str,
    /// The verifier's audience (`audience` in its configuration).
    pub audience: &'a str,
}

/// Who the platform says the node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The method's stable name for the machine (`aws_iid:<account>:<region>:<instance>`,
    /// `k8s_psat:<cluster>:<node uid>`): the node id is derived from it, so the same machine
    /// is the same node every time it attests.
    pub key: String,
    /// Selectors from the document's fields, `<method>:<field>:<value>`.
    pub selectors: Vec<String>,
    /// The node's host name, when the document names one.
    pub hostname: Option<String>,
    /// Whether the node may attest again with another agent key while it is enrolled (a
    /// short-lived token: yes; a long-lived document anyone who read it once could replay:
    /// no, until an admin opens a re-enrolment).
    pub reattestable: bool,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeAttestError {
    /// The document is not in the method's format.
    #[error("{method}: malformed attestation data: {why}")]
    Malformed {
        /// The method.
        method: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The signature does not verify, or the signer is not trusted.
    #[error("{method}: signature: {why}")]
    Signature {
        /// The method.
        method: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The document is signed but says the wrong thing (expired, another audience, nonce,
    /// cluster, account...).
    #[error("{method}: {why}")]
    Refused {
        /// The method.
        method: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The attestor's own configuration is unusable.
    #[error("{method}: configuration: {why}")]
    Config {
        /// The method.
        method: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// One node-attestation method.
pub trait NodeAttestor: Send + Sync + Debug {
    /// The method's name, as configured and as agents send it (`k8s_psat`, `aws_iid`, ...).
    fn method(&self) -> &'static str;

    /// Verify `att` at `now` (Unix seconds) and say who the node is.
    fn attest(&self, att: &NodeAttestation<'_>, now: u64) -> Result<NodeIdentity, NodeAttestError>;
}

/// The methods a verifier can accept: `join_token` (a one-time token an admin created) and
/// `tpm` (an EK certificate from a trusted manufacturer, then credential activation) are the
/// verifier's own; the rest are [`NodeAttestor`]s built by [`from_config`].
pub const METHODS: [&str; 6] = [
    "join_token",
    "tpm",
    "k8s_psat",
    "aws_iid",
    "gcp_iit",
    "azure_imds",
];

/// Build the attestor for `method` from its settings (the `[node_attestor.<method>]` table of
/// the verifier's configuration).
pub fn from_config(
    method: &str,
    settings: &serde_json::Value,
) -> Result<Box<dyn NodeAttestor>, NodeAttestError> {
    fn parse<T: serde::de::DeserializeOwned>(
        method: &'static str,
        settings: &serde_json::Value,
    ) -> Result<T, NodeAttestError> {
        serde_json::from_value(settings.clone()).map_err(|e| NodeAttestError::Config {
            method,
            why: format!("[node_attestor.{method}]: {e}"),
        })
    }
    Ok(match method {
        "k8s_psat" => Box::new(k8s_psat::K8sPsat::from_settings(settings)?),
        "aws_iid" => Box::new(AwsIidAttestor::from_config(parse("aws_iid", settings)?)?),
        "gcp_iit" => Box::new(GcpIitAttestor::from_config(parse("gcp_iit", settings)?)?),
        "azure_imds" => Box::new(AzureImdsAttestor::from_config(parse(
            "azure_imds",
            settings,
        )?)?),
        _ => {
            return Err(NodeAttestError::Config {
                method: "node_attestors",
                why: format!(
                    "method {method:?} is not one of the document attestors ({})",
                    METHODS[2..].join(", ")
                ),
            });
        }
    })
}

/// The node id a method's stable key derives to: a UUID-shaped string from its SHA-256, so
/// the same machine always gets the same id and no two methods' keys collide.
pub fn node_id_for(key: &str) -> String {
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(format!("vouch node {key}").as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        let a = node_id_for("aws_iid:1:us-east-1:i-1");
        assert_eq!(a, node_id_for("aws_iid:1:us-east-1:i-1"));
        assert_ne!(a, node_id_for("aws_iid:1:us-east-1:i-2"));
        assert_eq!(a.len(), 36);
    }
}
