//! Quorum results: a trust domain can require t of n verifiers to agree before a result
//! exists. Each verifier holds one FROST (RFC 9591, Ed25519-SHA512) key share; the verifier an
//! agent talks to (the coordinator) appraises the evidence, proposes the signed result's exact
//! bytes, and asks the others to appraise the same evidence themselves. A verifier signs only
//! when its own appraisal gives the same claims, at most once per nonce. With t shares the
//! coordinator aggregates one Ed25519 signature under the group key: the result is a plain
//! `EdDSA` JWT any JOSE library verifies against the group's JWK. Fewer than t agreeing
//! verifiers means no result; one verifier alone holds one share and cannot make one.
//!
//! Keys come from a trusted dealer (`vouch quorum dealer`, for development) or a distributed
//! key generation in which no party ever holds the whole key (`vouch quorum dkg`).
//!
//! Only members of the group are heard (issue 12): every `/v1/quorum/*` request carries
//! [`PEER_SIGNATURE_HEADER`], an Ed25519 signature with the sender's own key share over the
//! step, the time and the SHA-256 of the exact body. A verifier checks it against the sender's
//! verifying share in the group key package every member holds, so only holders of another
//! share of this very group pass (not any verifier of the trust domain, nor itself), before it
//! reads the body. The share signs a message under its own key, domain-separated from FROST's
//! group challenge, which commits to the group key. Then each peer has a token bucket, and
//! peer appraisals run a few at a time: beyond either, `503 overloaded`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use frost_ed25519 as frost;
use serde::{Deserialize, Serialize};
use vouch_core::ErrorKind;
use vouch_core::wire::AttestRequest;

use crate::ApiError;
use crate::keys::{KeyError, write_secret};

/// How long a verifier keeps its round-one nonces for a session.
const SESSION_TTL: Duration = Duration::from_secs(30);
/// Sessions held at once (each is a pair of one-time nonces).
const MAX_SESSIONS: usize = 4096;

/// The header a quorum member signs its `/v1/quorum/*` requests with:
/// `<FROST identifier, hex>.<Unix seconds>.<base64url Ed25519 signature>`.
pub const PEER_SIGNATURE_HEADER: &str = "vouch-quorum-signature";
/// Peer appraisals (round one) this verifier runs at once.
const MAX_PEER_APPRAISALS: usize = 4;
/// How long a round-one request waits for an appraisal slot before `503 overloaded`.
const APPRAISAL_WAIT: Duration = Duration::from_secs(2);
/// Requests a peer may send at once, and how many a second it regains (one attestation costs
/// each peer one commit and at most one sign).
const PEER_BURST: f64 = 64.0;
const PEER_RATE: f64 = 32.0;

/// Quorum settings of a verifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumSettings {
    /// This verifier's key package (`signer-<i>.json`).
    pub key_package: PathBuf,
    /// The group's public key package (`group.json`).
    pub group: PathBuf,
    /// Base URLs of the other quorum members.
    #[serde(default)]
    pub peers: Vec<String>,
    /// CA certificate for the peers' TLS (default: the system's roots).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Refuse to answer an attestation without a quorum result (otherwise the single-signed
    /// result is returned alone when too few verifiers agree).
    #[serde(default)]
    pub required: bool,
}

/// The loaded key share and group key.
pub(crate) struct QuorumKeys {
    key: frost::keys::KeyPackage,
    group: frost::keys::PublicKeyPackage,
    kid: String,
}

impl std::fmt::Debug for QuorumKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn invalid(m: impl Into<String>) -> KeyError {
    KeyError::Invalid(m.into())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
        what: "reading quorum key material",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{what} {}: {e}", path.display())))
}

fn to_json(v: &impl Serialize) -> Result<Vec<u8>, KeyError> {
    serde_json::to_vec_pretty(v).map_err(|e| invalid(e.to_string()))
}

/// The raw Ed25519 group public key.
fn group_key_bytes(group: &frost::keys::PublicKeyPackage) -> Result<Vec<u8>, KeyError> {
    group
        .verifying_key()
        .serialize()
        .map_err(|e| invalid(format!("group key: {e}")))
}

