//! Asking the verifier for a secret (issue 17 item 4): fresh evidence about the workload, its
//! measurements binding a one-time HPKE key, and the answer opened with that key alone.

use vouch_core::wire::{SecretReleaseRequest, secret_release_info, secret_release_signing_input};
use vouch_evidence::ReleaseKey;

use super::Agent;
use crate::AgentError;

impl Agent {
    /// Ask the current verifier for secret `name` for `workload` (the node's own workload when
    /// `None`, else a declared one by name), on behalf of a caller with `selectors` (`unix:`,
    /// `container:`, `k8s:` as the agent observed them; empty for the node itself).
    ///
    /// The agent makes a fresh X25519 key pair, attests the workload for a fresh nonce with
    /// the public key in the measurements (so the evidence binds it, as it binds the nonce: the
    /// agent's signature, and a quote's `extraData` or a TEE's report data when the node has
    /// one), and opens the sealed answer with the private key, which is then dropped. The
    /// attestation is recorded like any other: it is the workload's latest result.
    pub async fn get_secret(
        &mut self,
        name: &str,
        workload: Option<&str>,
        selectors: &[String],
    ) -> Result<Vec<u8>, AgentError> {
        let index = match workload {
            None => 0,
            Some(w) => self
                .collectors
                .iter()
                .position(|c| c.config().workload_name == w)
                .ok_or_else(|| AgentError::Config(format!("no workload {w:?} on this agent")))?,
        };
        let client = self.client().clone();
        let ch = client.challenge().await?;
        let key = ReleaseKey::generate();
        let before = (self.active, self.release_key.take());
        self.active = index;
        self.release_key = Some(key.public_b64());
        let evidence = self.release_evidence(&ch.nonce).await;
        (self.active, self.release_key) = before;
        let evidence = evidence?;
        let signature = self.key.sign_b64(&secret_release_signing_input(
            &self.enrollment.key_id,
            name,
            &evidence.payload,
            selectors,
        ));
        let req = SecretReleaseRequest {
            key_id: self.enrollment.key_id.clone(),
            name: name.to_string(),
            evidence,
            selectors: selectors.to_vec(),
            signature,
        };
        let res = client.secret_release(&req).await;
        // The release's evidence moved the verifier's IMA replay as a round's does: the next
        // slice starts where it now is, or from entry 0 when the answer does not say.
        #[cfg(feature = "tpm")]
        {
            self.ima_sent = match &res {
                Ok(r) => r.ima_position.unwrap_or(self.ima_sent),
                Err(_) => 0,
            };
        }
        let res = res?;
        if res.name != name || res.node_id != self.enrollment.node_id {
            return Err(AgentError::Protocol(format!(
                "asked for secret {name:?} for node {}, the answer is {:?} for {}",
                self.enrollment.node_id, res.name, res.node_id
            )));
        }
        let info = secret_release_info(name, res.version, &self.enrollment.node_id, &ch.nonce);
        Ok(key.open(&res.enc, &res.ciphertext, &info)?)
    }

    /// Evidence for `nonce` of the kind a round sends (a quote and/or a TEE report when the
    /// node has them).
    async fn release_evidence(&mut self, nonce: &str) -> Result<vouch_core::Evidence, AgentError> {
        #[cfg(feature = "tpm")]
        let evidence = match (self.tpm.is_some(), self.cfg.tee.is_some()) {
            (true, true) => self.composite_evidence(nonce).await,
            (true, false) => self.tpm_evidence(nonce).await,
            (false, true) => self.tee_evidence(nonce).await,
            (false, false) => self.round_evidence(nonce),
        };
        #[cfg(not(feature = "tpm"))]
        let evidence = if self.cfg.tee.is_some() {
            self.tee_evidence(nonce).await
        } else {
            self.round_evidence(nonce)
        };
        evidence
    }
}

/// Largest request line on the secret socket.
const MAX_ASK: usize = 1024;

/// How long a caller has to send its request, and the agent to answer it.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A workload's request on the secret socket, for the agent's loop to answer.
#[derive(Debug)]
pub(crate) struct SecretAsk {
    name: String,
    workload: Option<String>,
    selectors: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u8>, AgentError>>,
}

/// One request line: `{"name": "...", "workload": "..."}` (`workload` optional: a declared
/// workload of this agent; the node's own otherwise).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AskLine {
    name: String,
    #[serde(default)]
    workload: Option<String>,
}

/// The answer line: `{"value": "<base64url>"}` or `{"error": {"kind", "message"}}`.
fn answer_line(r: Result<Vec<u8>, AgentError>) -> Vec<u8> {
    use base64::Engine as _;
    let v = match r {
        Ok(v) => {
            serde_json::json!({ "value": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v) })
        }
        Err(AgentError::Refused {
            status,
            kind,
            message,
        }) => serde_json::json!({
            "error": { "kind": kind.as_str(), "status": status, "message": message }
        }),
        Err(e) => serde_json::json!({ "error": { "kind": "agent", "message": e.to_string() } }),
    };
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

impl Agent {
    /// Answer one request from the secret socket.
    pub(crate) async fn answer(&mut self, ask: SecretAsk) {
        let r = self
            .get_secret(&ask.name, ask.workload.as_deref(), &ask.selectors)
            .await;
        match &r {
            Ok(_) => tracing::info!(secret = %ask.name, "secret released to a local caller"),
            Err(e) => tracing::info!(secret = %ask.name, "secret refused to a local caller: {e}"),
        }
        let _ = ask.reply.send(r);
    }
}

