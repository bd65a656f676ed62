//! Request and response bodies of the verifier's HTTP/JSON API (`/v1/...`).
//!
//! The OpenAPI document served at `/openapi.json` describes the same shapes.

use serde::{Deserialize, Serialize};

use crate::{ArStatus, Evidence, UnixSeconds};

/// `POST /v1/challenge` response: a fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// The nonce to bind into evidence.
    pub nonce: String,
    /// The audience (verifier cluster) the nonce is valid for.
    pub audience: String,
    /// Unix time after which the nonce is refused.
    pub expires_at: UnixSeconds,
}

/// `POST /v1/enroll` request: bind an agent key to a node with a one-time join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The join token from `vouch token create`.
    pub join_token: String,
    /// base64url of the agent's raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// The agent's host name, recorded on the node.
    pub hostname: String,
    /// base64url Ed25519 signature over [`enroll_signing_input`], proving key possession.
    pub signature: String,
}

/// The bytes an agent signs to prove it holds the key it enrolls.
pub fn enroll_signing_input(join_token: &str, public_key_b64: &str) -> Vec<u8> {
    let mut v = b"vouch-enroll-v1\0".to_vec();
    v.extend_from_slice(join_token.as_bytes());
    v.push(0);
    v.extend_from_slice(public_key_b64.as_bytes());
    v
}

/// `POST /v1/enroll` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The node the key now belongs to.
    pub node_id: String,
    /// The key id to put in evidence.
    pub key_id: String,
}

/// `POST /v1/attest` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The signed evidence.
    pub evidence: Evidence,
    /// Audience (`aud`) to put in the result, when the caller names its relying party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_audience: Option<String>,
}

/// `POST /v1/attest` response and `GET /v1/results/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationResult {
    /// Attestation record id.
    pub attestation_id: String,
    /// The workload the evidence was about.
    pub workload_id: String,
    /// Overall appraisal status.
    pub status: ArStatus,
    /// The signed EAR (compact JWS).
    pub result: String,
    /// Issue time.
    pub issued_at: UnixSeconds,
    /// Expiry of the result.
    pub expires_at: UnixSeconds,
    /// Policy id and version that decided.
    pub policy: String,
    /// Why the policy decided as it did.
    pub reasons: Vec<String>,
    /// Whether the verifier still stands behind this result (false once superseded by a failed
    /// appraisal, a missed deadline, or expiry).
    pub valid: bool,
    /// For `tpm` evidence with an IMA log: how many IMA entries the verifier has replayed; the
    /// next slice starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_position: Option<u64>,
    /// With a quorum-configured trust domain: the same result signed by t of the n verifiers
    /// together (one Ed25519 signature under the group key; verify it as a plain EdDSA JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_result: Option<String>,
    /// With `pq_signatures` (the default): `result` with the verifier's ML-DSA-65 signature
    /// beside the classical one, as JWS JSON general serialization ([`crate::jws`]); its
    /// first signature with the payload is exactly `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_pq: Option<String>,
    /// `quorum_result` with the ML-DSA-65 signature of the verifier that coordinated it added
    /// (JWS JSON, as `result_pq`): the threshold holds for the FROST Ed25519 signature only;
    /// the post-quantum signature is that one verifier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_result_pq: Option<String>,
    /// The revision of the registration entries when this result was made: when it moves, the
    /// agent fetches its workloads' identities again instead of waiting for their half-life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries_revision: Option<u64>,
    /// The parts of this evidence's measurements the verifier now holds, by name, with the
    /// SHA-256 (hex) it holds them under: the agent may send a part that has not changed by
    /// this digest next time (`SoftwareMeasurements::held`) instead of in full.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub held_parts: std::collections::BTreeMap<String, String>,
    /// A fresh nonce for the agent's next attestation, so that it need not ask for one (one
    /// round trip per attestation instead of two). The same nonce as `POST /v1/challenge`
    /// gives: single-use, for this audience, valid until its `expires_at`; an agent whose next
    /// round comes later asks for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_nonce: Option<ChallengeResponse>,
}