/// The key id of a group: `quorum-` and the first 8 bytes of SHA-256 of the key, hex.
fn group_kid(key: &[u8]) -> String {
    use sha2::Digest as _;
    format!("quorum-{}", hex::encode(&sha2::Sha256::digest(key)[..8]))
}

impl QuorumKeys {
    /// Load and cross-check a key package and its group.
    pub(crate) fn load(s: &QuorumSettings) -> Result<Self, KeyError> {
        let key: frost::keys::KeyPackage = read_json(&s.key_package, "key package")?;
        let group: frost::keys::PublicKeyPackage = read_json(&s.group, "group key package")?;
        if key.verifying_key() != group.verifying_key() {
            return Err(invalid(format!(
                "{} belongs to another group than {}",
                s.key_package.display(),
                s.group.display()
            )));
        }
        match group.verifying_shares().get(key.identifier()) {
            Some(v) if v == key.verifying_share() => {}
            _ => {
                return Err(invalid(format!(
                    "the share in {} is not one of the group's",
                    s.key_package.display()
                )));
            }
        }
        let kid = group_kid(&group_key_bytes(&group)?);
        Ok(Self { key, group, kid })
    }

    /// The group's JWK (Ed25519, `alg` EdDSA).
    pub(crate) fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(group_key_bytes(&self.group).unwrap_or_default()),
        })
    }

    /// Shares needed.
    pub(crate) fn threshold(&self) -> usize {
        usize::from(*self.key.min_signers())
    }

    /// The JWS header of quorum results.
    pub(crate) fn header(&self) -> String {
        let h = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        URL_SAFE_NO_PAD.encode(h.to_string())
    }
}

fn ids(n: u16) -> Result<Vec<frost::Identifier>, KeyError> {
    (1..=n)
        .map(|i| frost::Identifier::try_from(i).map_err(|e| invalid(e.to_string())))
        .collect()
}

fn check_params(threshold: u16, signers: u16) -> Result<(), KeyError> {
    if threshold < 2 || threshold > signers {
        return Err(invalid(format!(
            "threshold {threshold} of {signers}: need 2 <= threshold <= signers"
        )));
    }
    Ok(())
}

/// Trusted-dealer key generation (development): one process makes the whole key, splits it
/// into `signers` shares of which any `threshold` sign, writes `signer-<i>.json` (0600) and
/// `group.json` under `out`, and forgets the key.
pub fn dealer(threshold: u16, signers: u16, out: &Path) -> Result<Vec<PathBuf>, KeyError> {
    check_params(threshold, signers)?;
    let (shares, group) = frost::keys::generate_with_dealer(
        signers,
        threshold,
        frost::keys::IdentifierList::Custom(&ids(signers)?),
        rand_core06::OsRng,
    )
    .map_err(|e| invalid(e.to_string()))?;
    let mut written = Vec::new();
    for (i, (_, share)) in shares.into_iter().enumerate() {
        let kp = frost::keys::KeyPackage::try_from(share).map_err(|e| invalid(e.to_string()))?;
        let p = out.join(format!("signer-{}.json", i + 1));
        write_secret(&p, &to_json(&kp)?)?;
        written.push(p);
    }
    let g = out.join("group.json");
    write_secret(&g, &to_json(&group)?)?;
    written.push(g);
    Ok(written)
}

/// The signing work of one quorum result without the network: every listed share commits,
/// signs and the shares are aggregated (what `vouch bench --quorum` times against a plain
/// Ed25519 signature). Returns the 64-byte signature.
pub fn sign_locally(
    shares: &[frost::keys::KeyPackage],
    group: &frost::keys::PublicKeyPackage,
    message: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for k in shares {
        let (n, c) = frost::round1::commit(k.signing_share(), &mut rand_core06::OsRng);
        nonces.insert(*k.identifier(), n);
        commitments.insert(*k.identifier(), c);
    }
    let package = frost::SigningPackage::new(commitments, message);
    let mut sig_shares = BTreeMap::new();
    for k in shares {
        let n = nonces
            .get(k.identifier())
            .ok_or_else(|| invalid("missing nonces"))?;
        let s = frost::round2::sign(&package, n, k).map_err(|e| invalid(e.to_string()))?;
        sig_shares.insert(*k.identifier(), s);
    }
    frost::aggregate(&package, &sig_shares, group)
        .and_then(|s| s.serialize())
        .map_err(|e| invalid(e.to_string()))
}