/// Serve the secret socket at `path`: one JSON line in, one out, per connection. The
/// caller's selectors are what the Workload API would give it (`src`): the `unix:` ones of its
/// peer credentials, pinned at accept, and with a container runtime or the kubelet configured
/// its `container:` and `k8s:` ones. They go to the verifier with the request, so a secret's
/// policy can name the binary (or uid, image, pod) that may have it. Requests go to the agent's
/// loop over `tx`, one at a time between rounds.
pub(crate) fn serve_secret_socket(
    path: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<SecretAsk>,
    src: crate::IdentitySource,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |what: &'static str| {
        let p = path.to_path_buf();
        move |source| AgentError::Io {
            what: format!("{what} the secret socket {}", p.display()),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing the stale")(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io("binding"))?;
    // Anyone local may ask: what they get is what the verifier's policy grants to their
    // selectors (their uid, their binary), on fresh evidence.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(io("setting permissions of"))?;
    tracing::info!("secret socket listening on {}", path.display());
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            let src = src.clone();
            tokio::spawn(async move {
                if let Err(e) = tokio::time::timeout(ASK_TIMEOUT, one(stream, tx, src)).await {
                    tracing::debug!("secret socket: a caller timed out: {e}");
                }
            });
        }
    }))
}

async fn one(
    mut stream: tokio::net::UnixStream,
    tx: tokio::sync::mpsc::Sender<SecretAsk>,
    src: crate::IdentitySource,
) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    // Pinned at accept, as the Workload API does, and the executable hashed now (off the
    // runtime: it may be large).
    let pinned = tokio::task::spawn_blocking(move || {
        let c = crate::Caller::pin(cred.uid(), cred.gid(), cred.pid());
        let _ = c.selectors();
        c
    })
    .await;
    let Ok(caller) = pinned else {
        return;
    };
    let selectors = crate::workload_api::selectors(&src, &caller)
        .await
        .map_err(|s| AgentError::Config(format!("the caller: {}", s.message())));
    let (r, mut w) = stream.split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(r.take(MAX_ASK as u64 + 1));
    let answer = match reader.read_until(b'\n', &mut line).await {
        Ok(_) if line.len() > MAX_ASK => Err(AgentError::Config(format!(
            "a request is one JSON line of at most {MAX_ASK} bytes"
        ))),
        Ok(_) => match (serde_json::from_slice::<AskLine>(&line), selectors) {
            (_, Err(e)) => Err(e),
            (Ok(ask), Ok(selectors)) => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                let sent = tx
                    .send(SecretAsk {
                        name: ask.name,
                        workload: ask.workload,
                        selectors,
                        reply,
                    })
                    .await;
                match sent {
                    Ok(()) => rx.await.unwrap_or_else(|_| {
                        Err(AgentError::Config("the agent is stopping".into()))
                    }),
                    Err(_) => Err(AgentError::Config("the agent is stopping".into())),
                }
            }
            (Err(e), Ok(_)) => Err(AgentError::Config(format!(
                "a request is {{\"name\": \"...\", \"workload\": \"...\"}}: {e}"
            ))),
        },
        Err(e) => Err(AgentError::Config(format!("reading the request: {e}"))),
    };
    // The secret goes only to the process that asked: not to one that exec'd another binary
    // or took over the pid meanwhile (the same check as before every SVID issuance).
    let answer = match (answer, caller.selectors()) {
        (Ok(_), Err(changed)) => {
            tracing::warn!("secret socket: {changed}; the released secret is not passed on");
            Err(AgentError::Config(format!("{changed}: reconnect")))
        }
        (answer, _) => answer,
    };
    let _ = w.write_all(&answer_line(answer)).await;
    let _ = w.shutdown().await;
}

/// Ask the agent serving the secret socket at `path` for secret `name` (for its declared
/// `workload`, or the node's own): what `vouch secret get` does.
pub async fn ask_secret_socket(
    path: &std::path::Path,
    name: &str,
    workload: Option<&str>,
) -> Result<Vec<u8>, AgentError> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let io = |what: &'static str| {
        let p = path.to_path_buf();
        move |source| AgentError::Io {
            what: format!("{what} the agent's secret socket {}", p.display()),
            source,
        }
    };
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .map_err(io("connecting to"))?;
    let mut req = serde_json::json!({ "name": name });
    if let Some(w) = workload {
        req["workload"] = w.into();
    }
    let mut line = req.to_string().into_bytes();
    line.push(b'\n');
    s.write_all(&line).await.map_err(io("writing to"))?;
    let mut out = Vec::new();
    // The answer: a secret of at most 64 KiB in base64url, or an error, on one line.
    (&mut s)
        .take(256 * 1024)
        .read_to_end(&mut out)
        .await
        .map_err(io("reading from"))?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| AgentError::Protocol(format!("the secret socket's answer: {e}")))?;
    if let Some(b64) = v["value"].as_str() {
        return base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| AgentError::Protocol("the secret is not base64url".into()));
    }
    let kind = v["error"]["kind"].as_str().unwrap_or("agent");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or("no answer")
        .to_string();
    match vouch_core::ErrorKind::parse(kind) {
        Some(kind) => Err(AgentError::Refused {
            status: v["error"]["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(403),
            kind,
            message,
        }),
        None => Err(AgentError::Config(message)),
    }
}