/// A workload as listed by `GET /v1/workloads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    /// Workload id (`node-id/name`).
    pub id: String,
    /// The node it runs on.
    pub node_id: String,
    /// Its name on the node.
    pub name: String,
    /// Current status.
    pub status: ArStatus,
    /// Why it has that status.
    pub reason: String,
    /// Last successful evidence time.
    pub last_attested_at: Option<UnixSeconds>,
    /// Latest attestation record.
    pub last_attestation_id: Option<String>,
    /// When the verifier will mark it contraindicated if no evidence arrives.
    pub deadline: Option<UnixSeconds>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable kind and a human message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable kind (see [`crate::ErrorKind`]).
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

/// `POST /v1/tpm/enroll`: bind this node's TPM (EK, and an AK under it) to its agent key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEnrollRequest {
    /// The enrolled agent key making the request.
    pub key_id: String,
    /// base64url `TPM2B_PUBLIC` of the EK.
    pub ek_public: String,
    /// base64url DER EK certificate, when the TPM has one in NV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert: Option<String>,
    /// base64url `TPM2B_PUBLIC` of the AK.
    pub ak_public: String,
    /// base64url Ed25519 signature by the agent key over [`tpm_enroll_signing_input`].
    pub signature: String,
}

/// The bytes the agent signs for TPM enrollment and activation requests.
pub fn tpm_enroll_signing_input(key_id: &str, parts: &[&str]) -> Vec<u8> {
    let mut v = b"vouch-tpm-enroll-v1\0".to_vec();
    v.extend_from_slice(key_id.as_bytes());
    for p in parts {
        v.push(0);
        v.extend_from_slice(p.as_bytes());
    }
    v
}

/// `POST /v1/tpm/enroll` response: a credential only the TPM holding the EK can activate, and
/// only for the AK named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEnrollResponse {
    /// base64url `TPM2B_ID_OBJECT`.
    pub credential_blob: String,
    /// base64url `TPM2B_ENCRYPTED_SECRET`.
    pub encrypted_secret: String,
    /// Unix time after which the challenge expires.
    pub expires_at: UnixSeconds,
}

/// `POST /v1/tpm/activate`: the secret recovered by `TPM2_ActivateCredential`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmActivateRequest {
    /// The enrolled agent key making the request.
    pub key_id: String,
    /// base64url of the recovered secret.
    pub secret: String,
    /// base64url Ed25519 signature by the agent key over
    /// `tpm_enroll_signing_input(key_id, [secret])`.
    pub signature: String,
}

/// `POST /v1/tpm/activate` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmActivateResponse {
    /// The AK's name, hex: the key every quote from this node must come from.
    pub ak_name: String,
}

/// `POST /v1/tpm/join`: a node joining through its TPM alone, without a join token (the
/// zero-touch `tpm` node attestation method). The EK certificate is required: it is what ties
/// the TPM to a manufacturer the verifier trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmJoinRequest {
    /// The agent's new Ed25519 public key (base64url raw 32 bytes), enrolled for the node once
    /// the credential is activated.
    pub public_key: String,
    /// The agent's host name.
    pub hostname: String,
    /// base64url `TPM2B_PUBLIC` of the EK.
    pub ek_public: String,
    /// base64url DER EK certificate, as the manufacturer provisioned it in the TPM's NV.
    pub ek_cert: String,
    /// base64url `TPM2B_PUBLIC` of the AK.
    pub ak_public: String,
    /// base64url Ed25519 signature by `public_key` over
    /// `tpm_join_signing_input("join", public_key, [hostname, ek_public, ek_cert, ak_public])`.
    pub signature: String,
}

/// The bytes an agent signs in a TPM join: `step` (`join` or `activate`) and `parts`, bound to
/// the key it enrolls.
pub fn tpm_join_signing_input(step: &str, public_key: &str, parts: &[&str]) -> Vec<u8> {
    let mut v = b"vouch-tpm-join-v1\0".to_vec();
    v.extend_from_slice(step.as_bytes());
    v.push(0);
    v.extend_from_slice(public_key.as_bytes());
    for p in parts {
        v.push(0);
        v.extend_from_slice(p.as_bytes());
    }
    v
}

/// `POST /v1/tpm/join` response: a credential only the TPM holding the EK can activate, and
/// only for the AK named. Nothing is recorded until it is activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmJoinResponse {
    /// The open challenge, to name in the activation.
    pub challenge_id: String,
    /// The node id the join will give (derived from the EK).
    pub node_id: String,
    /// base64url `TPM2B_ID_OBJECT`.
    pub credential_blob: String,
    /// base64url `TPM2B_ENCRYPTED_SECRET`.
    pub encrypted_secret: String,
    /// Unix time after which the challenge expires.
    pub expires_at: UnixSeconds,
}