/// The bytes a quorum member signs for a request to `/v1/quorum/<step>`.
fn peer_signing_input(
    group_kid: &str,
    step: &str,
    from: &frost::Identifier,
    at: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut v = b"vouch-quorum-peer-v1\0".to_vec();
    for p in [
        group_kid,
        step,
        &hex::encode(from.serialize()),
        &at.to_string(),
    ] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(&sha2::Sha256::digest(body));
    v
}

/// The [`PEER_SIGNATURE_HEADER`] value with which the holder of `key` sends `body` to
/// `/v1/quorum/<step>` (`commit` or `sign`) at `now`.
pub fn sign_peer_request(
    key: &frost::keys::KeyPackage,
    step: &str,
    body: &[u8],
    now: u64,
) -> Result<String, KeyError> {
    let kid = group_kid(
        &key.verifying_key()
            .serialize()
            .map_err(|e| invalid(format!("group key: {e}")))?,
    );
    let signing = frost::SigningKey::deserialize(&key.signing_share().serialize())
        .map_err(|e| invalid(format!("key share: {e}")))?;
    let msg = peer_signing_input(&kid, step, key.identifier(), now, body);
    let sig = signing
        .sign(rand_core06::OsRng, &msg)
        .serialize()
        .map_err(|e| invalid(format!("signing: {e}")))?;
    Ok(format!(
        "{}.{now}.{}",
        hex::encode(key.identifier().serialize()),
        URL_SAFE_NO_PAD.encode(sig)
    ))
}

/// Read a key package written by [`dealer`] or [`dkg::finish`].
pub fn read_key_package(path: &Path) -> Result<frost::keys::KeyPackage, KeyError> {
    read_json(path, "key package")
}

/// Read a group key package.
pub fn read_group(path: &Path) -> Result<frost::keys::PublicKeyPackage, KeyError> {
    read_json(path, "group key package")
}

/// The raw Ed25519 public key of a group (32 bytes).
pub fn group_public_key(group: &frost::keys::PublicKeyPackage) -> Result<Vec<u8>, KeyError> {
    group_key_bytes(group)
}

/// Distributed key generation, as files exchanged between the participants: no participant
/// ever holds the group's private key. Round 1 files are public; each round 2 file is meant
/// for one recipient only and must reach it confidentially.
pub mod dkg {
    use super::*;

    fn id(i: u16) -> Result<frost::Identifier, KeyError> {
        frost::Identifier::try_from(i).map_err(|e| invalid(e.to_string()))
    }

