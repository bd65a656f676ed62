//! Workload identities: X.509-SVIDs and JWT-SVIDs only for workloads attested affirming, for
//! the SPIFFE IDs their registration entries grant.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use vouch_core::ErrorKind;
use vouch_core::wire::{
    IssuedJwtSvid, IssuedSvid, JwtSvidRequest, SvidRequest, SvidResponse, jwt_svid_signing_input,
    svid_signing_input,
};
use vouch_evidence::verify_ed25519;
use vouch_identity::{Entry, Selector, SpiffeId};

use crate::ApiError;
use crate::state::{State, unix_now};

/// The selector types an attested node's agent reports about its callers: the process
/// (`unix`), its container (`container`, from the runtime's own state) and its Kubernetes pod
/// (`k8s`, from the kubelet). Every other type (`vouch`, `os`, `tpm`, the node attestors')
/// is the verifier's own word and never taken from an agent.
pub(crate) const AGENT_SELECTOR_KINDS: [&str; 3] = ["unix", "container", "k8s"];

/// JWT-SVIDs are bearer tokens: keep them short-lived whatever the entry says.
const MAX_JWT_TTL: u64 = 300;

/// The [`vouch_store::IssuedSvidRecord`] of an X.509-SVID just issued (`der`) to `workload`
/// (`<node>/<name>`) of `node_id`: its DER's SHA-256 and its serial as a revocation target.
/// Used by `POST /v1/svid` and by `vouch bench --svid`, which times it with the store write.
pub fn issued_svid_record(
    der: &[u8],
    node_id: &str,
    workload: &str,
    spiffe_id: &str,
    not_after: u64,
    now: u64,
) -> Result<vouch_store::IssuedSvidRecord, String> {
    use x509_parser::prelude::FromDer as _;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("the SVID just issued does not parse: {e}"))?;
    Ok(vouch_store::IssuedSvidRecord {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der)),
        serial: vouch_core::revocation::serial_target(cert.raw_serial()),
        node_id: node_id.to_string(),
        workload: workload.to_string(),
        spiffe_id: spiffe_id.to_string(),
        not_after,
        created_at: now,
    })
}

impl State {
    /// Run `f` on the CA set, after picking up a change another process made on disk
    /// (`vouch ca`, another replica) and rotating when the schedule says so.
    pub(crate) fn with_ca<T>(
        &self,
        f: impl FnOnce(&vouch_identity::CaSet) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let lock = self
            .svid_ca
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no SPIFFE CA configured"))?;
        fn poisoned<E>(_: E) -> ApiError {
            ApiError::new(ErrorKind::Internal, "CA lock poisoned")
        }
        let internal = |e: vouch_identity::IdentityError| {
            ApiError::new(ErrorKind::Internal, format!("SPIFFE CA: {e}"))
        };
        let now = unix_now();
        let stale = {
            let set = lock.read().map_err(poisoned)?;
            set.changed_on_disk() || {
                let (from, until) = set.active().validity();
                let life = until.saturating_sub(from).max(1);
                let elapsed = now.saturating_sub(from);
                (set.next().is_none() && elapsed * 2 >= life)
                    || (set.next().is_some() && elapsed * 6 >= life * 5)
            }
        };
        if stale {
            let mut set = lock.write().map_err(poisoned)?;
            if set.changed_on_disk() {
                let td = set.active().trust_domain().clone();
                *set = crate::state::open_ca_set(&self.cfg, &td, now).map_err(internal)?;
                tracing::info!(sequence = set.sequence(), "SPIFFE CA set reloaded");
            }
            if set
                .rotate_if_due(self.cfg.svid_ca_ttl, self.cfg.svid_ttl, now)
                .map_err(internal)?
            {
                tracing::info!(sequence = set.sequence(), "SPIFFE CA rotated on schedule");
            }
        }
        let set = lock.read().map_err(poisoned)?;
        f(&set)
    }