/// `POST /v1/tpm/join/activate`: the secret `TPM2_ActivateCredential` recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmJoinActivateRequest {
    /// The challenge of the join.
    pub challenge_id: String,
    /// base64url of the recovered secret.
    pub secret: String,
    /// base64url Ed25519 signature by the joining key over
    /// `tpm_join_signing_input("activate", public_key, [challenge_id, secret])`.
    pub signature: String,
}

/// `POST /v1/tpm/join/activate` response: the node joined and the agent key is enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmJoinActivateResponse {
    /// The node (derived from the EK: the same machine is the same node every time).
    pub node_id: String,
    /// The enrolled agent key's id.
    pub key_id: String,
    /// The AK's name, hex: the key every quote from this node must come from.
    pub ak_name: String,
}

/// `POST /v1/svid`: X.509-SVIDs for a workload of this node, for the key in `public_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvidRequest {
    /// The enrolled agent key making the request.
    pub key_id: String,
    /// The workload (its name on the node) the SVIDs are for; it must be attested affirming.
    pub workload: String,
    /// base64url SubjectPublicKeyInfo (DER) of the key the SVIDs certify.
    pub public_key: String,
    /// Workload selectors the agent observed (`unix:uid:1000`, `unix:sha256:<hex>`, …; only the
    /// `unix` type is accepted from an agent).
    pub selectors: Vec<String>,
    /// base64url Ed25519 signature by the agent key over [`svid_signing_input`].
    pub signature: String,
}

/// The bytes an agent signs for an SVID request.
pub fn svid_signing_input(
    key_id: &str,
    workload: &str,
    public_key: &str,
    selectors: &[String],
) -> Vec<u8> {
    let mut v = b"vouch-svid-v1\0".to_vec();
    for p in [key_id, workload, public_key] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    for s in selectors {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

/// `POST /v1/jwt-svid`: a JWT-SVID for a workload of this node, for an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidRequest {
    /// The enrolled agent key making the request.
    pub key_id: String,
    /// The workload (its name on the node); it must be attested affirming.
    pub workload: String,
    /// Audiences (at least one).
    pub audience: Vec<String>,
    /// Workload selectors the agent observed (`unix:` only).
    pub selectors: Vec<String>,
    /// When the agent made the request (Unix seconds): the verifier refuses one further than
    /// its `clock_skew` from its own clock, in either direction.
    pub iat: UnixSeconds,
    /// A fresh random id (16 to 64 characters of `A-Z a-z 0-9 - _`): the verifier issues at
    /// most once per `(key_id, jti)`, so a captured request cannot mint a second JWT-SVID.
    pub jti: String,
    /// base64url Ed25519 signature by the agent key over [`jwt_svid_signing_input`].
    pub signature: String,
}

/// The bytes an agent signs for a JWT-SVID request: everything the request asks for, and its
/// freshness (`iat`, `jti`). A label of its own, so no X.509-SVID request signature (nor one
/// made before `iat`/`jti` existed) verifies as a JWT-SVID request.
pub fn jwt_svid_signing_input(
    key_id: &str,
    workload: &str,
    audience: &[String],
    selectors: &[String],
    iat: UnixSeconds,
    jti: &str,
) -> Vec<u8> {
    let mut v = b"vouch-jwt-svid-v2\0".to_vec();
    for p in [key_id, workload, jti, &iat.to_string()] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(audience.len().to_string().as_bytes());
    v.push(0);
    for a in audience {
        v.extend_from_slice(a.as_bytes());
        v.push(0);
    }
    for s in selectors {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

/// One issued JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedJwtSvid {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// The token.
    pub token: String,
    /// Expiry.
    pub expires_at: UnixSeconds,
}

/// One issued X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedSvid {
    /// The SPIFFE ID.
    pub spiffe_id: String,
    /// base64url DER of the SVID (leaf).
    pub x509_svid: String,
    /// Expiry.
    pub expires_at: UnixSeconds,
}

/// `POST /v1/svid` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvidResponse {
    /// One SVID per matching registration entry.
    pub svids: Vec<IssuedSvid>,
    /// base64url DER of the trust domain's X.509 authorities.
    pub bundle: Vec<String>,
    /// Federated trust domains' X.509 authorities: trust domain SPIFFE ID → base64url DER.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub federated_bundles: std::collections::BTreeMap<String, Vec<String>>,
}