    /// Round 1 for participant `me`: writes `round1-<me>.json` (send to everyone) and
    /// `secret-<me>.round1.json` (keep).
    pub fn round1(me: u16, threshold: u16, signers: u16, dir: &Path) -> Result<PathBuf, KeyError> {
        check_params(threshold, signers)?;
        let (secret, package) =
            frost::keys::dkg::part1(id(me)?, signers, threshold, rand_core06::OsRng)
                .map_err(|e| invalid(e.to_string()))?;
        write_secret(
            &dir.join(format!("secret-{me}.round1.json")),
            &to_json(&secret)?,
        )?;
        let p = dir.join(format!("round1-{me}.json"));
        std::fs::write(&p, to_json(&package)?).map_err(|source| KeyError::Io {
            what: "writing round 1 package",
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }

    fn round1_packages(
        me: u16,
        signers: u16,
        dir: &Path,
    ) -> Result<BTreeMap<frost::Identifier, frost::keys::dkg::round1::Package>, KeyError> {
        let mut m = BTreeMap::new();
        for j in (1..=signers).filter(|j| *j != me) {
            m.insert(
                id(j)?,
                read_json(&dir.join(format!("round1-{j}.json")), "round 1 package")?,
            );
        }
        Ok(m)
    }

    /// Round 2 for `me`, once every participant's round 1 file is in `dir`: writes
    /// `round2-<me>-to-<j>.json` for each other participant `j`, and keeps its secret.
    pub fn round2(me: u16, signers: u16, dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
        let secret: frost::keys::dkg::round1::SecretPackage = read_json(
            &dir.join(format!("secret-{me}.round1.json")),
            "round 1 secret",
        )?;
        let (secret2, packages) =
            frost::keys::dkg::part2(secret, &round1_packages(me, signers, dir)?)
                .map_err(|e| invalid(e.to_string()))?;
        write_secret(
            &dir.join(format!("secret-{me}.round2.json")),
            &to_json(&secret2)?,
        )?;
        let mut out = Vec::new();
        for j in (1..=signers).filter(|j| *j != me) {
            let pkg = packages
                .get(&id(j)?)
                .ok_or_else(|| invalid(format!("no round 2 package for participant {j}")))?;
            let p = dir.join(format!("round2-{me}-to-{j}.json"));
            write_secret(&p, &to_json(pkg)?)?;
            out.push(p);
        }
        Ok(out)
    }

    /// Finish for `me`: checks every package and writes `signer-<me>.json` and `group.json`;
    /// the round secrets are deleted.
    pub fn finish(me: u16, signers: u16, dir: &Path) -> Result<PathBuf, KeyError> {
        let secret2: frost::keys::dkg::round2::SecretPackage = read_json(
            &dir.join(format!("secret-{me}.round2.json")),
            "round 2 secret",
        )?;
        let mut r2 = BTreeMap::new();
        for j in (1..=signers).filter(|j| *j != me) {
            r2.insert(
                id(j)?,
                read_json(
                    &dir.join(format!("round2-{j}-to-{me}.json")),
                    "round 2 package",
                )?,
            );
        }
        let (kp, group) =
            frost::keys::dkg::part3(&secret2, &round1_packages(me, signers, dir)?, &r2)
                .map_err(|e| invalid(e.to_string()))?;
        let p = dir.join(format!("signer-{me}.json"));
        write_secret(&p, &to_json(&kp)?)?;
        write_secret(&dir.join("group.json"), &to_json(&group)?)?;
        for f in [
            format!("secret-{me}.round1.json"),
            format!("secret-{me}.round2.json"),
        ] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        Ok(p)
    }
}

/// Round one at a peer: the evidence and the exact bytes the coordinator proposes to sign.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// Session id chosen by the coordinator.
    pub session: String,
    /// The evidence, as the agent sent it.
    pub request: AttestRequest,
    /// `base64url(header).base64url(claims)` of the proposed result.
    pub signing_input: String,
}

/// A peer's agreement: its commitments for the session.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommitResponse {
    /// The peer's FROST identifier.
    pub identifier: frost::Identifier,
    /// Its round-one commitments.
    pub commitments: frost::round1::SigningCommitments,
}

/// Round two at a peer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The session of round one.
    pub session: String,
    /// Commitments of the chosen signers and the message.
    pub signing_package: frost::SigningPackage,
}

/// A peer's signature share.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignResponse {
    /// The peer's FROST identifier.
    pub identifier: frost::Identifier,
    /// Its share.
    pub share: frost::round2::SignatureShare,
}

struct Session {
    nonces: frost::round1::SigningNonces,
    message: Vec<u8>,
    created: Instant,
}

/// A verifier's side of the protocol: its key share, its pending sessions and the nonces it
/// has signed for.
pub(crate) struct Quorum {
    pub(crate) keys: QuorumKeys,
    pub(crate) settings: QuorumSettings,
    sessions: Mutex<HashMap<String, Session>>,
    signed_nonces: Mutex<HashMap<String, Instant>>,
    http: reqwest::Client,
    /// Peer request signatures seen, with their time: each is heard once.
    seen: Mutex<HashMap<Vec<u8>, u64>>,
    /// Each peer's token bucket: tokens left and when they were counted.
    buckets: Mutex<HashMap<frost::Identifier, (f64, Instant)>>,
    appraisals: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("keys", &self.keys)
            .field("peers", &self.settings.peers)
            .finish_non_exhaustive()
    }
}

fn overloaded(m: &str) -> ApiError {
    ApiError::new(ErrorKind::Overloaded, format!("{m}; try again shortly"))
}

fn disagree(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::QuorumDisagrees, m)
}