    /// The enrolled key `key_id`, after checking that it signed `msg`.
    async fn signed_by(
        &self,
        key_id: &str,
        msg: &[u8],
        signature: &str,
    ) -> Result<vouch_store::AgentKeyRecord, ApiError> {
        let key = self.store.agent_key(key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!("key {:?} is not enrolled", vouch_core::clip(key_id, 64)),
            )
        })?;
        if !verify_ed25519(&key.public_key, msg, signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "SVID request is not signed by the agent key it names",
            ));
        }
        Ok(key)
    }

    /// The entries that grant identities to `workload` of the node of `key` (whose signature
    /// over the request the caller checked; `bound` is the public key, or the audiences), after
    /// checking that the verifier currently holds the workload affirming.
    async fn granted(
        &self,
        key: vouch_store::AgentKeyRecord,
        workload: &str,
        bound: &str,
        selectors: &[String],
    ) -> Result<Vec<Entry>, ApiError> {
        if selectors.len() > 64 || bound.len() > 2048 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "request too large",
            ));
        }
        let mut available = Vec::new();
        for s in selectors {
            let sel = Selector::parse(s)
                .map_err(|e| ApiError::new(ErrorKind::MalformedRequest, e.to_string()))?;
            if !AGENT_SELECTOR_KINDS.contains(&sel.kind.as_str()) {
                return Err(ApiError::new(
                    ErrorKind::MalformedRequest,
                    format!(
                        "an agent may report {} selectors only, not {sel}",
                        AGENT_SELECTOR_KINDS.join(", ")
                    ),
                ));
            }
            available.push(sel);
        }
        // The verifier's own word about the node and workload.
        let workload_id = format!("{}/{}", key.node_id, workload);
        let w = self.store.workload(&workload_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotAttested,
                format!("workload {workload_id} has never been attested"),
            )
        })?;
        let now = unix_now();
        if w.status != "affirming" || w.deadline.is_some_and(|d| d < now) {
            return Err(ApiError::new(
                ErrorKind::NotAttested,
                format!(
                    "workload {workload_id} is {} ({}); it gets no identity",
                    w.status, w.reason
                ),
            ));
        }
        for s in self.node_selectors(&key.node_id, workload, &w).await? {
            // A claim that does not make a valid selector (odd characters) grants nothing.
            if let Ok(sel) = Selector::parse(&s) {
                available.push(sel);
            }
        }
        let matched = self.matching_entries(&available).await?;
        if matched.is_empty() {
            return Err(ApiError::new(
                ErrorKind::NoIdentity,
                format!(
                    "no registration entry matches workload {workload_id} with selectors {selectors:?}"
                ),
            ));
        }
        Ok(matched)
    }

    /// Selectors only the verifier can vouch for, from what it verified about the node:
    /// `vouch:node:<id>`, `vouch:workload:<name>`, `vouch:status:affirming`,
    /// `vouch:evidence:<kind>`, `os:id:<id>`, `os:version_id:<v>`, `tpm:secure_boot:<bool>`
    /// and the TEE's selectors (from the latest appraised evidence: [`claim_selectors`]), and
    /// `tpm:ek_sha256:<hex>` (the EK public area of an activated TPM), and for a node that
    /// joined by node attestation `vouch:node_attestor:<method>` and the selectors its
    /// platform's document gave (`aws_iid:account:<id>`, `k8s_psat:cluster:<name>`, ...).
    pub(crate) async fn node_selectors(
        &self,
        node_id: &str,
        workload: &str,
        w: &vouch_store::WorkloadRecord,
    ) -> Result<Vec<String>, ApiError> {
        let mut out = vec![
            format!("vouch:node:{node_id}"),
            format!("vouch:workload:{workload}"),
            "vouch:status:affirming".to_string(),
        ];
        if let Some(id) = &w.last_attestation_id
            && let Some(a) = self.store.attestation(id).await?
        {
            out.extend(claim_selectors(&a.evidence_kind, &a.claims));
        }
        // What the node's platform signed about it, when it joined by node attestation
        // (`aws_iid:account:…`, `k8s_psat:cluster:…`).
        if let Some(n) = self.store.node_attestation(node_id).await? {
            out.push(format!("vouch:node_attestor:{}", n.method));
            out.extend(n.selectors);
        }
        if let Some(t) = self.store.tpm_key(node_id).await?
            && t.activated_at.is_some()
        {
            use sha2::Digest as _;
            out.push(format!(
                "tpm:ek_sha256:{}",
                hex::encode(sha2::Sha256::digest(&t.ek_public))
            ));
        }
        Ok(out)
    }

    /// `POST /v1/svid`
    pub(crate) async fn issue_svids(&self, req: SvidRequest) -> Result<SvidResponse, ApiError> {
        let msg = svid_signing_input(&req.key_id, &req.workload, &req.public_key, &req.selectors);
        let key = self.signed_by(&req.key_id, &msg, &req.signature).await?;
        let node_id = key.node_id.clone();
        let workload_id = format!("{node_id}/{}", req.workload);
        let matched = self
            .granted(key, &req.workload, &req.public_key, &req.selectors)
            .await?;
        let spki = URL_SAFE_NO_PAD.decode(&req.public_key).map_err(|_| {
            ApiError::new(ErrorKind::MalformedRequest, "public_key is not base64url")
        })?;
        let now = unix_now();
        let mut issued = Vec::new();
        let mut records = Vec::new();
        let (svids, bundle) = self.with_ca(|set| {
            let ca = set.active();
            let mut svids = Vec::new();
            for e in &matched {
                let id = SpiffeId::parse(&e.spiffe_id)
                    .map_err(|err| ApiError::new(ErrorKind::Internal, err.to_string()))?;
                let ttl = e.ttl.min(self.cfg.svid_ttl);
                let der = ca
                    .issue(&id, &spki, ttl, now)
                    .map_err(|err| ApiError::new(ErrorKind::MalformedRequest, err.to_string()))?;
                let expires_at = (now + ttl).min(ca.validity().1);
                let rec = issued_svid_record(
                    &der,
                    &node_id,
                    &workload_id,
                    &id.to_string(),
                    expires_at,
                    now,
                )
                .map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
                issued.push(serde_json::json!({
                    "spiffe_id": id.to_string(),
                    "sha256": rec.sha256,
                }));
                records.push(rec);
                svids.push(IssuedSvid {
                    spiffe_id: id.to_string(),
                    x509_svid: URL_SAFE_NO_PAD.encode(der),
                    expires_at,
                });
            }
            let bundle = set
                .authorities(now)
                .into_iter()
                .map(|d| URL_SAFE_NO_PAD.encode(d))
                .collect();
            Ok((svids, bundle))
        })?;
        // Recorded before they are handed out (one INSERT for the batch, in the transaction
        // of the audit entry: no extra commit): `POST /v1/timestamp` countersigns only for an
        // SVID recorded for the workload whose result is presented.
        if !issued.is_empty() {
            let event = vouch_store::AuditEvent {
                time: unix_now(),
                kind: "svid.issue".into(),
                actor: req.key_id.clone(),
                subject: req.workload.clone(),
                body: serde_json::json!({ "svids": issued }),
            };
            self.store
                .record_issued_svids_audited(&records, &event)
                .await?;
        }
        tracing::info!(workload = %req.workload, count = svids.len(), "X.509-SVIDs issued");
        self.metrics.svids_issued("x509", svids.len());
        Ok(SvidResponse {
            svids,
            bundle,
            federated_bundles: self.federated_x509(),
        })
    }

    /// `POST /v1/jwt-svid`
    pub(crate) async fn issue_jwt_svids(
        &self,
        req: JwtSvidRequest,
    ) -> Result<Vec<IssuedJwtSvid>, ApiError> {
        if req.audience.is_empty()
            || req
                .audience
                .iter()
                .any(|a| a.is_empty() || a.len() > 256 || a.contains(',') || a.contains('\0'))
        {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "a JWT-SVID needs one or more non-empty audiences without commas",
            ));
        }
        let msg = jwt_svid_signing_input(
            &req.key_id,
            &req.workload,
            &req.audience,
            &req.selectors,
            req.iat,
            &req.jti,
        );
        let key = self.signed_by(&req.key_id, &msg, &req.signature).await?;
        // Freshness (issue 12): a JWT-SVID is a bearer token, so a captured request must not
        // mint another. The request is dated within clock_skew, and its jti is used up in the
        // store every replica shares, kept until the date could no longer pass.
        let now = unix_now();
        let skew = self.cfg.clock_skew;
        // Saturating: `iat` is the client's number (signed by its own key, but any u64).
        if req.iat.saturating_add(skew) < now {
            return Err(ApiError::new(
                ErrorKind::NonceExpired,
                format!(
                    "the JWT-SVID request was made at {}, {} s ago (tolerance {skew} s); sign a new one",
                    req.iat,
                    now.saturating_sub(req.iat)
                ),
            ));
        }
        if req.iat > now.saturating_add(skew) {
            return Err(ApiError::new(
                ErrorKind::NonceFromFuture,
                format!(
                    "the JWT-SVID request is dated {} s ahead of this verifier's clock (tolerance {skew} s)",
                    req.iat.saturating_sub(now)
                ),
            ));
        }
        if !(16..=64).contains(&req.jti.len())
            || !req
                .jti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "jti must be 16 to 64 characters of A-Z a-z 0-9 - _",
            ));
        }
        let bound = format!("jwt:{}", req.audience.join(","));
        let matched = self
            .granted(key, &req.workload, &bound, &req.selectors)
            .await?;
        // Used up only once the request would be granted, so a refusal costs no write.
        match self
            .store
            .use_nonce(
                &format!("jwt-svid:{}:{}", req.key_id, req.jti),
                req.iat.saturating_add(skew).saturating_add(1),
            )
            .await
        {
            Err(vouch_store::StoreError::NonceReused) => {
                return Err(ApiError::new(
                    ErrorKind::NonceReused,
                    "this JWT-SVID request was already used; sign a new one (fresh jti and iat) for every request",
                ));
            }
            r => r?,
        }
        let signer = self
            .jwt_signer
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no JWT-SVID key"))?;
        let mut out = Vec::new();
        for e in &matched {
            let id = SpiffeId::parse(&e.spiffe_id)
                .map_err(|err| ApiError::new(ErrorKind::Internal, err.to_string()))?;
            let ttl = e.ttl.min(self.cfg.svid_ttl).min(MAX_JWT_TTL);
            let token = signer
                .sign(&id, &req.audience, ttl, now)
                .map_err(|err| ApiError::new(ErrorKind::Internal, err.to_string()))?;
            out.push(IssuedJwtSvid {
                spiffe_id: id.to_string(),
                token,
                expires_at: now + ttl,
            });
        }
        if !out.is_empty() {
            let svids: Vec<serde_json::Value> = out
                .iter()
                .map(|o| {
                    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(o.token.as_bytes());
                    serde_json::json!({ "spiffe_id": o.spiffe_id, "sha256": hex::encode(sha256) })
                })
                .collect();
            let body =
                serde_json::json!({ "audience": req.audience, "jti": req.jti, "svids": svids });
            self.audit("jwt-svid.issue", &req.key_id, &req.workload, body)
                .await;
        }
        self.metrics.svids_issued("jwt", out.len());
        Ok(out)
    }

    /// Federated trust domains' X.509 authorities, base64url DER by trust domain SPIFFE ID.
    fn federated_x509(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.federated
            .read()
            .map(|m| {
                m.iter()
                    .map(|(td, b)| {
                        (
                            td.clone(),
                            b.x509.iter().map(|d| URL_SAFE_NO_PAD.encode(d)).collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `GET /v1/federation`: every federated trust domain's bundle as last fetched.
    pub(crate) fn federation(&self) -> serde_json::Value {
        let m = self.federated.read().map(|m| m.clone()).unwrap_or_default();
        serde_json::Value::Object(
            m.into_iter()
                .map(|(td, b)| {
                    (
                        td,
                        serde_json::json!({
                            "x509": b.x509.iter().map(|d| URL_SAFE_NO_PAD.encode(d)).collect::<Vec<_>>(),
                            "jwks": b.jwks,
                            "spiffe_sequence": b.sequence,
                            "fetched_at": b.fetched_at,
                        }),
                    )
                })
                .collect(),
        )
    }

    /// The SPIFFE bundle of the trust domain: X.509 authorities and JWT-SVID keys.
    pub(crate) fn spiffe_bundle(&self) -> Result<serde_json::Value, ApiError> {
        let jwt: Vec<serde_json::Value> = self.jwt_signer.iter().map(|s| s.jwk()).collect();
        self.with_ca(|set| {
            Ok(vouch_identity::bundle_jwks(
                &set.authorities(unix_now()),
                &jwt,
                set.sequence(),
                300,
            ))
        })
    }
}

/// Selectors from an appraised attestation's claims: `vouch:evidence:<kind>`, `os:id:<id>`,
/// `os:version_id:<v>`, `tpm:secure_boot:<bool>` (from a replayed event log), and for TEE
/// evidence (`tee` or `composite`) `tee:kind:<kind>`, `tee:measurement:<hex>` (SEV-SNP
/// MEASUREMENT, TDX MRTD, SGX MRENCLAVE, Nitro PCR 0), `tee:signer:<hex>` (when the TEE names
/// one), `tee:debug:<bool>` and `tee:migratable:<bool>`: a registration entry can then grant an
/// identity only to confidential VMs or enclaves with a given launch measurement.
pub(crate) fn claim_selectors(evidence_kind: &str, claims: &serde_json::Value) -> Vec<String> {
    let mut out = vec![format!("vouch:evidence:{evidence_kind}")];
    for field in ["id", "version_id"] {
        if let Some(v) = claims["os"][field].as_str() {
            out.push(format!("os:{field}:{v}"));
        }
    }
    if let Some(sb) = claims["tpm"]["eventlog"]["secure_boot"].as_bool() {
        out.push(format!("tpm:secure_boot:{sb}"));
    }
    let tee = &claims["tee"];
    if let Some(kind) = tee["kind"].as_str() {
        out.push(format!("tee:kind:{kind}"));
        for field in ["measurement", "signer"] {
            if let Some(v) = tee[field].as_str().filter(|v| !v.is_empty()) {
                out.push(format!("tee:{field}:{v}"));
            }
        }
        for field in ["debug", "migratable"] {
            if let Some(v) = tee[field].as_bool() {
                out.push(format!("tee:{field}:{v}"));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use vouch_testkit::read_testdata;

    /// The selectors of a composite attestation whose TEE part is the real SEV-SNP report
    /// (verified against the ARK at a time inside its window): each is a valid selector, and
    /// an entry for that launch measurement matches them while one for another does not.
    #[test]
    fn tee_claims_become_selectors_an_entry_can_require() {
        let pem = String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap();
        let certs = vouch_x509::pem_certificates(&pem);
        let roots = vouch_tee::TeeRoots::from_certs(&certs[1..2]).unwrap();
        let tee = roots
            .verify(
                vouch_tee::TeeKind::SevSnp,
                &read_testdata("snp/report_v2.bin"),
                &[read_testdata("snp/vcek.der"), certs[0].clone()],
                1_717_200_000,
            )
            .unwrap()
            .claims;
        let m = tee["measurement"].as_str().unwrap().to_string();
        let claims = serde_json::json!({
            "os": {"id": "debian", "version_id": "12"},
            "tpm": {"eventlog": {"secure_boot": true}},
            "tee": tee,
        });
        let sels = claim_selectors("composite", &claims);
        for want in [
            "vouch:evidence:composite".to_string(),
            "os:id:debian".into(),
            "tpm:secure_boot:true".into(),
            "tee:kind:sev-snp".into(),
            format!("tee:measurement:{m}"),
            "tee:debug:false".into(),
            "tee:migratable:false".into(),
        ] {
            assert!(sels.contains(&want), "{want} not in {sels:?}");
        }
        let available: Vec<Selector> = sels.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let entry = |measurement: &str| Entry {
            id: "e".into(),
            spiffe_id: "spiffe://td/cvm".into(),
            selectors: vec![
                Selector::parse("tee:kind:sev-snp").unwrap(),
                Selector::parse(&format!("tee:measurement:{measurement}")).unwrap(),
            ],
            ttl: 600,
            created_at: 0,
        };
        assert_eq!(vouch_identity::matching(&[entry(&m)], &available).len(), 1);
        let other = "00".repeat(48);
        assert!(vouch_identity::matching(&[entry(&other)], &available).is_empty());
        // Software evidence has no TEE selectors.
        let sw = claim_selectors("software", &serde_json::json!({"os": {"id": "debian"}}));
        assert!(sw.iter().all(|s| !s.starts_with("tee:")), "{sw:?}");
    }
}