/// A registration entry as it travels to agents (`POST /v1/entries/sync`): the same JSON as
/// the management API's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Entry id.
    pub id: String,
    /// The SPIFFE ID granted.
    pub spiffe_id: String,
    /// Selectors (`type:value`), all required.
    pub selectors: Vec<String>,
    /// SVID lifetime, seconds.
    pub ttl: u64,
    /// Creation time.
    pub created_at: UnixSeconds,
}

/// `POST /v1/entries/watch` and `POST /v1/entries/sync`: an agent asking about registration
/// entries after `since`, signed by its enrolled key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesRequest {
    /// The enrolled agent key making the request.
    pub key_id: String,
    /// The entries revision the agent holds (0: none).
    pub since: u64,
    /// When the request was signed (Unix seconds); accepted within the verifier's clock skew.
    pub iat: UnixSeconds,
    /// base64url Ed25519 signature by the agent key over [`entries_signing_input`].
    pub signature: String,
}

/// The bytes an agent signs for an entries request; `op` is `watch` or `sync`, so a signed
/// watch cannot be replayed as a sync or the reverse.
pub fn entries_signing_input(op: &str, key_id: &str, since: u64, iat: UnixSeconds) -> Vec<u8> {
    let mut v = b"vouch-entries-v1\0".to_vec();
    for p in [op, key_id, &since.to_string(), &iat.to_string()] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// `POST /v1/entries/watch` response: sent as soon as the entries revision moves past the
/// request's `since`, or when the verifier's watch timeout passes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesWatchResponse {
    /// The verifier's entries revision now.
    pub revision: u64,
    /// Whether it moved past `since` (`false`: the watch timed out; watch again).
    pub changed: bool,
}

/// `POST /v1/entries/sync` response: the entries that concern the agent's node (those with no
/// `vouch:node:` selector, or with its own), as changes after `since` or in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesSyncResponse {
    /// The entries revision the agent holds after applying this.
    pub revision: u64,
    /// `true`: `entries` is every entry (drop what you hold); `false`: apply the changes.
    pub full: bool,
    /// Entries added (or, in full, all of them).
    pub entries: Vec<EntryRecord>,
    /// Ids of entries deleted after `since` (tombstones; empty in full).
    pub deleted: Vec<String>,
}

/// `POST /v1/node/attest`: a node joining without a join token, on what its platform signed
/// about it (a zero-touch node attestation method: `k8s_psat`, `aws_iid`, `gcp_iit`,
/// `azure_imds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAttestRequest {
    /// The method.
    pub method: String,
    /// The method's document, base64url (no padding), exactly as the platform produced it.
    pub data: String,
    /// The agent's new Ed25519 public key (base64url raw 32 bytes), enrolled for the node.
    pub public_key: String,
    /// The agent's host name (recorded when the document names none).
    pub hostname: String,
    /// A fresh nonce from `GET /v1/challenge`, used up by this request.
    pub nonce: String,
    /// base64url Ed25519 signature by `public_key` over [`node_attest_signing_input`].
    pub signature: String,
}