/// Whether `proposed` is the result this verifier's own appraisal (`own`) gives: equal in
/// every claim except the ones each verifier fills in itself (`jti`, `iat`, `exp`), with `iat`
/// within `skew` seconds of `now` and a lifetime of at most `ttl`.
pub(crate) fn same_verdict(
    proposed: &vouch_core::Ear,
    own: &vouch_core::Ear,
    now: u64,
    skew: u64,
    ttl: u64,
) -> Result<(), ApiError> {
    if proposed.iat.abs_diff(now) > skew {
        return Err(disagree(format!(
            "the proposed result was issued at {}, {} s from this verifier's clock (tolerance {skew} s)",
            proposed.iat,
            proposed.iat.abs_diff(now)
        )));
    }
    match proposed.exp {
        Some(e) if e > proposed.iat && e - proposed.iat <= ttl => {}
        _ => {
            return Err(disagree(format!(
                "the proposed result's lifetime is not within {ttl} s"
            )));
        }
    }
    let mut aligned = proposed.clone();
    aligned.jti.clone_from(&own.jti);
    aligned.iat = own.iat;
    aligned.exp = own.exp;
    if aligned != *own {
        let status = |e: &vouch_core::Ear| e.overall_status().to_string();
        return Err(disagree(format!(
            "this verifier's own appraisal differs from the proposed result (own: {}, proposed: {})",
            status(own),
            status(proposed)
        )));
    }
    Ok(())
}

