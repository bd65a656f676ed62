//! Joining through the TPM alone (zero-touch node attestation method `tpm`): with a TPM
//! configured, no join token and no enrollment on disk, the agent sends its new key, the EK,
//! the EK certificate from the TPM's NV and the AK (`POST /v1/tpm/join`), activates the
//! credential the verifier answers with, and sends the secret back
//! (`POST /v1/tpm/join/activate`). The verifier enrolls the key for the node its EK names.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::path::Path;

use vouch_core::ErrorKind;
use vouch_core::wire::{TpmJoinActivateRequest, TpmJoinRequest, tpm_join_signing_input};
use vouch_evidence::AgentKey;

use crate::agent::Enrollment;
use crate::{AgentError, Tpm, VerifierClient};

/// The file that records the TPM enrollment of this agent's AK (shared with the join-token
/// path, which then enrolls nothing more).
pub(crate) const TPM_MARKER: &str = "tpm-enrollment.json";

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Config(format!("TPM task failed: {e}")))?
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Say what a verifier's refusal of a TPM join means for this node.
fn explain(e: AgentError) -> AgentError {
    match e {
        AgentError::Refused {
            status,
            kind: ErrorKind::NodeAttestation,
            message,
        } => AgentError::Refused {
            status,
            kind: ErrorKind::NodeAttestation,
            message: format!(
                "{message} (this agent has a TPM and no join token: either the verifier adds \
                 \"tpm\" to node_attestors, or the agent gets a join token from `vouch token create`)"
            ),
        },
        AgentError::Refused {
            status,
            kind: ErrorKind::RouteNotFound,
            message,
        } => AgentError::Refused {
            status,
            kind: ErrorKind::RouteNotFound,
            message: format!(
                "{message} (this verifier predates TPM joins: give the agent a join token)"
            ),
        },
        e => e,
    }
}

/// Join through the TPM `cfg` configures, its AK kept where the agent keeps it.
pub(crate) async fn join_configured(
    cfg: &crate::AgentConfig,
    clients: &[VerifierClient],
    key: &AgentKey,
) -> Result<Enrollment, AgentError> {
    let Some(t) = &cfg.tpm else {
        return Err(AgentError::NotEnrolled);
    };
    let tpm = Tpm::new(t.clone(), &cfg.data_dir.join("tpm"));
    join(clients, key, &tpm, &cfg.data_dir).await
}

/// Join the verifier through `tpm` with `key`: the first verifier that answers decides, and
/// both steps go to it. Records the AK's activation in `data_dir` like the join-token path.
pub(crate) async fn join(
    clients: &[VerifierClient],
    key: &AgentKey,
    tpm: &Tpm,
    data_dir: &Path,
) -> Result<Enrollment, AgentError> {
    let t = tpm.clone();
    let id = blocking(move || t.identity()).await?;
    let Some(cert) = &id.ek_cert else {
        return Err(AgentError::Config(
            "this TPM holds no EK certificate (NV index of the EK credential profile), so it \
             cannot join without a join token: pass one from `vouch token create`"
                .into(),
        ));
    };
    let public_key = key.public_key_b64();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let ek_public = B64.encode(&id.ek_public);
    let ek_cert = B64.encode(cert);
    let ak_public = B64.encode(&id.ak_public);
    let req = TpmJoinRequest {
        signature: key.sign_b64(&tpm_join_signing_input(
            "join",
            &public_key,
            &[&hostname, &ek_public, &ek_cert, &ak_public],
        )),
        public_key: public_key.clone(),
        hostname,
        ek_public,
        ek_cert,
        ak_public,
    };
    let mut last = None;
    for c in clients {
        let challenge = match c.tpm_join(&req).await {
            Ok(ch) => ch,
            Err(e @ AgentError::Unreachable { .. }) => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(explain(e)),
        };
        let blob = B64
            .decode(&challenge.credential_blob)
            .map_err(|_| AgentError::Protocol("credential_blob is not base64url".into()))?;
        let sealed = B64
            .decode(&challenge.encrypted_secret)
            .map_err(|_| AgentError::Protocol("encrypted_secret is not base64url".into()))?;
        let t = tpm.clone();
        let secret = B64.encode(blocking(move || t.activate_credential(&blob, &sealed)).await?);
        let done = c
            .tpm_join_activate(&TpmJoinActivateRequest {
                signature: key.sign_b64(&tpm_join_signing_input(
                    "activate",
                    &public_key,
                    &[&challenge.challenge_id, &secret],
                )),
                challenge_id: challenge.challenge_id,
                secret,
            })
            .await
            .map_err(explain)?;
        write_atomic(
            &data_dir.join(TPM_MARKER),
            serde_json::json!({"ak_name": done.ak_name})
                .to_string()
                .as_bytes(),
        )?;
        tracing::info!(node = %done.node_id, key = %done.key_id, ak = %done.ak_name,
            "joined through the TPM (no join token): AK activated");
        return Ok(Enrollment {
            node_id: done.node_id,
            key_id: done.key_id,
        });
    }
    Err(last.unwrap_or(AgentError::Config("no verifier".into())))
}