/// The bytes an agent signs for a node attestation: proof that it holds the key it enrolls,
/// bound to this method, document, host name and nonce.
pub fn node_attest_signing_input(
    method: &str,
    data: &str,
    public_key: &str,
    hostname: &str,
    nonce: &str,
) -> Vec<u8> {
    let mut out = b"vouch-node-attest-v1".to_vec();
    for part in [method, data, public_key, hostname, nonce] {
        out.push(0);
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The nonce an agent passes to a node attestation method's document service for the
/// verifier's nonce `nonce`, where the service takes one. Azure IMDS (`azure_imds`) takes ten
/// decimal digits: the first eight bytes of SHA-256(`"vouch azure_imds nonce " || nonce`) as a
/// big-endian integer modulo 10¹⁰, zero-padded. Other methods carry the nonce as it is.
pub fn node_attest_nonce(method: &str, nonce: &str) -> String {
    use sha2::Digest as _;
    if method != "azure_imds" {
        return nonce.to_string();
    }
    let h = sha2::Sha256::digest(format!("vouch azure_imds nonce {nonce}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    format!("{:010}", u64::from_be_bytes(b) % 10_000_000_000)
}

/// The audience an agent asks a node attestation method's token for: for GCP instance
/// identity tokens (`gcp_iit`), `<audience>#<nonce>`, which binds the verifier's nonce into the
/// signed token; otherwise the verifier's audience.
pub fn node_attest_audience(method: &str, audience: &str, nonce: &str) -> String {
    if method == "gcp_iit" {
        format!("{audience}#{nonce}")
    } else {
        audience.to_string()
    }
}

/// `PUT /v1/secrets/{name}` (admin): store a secret and the Rego policy that says which
/// attested workloads may have it. A new version replaces the old one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPutRequest {
    /// base64url of the secret's bytes (at most 64 KiB).
    pub value: String,
    /// Rego in `package vouch.secret`: the secret is released when `allow` is true for the
    /// input `{secret, node_id, workload, selectors, claims}`.
    pub policy: String,
}

impl std::fmt::Debug for SecretPutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretPutRequest")
            .field("value", &"<redacted>")
            .field("policy", &self.policy)
            .finish()
    }
}

/// A stored secret as the admin API lists it: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSummary {
    /// The secret's name.
    pub name: String,
    /// Its version, from 1; each `put` adds one.
    pub version: u32,
    /// Size of the secret in bytes.
    pub size: u64,
    /// SHA-256 (hex) of its release policy's text.
    pub policy_sha256: String,
    /// When this version was stored.
    pub updated_at: UnixSeconds,
}

/// `POST /v1/secrets/release`: an agent asking for a secret for one of its workloads, with
/// fresh evidence about it whose measurements bind the HPKE key to seal the secret to
/// (`SoftwareMeasurements::release_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretReleaseRequest {
    /// The enrolled agent key making the request (the one that signed `evidence`).
    pub key_id: String,
    /// The secret.
    pub name: String,
    /// Evidence for a fresh nonce about the workload the secret is for, appraised and recorded
    /// like any attestation.
    pub evidence: Evidence,
    /// The calling workload's selectors as the agent observed them (`unix:`, `container:`,
    /// `k8s:` only, as for SVIDs).
    pub selectors: Vec<String>,
    /// base64url Ed25519 signature by the agent key over [`secret_release_signing_input`].
    pub signature: String,
}

/// The bytes an agent signs for a secret release: the secret's name, the caller's selectors,
/// and the evidence (by the SHA-256 of its payload, which holds the nonce and the release key).
pub fn secret_release_signing_input(
    key_id: &str,
    name: &str,
    evidence_payload: &str,
    selectors: &[String],
) -> Vec<u8> {
    use sha2::Digest as _;
    let mut v = b"vouch-secret-release-v1\0".to_vec();
    let digest = hex::encode(sha2::Sha256::digest(evidence_payload.as_bytes()));
    for p in [key_id, name, &digest] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(selectors.len().to_string().as_bytes());
    v.push(0);
    for s in selectors {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

/// The HPKE `info` of a released secret: what it was released for. The agent opens with the
/// values of its own request, so an answer sealed for another secret, version, node or nonce
/// does not open.
pub fn secret_release_info(name: &str, version: u32, node_id: &str, nonce: &str) -> Vec<u8> {
    let mut v = b"vouch-secret-release-v1\0".to_vec();
    for p in [name, &version.to_string(), node_id, nonce] {
        v.extend_from_slice(p.as_bytes());
        v.push(0);
    }
    v
}

/// `POST /v1/secrets/release` response: the secret sealed with HPKE (RFC 9180: base mode,
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the key the evidence bound,
/// `info` = [`secret_release_info`], empty `aad`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretReleaseResponse {
    /// The secret.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The node it was released to.
    pub node_id: String,
    /// base64url HPKE encapsulated key.
    pub enc: String,
    /// base64url ciphertext (with the AEAD tag).
    pub ciphertext: String,
    /// The attestation the release rests on (its record and result).
    pub attestation_id: String,
    /// For `tpm` evidence with an IMA log: how many IMA entries the verifier has now replayed
    /// (the release's evidence moved it, as a round's does); the agent's next slice starts there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_position: Option<u64>,
}