impl Quorum {
    /// Load the key share; build the peer client.
    pub(crate) fn new(settings: QuorumSettings) -> Result<Self, KeyError> {
        let keys = QuorumKeys::load(&settings)?;
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(ca) = &settings.ca_cert {
            let pem = std::fs::read(ca).map_err(|source| KeyError::Io {
                what: "reading the quorum peers' CA",
                path: ca.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| invalid(format!("quorum ca_cert: {e}")))?;
            b = b.tls_certs_only([cert]);
        }
        let http = b.build().map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            keys,
            settings,
            sessions: Mutex::new(HashMap::new()),
            signed_nonces: Mutex::new(HashMap::new()),
            http,
            seen: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            appraisals: tokio::sync::Semaphore::new(MAX_PEER_APPRAISALS),
        })
    }

    /// Hear a `/v1/quorum/<step>` request only from another member of this group: its
    /// [`PEER_SIGNATURE_HEADER`] must verify under a verifying share of the group other than
    /// this verifier's, over this step, the exact `body` and a time within `skew` of `now`;
    /// each signature is heard once; each peer is held to its token bucket. Then the body is
    /// parsed. Nothing here costs more than a hash and a signature check.
    pub(crate) fn admit<T: serde::de::DeserializeOwned>(
        &self,
        step: &str,
        header: Option<&axum::http::HeaderValue>,
        body: &[u8],
        now: u64,
        skew: u64,
    ) -> Result<T, ApiError> {
        let unauthenticated = |m: &str| {
            ApiError::new(
                ErrorKind::Unauthenticated,
                format!("quorum requests are heard only from members of this quorum: {m}"),
            )
        };
        let header = header
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| unauthenticated("no vouch-quorum-signature header"))?;
        let mut parts = header.splitn(3, '.');
        let (Some(id), Some(at), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(unauthenticated(
                "the signature header is not id.time.signature",
            ));
        };
        let from = hex::decode(id)
            .ok()
            .and_then(|b| frost::Identifier::deserialize(&b).ok())
            .ok_or_else(|| unauthenticated("the sender's identifier does not parse"))?;
        if &from == self.keys.key.identifier() {
            return Err(unauthenticated(
                "the request claims to come from this verifier",
            ));
        }
        let share = self
            .keys
            .group
            .verifying_shares()
            .get(&from)
            .ok_or_else(|| unauthenticated("the sender holds no share of this group"))?;
        let at: u64 = at
            .parse()
            .map_err(|_| unauthenticated("the signature time is not a number"))?;
        if at.abs_diff(now) > skew {
            return Err(unauthenticated(&format!(
                "the request was signed at {at}, {} s from this verifier's clock (tolerance {skew} s)",
                at.abs_diff(now)
            )));
        }
        let verifying = share
            .serialize()
            .ok()
            .and_then(|b| frost::VerifyingKey::deserialize(&b).ok())
            .ok_or_else(|| unauthenticated("the sender's verifying share does not parse"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .ok()
            .and_then(|b| frost::Signature::deserialize(&b).ok())
            .ok_or_else(|| unauthenticated("the signature does not parse"))?;
        let msg = peer_signing_input(&self.keys.kid, step, &from, at, body);
        if verifying.verify(&msg, &signature).is_err() {
            return Err(unauthenticated(
                "the signature does not verify under the sender's share for this body",
            ));
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|_, t| t.saturating_add(skew) >= now);
            if seen.contains_key(sig.as_bytes()) {
                return Err(ApiError::new(
                    ErrorKind::NonceReused,
                    "this signed quorum request was already heard",
                ));
            }
            if seen.len() >= MAX_SESSIONS {
                return Err(overloaded("too many quorum requests in flight"));
            }
            seen.insert(sig.as_bytes().to_vec(), at);
        }
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let clock = Instant::now();
            let (tokens, last) = buckets.entry(from).or_insert((PEER_BURST, clock));
            *tokens =
                (*tokens + clock.duration_since(*last).as_secs_f64() * PEER_RATE).min(PEER_BURST);
            *last = clock;
            if *tokens < 1.0 {
                return Err(overloaded(&format!(
                    "peer {} sends more than {PEER_RATE} quorum requests a second",
                    id.trim_start_matches('0')
                )));
            }
            *tokens -= 1.0;
        }
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                ErrorKind::MalformedRequest,
                format!("quorum {step} request: {e}"),
            )
        })
    }

    /// A slot for one peer appraisal; `503 overloaded` when none frees up within
    /// [`APPRAISAL_WAIT`].
    pub(crate) async fn appraisal_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(APPRAISAL_WAIT, self.appraisals.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(overloaded(&format!(
                "{MAX_PEER_APPRAISALS} quorum appraisals are already running"
            ))),
        }
    }

    /// Round one for this verifier, after its own appraisal agreed with `signing_input`:
    /// one-time nonces kept for the session, commitments returned. At most one session per
    /// evidence nonce: a replayed request gets no second signature.
    pub(crate) fn commit(
        &self,
        session: &str,
        nonce_id: &str,
        signing_input: &str,
    ) -> Result<CommitResponse, ApiError> {
        let now = Instant::now();
        {
            let mut signed = self.signed_nonces.lock().unwrap_or_else(|p| p.into_inner());
            signed.retain(|_, t| now.duration_since(*t) < Duration::from_secs(600));
            if signed.insert(nonce_id.to_string(), now).is_some() {
                return Err(ApiError::new(
                    ErrorKind::NonceReused,
                    "this verifier already took part in a quorum result for this nonce",
                ));
            }
        }
        let (nonces, commitments) =
            frost::round1::commit(self.keys.key.signing_share(), &mut rand_core06::OsRng);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                ErrorKind::StoreUnavailable,
                "too many quorum sessions in progress; try again",
            ));
        }
        sessions.insert(
            session.to_string(),
            Session {
                nonces,
                message: signing_input.as_bytes().to_vec(),
                created: now,
            },
        );
        Ok(CommitResponse {
            identifier: *self.keys.key.identifier(),
            commitments,
        })
    }

    /// Round two for this verifier: sign only the message agreed in round one, once.
    pub(crate) fn sign(&self, req: &SignRequest) -> Result<SignResponse, ApiError> {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.session)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    "no such quorum session here (expired, already signed, or never agreed)",
                )
            })?;
        if req.signing_package.message().as_slice() != session.message.as_slice() {
            return Err(disagree(
                "the signing package's message is not the result this verifier agreed to",
            ));
        }
        if req
            .signing_package
            .signing_commitment(self.keys.key.identifier())
            != Some(*session.nonces.commitments())
        {
            return Err(disagree(
                "the signing package does not carry this verifier's commitments",
            ));
        }
        let share = frost::round2::sign(&req.signing_package, &session.nonces, &self.keys.key)
            .map_err(|e| disagree(format!("signing: {e}")))?;
        Ok(SignResponse {
            identifier: *self.keys.key.identifier(),
            share,
        })
    }

    /// As coordinator: gather `t` agreeing verifiers (this one first) for `signing_input` and
    /// aggregate their shares into a compact JWS. Errors say how many agreed and why the
    /// others did not.
    pub(crate) async fn coordinate(
        &self,
        request: &AttestRequest,
        nonce_id: &str,
        signing_input: &str,
    ) -> Result<String, ApiError> {
        let session = uuid::Uuid::new_v4().to_string();
        let t = self.keys.threshold();
        let mut commitments = BTreeMap::new();
        let mine = self.commit(&session, nonce_id, signing_input)?;
        commitments.insert(mine.identifier, mine.commitments);
        let body = CommitRequest {
            session: session.clone(),
            request: request.clone(),
            signing_input: signing_input.to_string(),
        };
        let mut agreed = Vec::new();
        let mut refusals = Vec::new();
        // Ask every peer at once; keep the first t - 1 that agree.
        for (peer, r) in self
            .ask_all::<_, CommitResponse>(&self.settings.peers, "commit", &body)
            .await
        {
            match r {
                Ok(c) if agreed.len() + 1 < t => {
                    commitments.insert(c.identifier, c.commitments);
                    agreed.push(peer);
                }
                Ok(_) => {}
                Err(e) => refusals.push(format!("{peer}: {e}")),
            }
        }
        if commitments.len() < t {
            return Err(ApiError::new(
                ErrorKind::QuorumUnavailable,
                format!(
                    "quorum not reached: {} of the {t} verifiers needed agreed ({})",
                    commitments.len(),
                    refusals.join("; ")
                ),
            ));
        }
        let package = frost::SigningPackage::new(commitments, signing_input.as_bytes());
        let mut shares = BTreeMap::new();
        let mine = self.sign(&SignRequest {
            session: session.clone(),
            signing_package: package.clone(),
        })?;
        shares.insert(mine.identifier, mine.share);
        let req = SignRequest {
            session,
            signing_package: package.clone(),
        };
        for (peer, r) in self.ask_all::<_, SignResponse>(&agreed, "sign", &req).await {
            let s = r.map_err(|e| {
                ApiError::new(
                    ErrorKind::QuorumUnavailable,
                    format!("quorum not reached: {peer} did not sign: {e}"),
                )
            })?;
            shares.insert(s.identifier, s.share);
        }
        let sig = frost::aggregate(&package, &shares, &self.keys.group).map_err(|e| {
            ApiError::new(
                ErrorKind::QuorumUnavailable,
                format!("aggregating the signature shares: {e}"),
            )
        })?;
        let bytes = sig
            .serialize()
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes)))
    }
}

impl Quorum {
    /// POST `body` to `/v1/quorum/<step>` of every peer at once, signed with this verifier's
    /// key share ([`sign_peer_request`]).
    async fn ask_all<B: Serialize, T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        peers: &[String],
        step: &str,
        body: &B,
    ) -> Vec<(String, Result<T, String>)> {
        let signed = serde_json::to_vec(body)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                sign_peer_request(&self.keys.key, step, &b, crate::state::unix_now())
                    .map(|s| (b, s))
                    .map_err(|e| e.to_string())
            });
        let (body, signature) = match signed {
            Ok(v) => v,
            Err(e) => {
                return peers.iter().map(|p| (p.clone(), Err(e.clone()))).collect();
            }
        };
        let mut set = tokio::task::JoinSet::new();
        for p in peers {
            let (http, body, peer) = (self.http.clone(), body.clone(), p.clone());
            let signature = signature.clone();
            let url = format!("{}/v1/quorum/{step}", p.trim_end_matches('/'));
            set.spawn(async move { (peer, post::<T>(&http, &url, body, &signature).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(v) = r {
                out.push(v);
            }
        }
        out
    }
}

/// POST a signed JSON body to a peer; its error body's message when it refuses.
async fn post<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    signature: &str,
) -> Result<T, String> {
    let r = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(PEER_SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("unreachable ({e})"))?;
    let status = r.status();
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        serde_json::from_slice(&bytes).map_err(|e| format!("bad answer: {e}"))
    } else {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(format!(
            "{} {}",
            v["error"]["kind"].as_str().unwrap_or("refused"),
            v["error"]["message"].as_str().unwrap_or("")
        ))
    }
}
