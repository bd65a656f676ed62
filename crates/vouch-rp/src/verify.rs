use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::{BTreeMap, HashMap};
use vouch_core::{ArStatus, EAR_PROFILE, Ear, TrustClaim, TrustTier, tier_of};

use crate::RpError;

/// Longest token accepted, bytes.
const MAX_TOKEN: usize = 64 * 1024;

/// Which audience a relying party demands of a result's `aud`.
///
/// A result names the relying party it was requested for (the agent's `result_audience`).
/// Without this check, a result a workload obtained for one service is accepted by every
/// other service that trusts the same verifier; so, as `jsonwebtoken` validates `aud` by
/// default, there is no silent default here: [`Requirements::default`] leaves the audience
/// [`Audience::Unset`] and every verification is refused ([`RpError::NoAudience`]) until it
/// is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// No audience was chosen: every result is refused with [`RpError::NoAudience`].
    #[default]
    Unset,
    /// The result's `aud` must be this name (this relying party's). A result without `aud`,
    /// or for another audience, is refused with [`RpError::Audience`].
    Required(String),
    /// `aud` is not checked. For tools that inspect a result and for results whose issuer
    /// names no audience (other EAR implementations' samples); never where the result grants
    /// access.
    Unchecked,
}

/// What a relying party demands of a result. Start from [`Requirements::for_audience`]: the
/// default names no audience and refuses every result until one is set (see [`Audience`]).
#[derive(Debug, Clone)]
pub struct Requirements {
    /// The `aud` a result must carry.
    pub audience: Audience,
    /// Expected nonce (background-check model, or a freshness nonce of the RP's own): the
    /// result's `eat_nonce` must be it, or its digest [`vouch_core::eat_nonce`] (what Vouch
    /// verifiers put there, as EAT bounds nonces to 64 bytes).
    pub nonce: Option<String>,
    /// Accept `warning` as well as `affirming`.
    pub accept_warning: bool,
    /// For each listed claim, the worst tier accepted (e.g. `hardware` → `Affirming`).
    pub tiers: BTreeMap<TrustClaim, TrustTier>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
    /// Require an `exp` claim (results from Vouch always carry one).
    pub require_exp: bool,
    /// Accept any status, contraindicated included, after every other check. For inspection
    /// tools only; never set it where the result grants access.
    pub accept_any_status: bool,
    /// Submodules the result must have (each is also held to the status and tier checks):
    /// e.g. `tpm` and `sev-snp` for a confidential VM attested together with its vTPM.
    pub submods: Vec<String>,
    /// Evidence kinds accepted (`vouch.evidence-kind` of the `workload` submodule: `tpm`,
    /// `tee`, `composite`, …); empty accepts any, including results without the claim.
    pub evidence_kinds: Vec<String>,
    /// The tenant a result must name (`vouch.tenant`: the verifier tenant whose policy and key
    /// made it); unset accepts any.
    pub tenant: Option<String>,
    /// Which signatures a result must carry and pass: the classical one (the default), the
    /// ML-DSA-65 one, or both ([`SignatureMode`]).
    pub signatures: SignatureMode,
}

/// Which of a result's signatures a relying party requires.
///
/// A verifier with `pq_signatures` issues each result twice: `result`, a compact JWT with the
/// classical signature (EdDSA/ES256, or the quorum's FROST Ed25519), and `result_pq`, the same
/// claims as JWS JSON with that signature and an ML-DSA-65 (FIPS 204) one
/// ([`vouch_core::jws`]). [`ResultVerifier::verify`] takes either form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureMode {
    /// The classical signature must verify; an ML-DSA-65 signature, if present, is not
    /// checked. Compact JWTs and JWS JSON are accepted.
    #[default]
    Classical,
    /// The ML-DSA-65 signature must verify against an `AKP` key of the JWKS; the classical
    /// one is not checked (for a world where it can be forged). A result without it (a
    /// compact JWT, or JWS JSON with the ML-DSA signature stripped) is refused
    /// ([`RpError::PostQuantumMissing`]).
    PostQuantum,
    /// Both must verify: a forgery then needs to break both Ed25519/ECDSA and ML-DSA. A
    /// classical-only result is refused ([`RpError::PostQuantumMissing`]).
    Both,
}

impl Requirements {
    /// The defaults, for results requested for `audience` (this relying party's name, which
    /// its workloads' agents request with `result_audience`): affirming only, `exp` required.
    pub fn for_audience(audience: impl Into<String>) -> Self {
        Self {
            audience: Audience::Required(audience.into()),
            ..Self::default()
        }
    }
}

impl Default for Requirements {
    /// Everything but the audience, which is [`Audience::Unset`]: verification refuses every
    /// result until it is set. Prefer [`Requirements::for_audience`].
    fn default() -> Self {
        Self {
            audience: Audience::Unset,
            nonce: None,
            accept_warning: false,
            tiers: BTreeMap::new(),
            leeway: 5,
            require_exp: true,
            accept_any_status: false,
            submods: Vec::new(),
            evidence_kinds: Vec::new(),
            tenant: None,
            signatures: SignatureMode::Classical,
        }
    }
}

/// A result that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedResult {
    /// The overall status.
    pub status: ArStatus,
    /// `sub`: the attested workload.
    pub subject: Option<String>,
    /// The `kid` that signed it.
    pub kid: Option<String>,
    /// For results carrying `x5c`: the signing replica's SPIFFE ID.
    pub signer: Option<String>,
    /// For results carrying `x5c`: the serial of the replica certificate (a revocation target).
    pub signer_serial: Option<String>,
    /// All claims.
    pub ear: Ear,
}

/// Verifies results against a fixed key set, or against the trust bundle for results whose
/// signer's certificate (`x5c`) a replica of the trust domain carries.
#[derive(Clone)]
pub struct ResultVerifier {
    keys: HashMap<Option<String>, (DecodingKey, Algorithm)>,
    /// ML-DSA-65 public keys (raw FIPS 204 encoding) by `kid`, from `AKP` JWKs.
    pq_keys: HashMap<String, Vec<u8>>,
    bundle: Option<std::sync::Arc<crate::SpiffeVerifier>>,
    revocations: Option<std::sync::Arc<std::sync::RwLock<crate::RevocationSet>>>,
}

impl std::fmt::Debug for ResultVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("pq_kids", &self.pq_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

const ACCEPTED: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::ES384];

impl ResultVerifier {
    /// Build from a JWKS document (`{"keys": [...]}`).
    ///
    /// `AKP` keys with `alg` `ML-DSA-65` (RFC 9964) are the verifier's post-quantum keys
    /// ([`SignatureMode`]); other keys of types this SDK does not read are skipped, as
    /// RFC 7517 §5 asks.
    pub fn from_jwks_json(json: &str) -> Result<Self, RpError> {
        let raw: serde_json::Value =
            serde_json::from_str(json).map_err(|e| RpError::Keys(format!("not a JWKS: {e}")))?;
        let entries = raw
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| RpError::Keys("not a JWKS: no \"keys\" array".into()))?;
        let mut pq_keys = HashMap::new();
        let mut classical = Vec::new();
        for entry in entries {
            match entry.get("kty").and_then(|k| k.as_str()) {
                Some(vouch_core::jws::AKP) => {
                    if let Some((kid, pk)) = crate::pq::akp_key(entry)? {
                        pq_keys.insert(kid, pk);
                    }
                }
                Some("OKP" | "EC" | "RSA" | "oct") => classical.push(entry.clone()),
                _ => {}
            }
        }
        let set: JwkSet = serde_json::from_value(serde_json::json!({ "keys": classical }))
            .map_err(|e| RpError::Keys(format!("not a JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKeyPair(_), _) => Algorithm::EdDSA,
                (AlgorithmParameters::EllipticCurve(p), _) => match p.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => Algorithm::ES256,
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                },
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| RpError::Keys(e.to_string()))?;
            keys.insert(jwk.common.key_id.clone(), (key, alg));
        }
        if keys.is_empty() && pq_keys.is_empty() {
            return Err(RpError::Keys(
                "no EdDSA, ECDSA or ML-DSA-65 key in the set".into(),
            ));
        }
        Ok(Self {
            keys,
            pq_keys,
            bundle: None,
            revocations: None,
        })
    }

    /// Build from one PEM public key (SPKI) of the given algorithm, for results signed by
    /// other EAR implementations that publish a bare key.
    pub fn from_public_key_pem(pem: &[u8], alg: Algorithm) -> Result<Self, RpError> {
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            other => return Err(RpError::Algorithm(format!("{other:?}"))),
        }
        .map_err(|e| RpError::Keys(e.to_string()))?;
        let mut keys = HashMap::new();
        keys.insert(None, (key, alg));
        Ok(Self {
            keys,
            pq_keys: HashMap::new(),
            bundle: None,
            revocations: None,
        })
    }

    /// Accept results signed by any verifier replica whose key the trust domain certified:
    /// the result's `x5c` must chain to `bundle` now and name `spiffe://<td>/vouch/verifier/…`.
    /// No JWKS is needed, and one replica's certificate can be revoked alone
    /// ([`crate::RevocationSet::check_result`]).
    pub fn from_trust_bundle(bundle: std::sync::Arc<crate::SpiffeVerifier>) -> Self {
        Self {
            keys: HashMap::new(),
            pq_keys: HashMap::new(),
            bundle: Some(bundle),
            revocations: None,
        }
    }

    /// Also refuse results revoked in `revocations` (kept current by gossip or a saved file),
    /// and every result while that set is not current: incomplete, or its newest head older
    /// than [`crate::RevocationSet::max_age`] ([`crate::RevocationSet::check_result`]).
    pub fn with_revocations(
        mut self,
        revocations: std::sync::Arc<std::sync::RwLock<crate::RevocationSet>>,
    ) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Also accept results certified by `bundle` (see [`ResultVerifier::from_trust_bundle`]).
    pub fn with_trust_bundle(mut self, bundle: std::sync::Arc<crate::SpiffeVerifier>) -> Self {
        self.bundle = Some(bundle);
        self
    }

    /// Verify `token` (a compact JWS) against `req`. Refused at once, whatever the token, when
    /// `req` names no audience ([`RpError::NoAudience`]).
    ///
    /// `token` is a compact JWS or the JWS JSON serialization of `result_pq`; which signatures
    /// must verify is `req.signatures` ([`SignatureMode`]).
    pub fn verify(&self, token: &str, req: &Requirements) -> Result<VerifiedResult, RpError> {
        if matches!(req.audience, Audience::Unset) {
            return Err(RpError::NoAudience);
        }
        let (compact, jws) = crate::pq::split(token)?;
        match req.signatures {
            SignatureMode::Classical => self.verify_compact(&compact, req, true),
            SignatureMode::Both => {
                self.verify_pq(jws.as_ref())?;
                self.verify_compact(&compact, req, true)
            }
            SignatureMode::PostQuantum => {
                self.verify_pq(jws.as_ref())?;
                self.verify_compact(&compact, req, false)
            }
        }
    }

    /// Check the ML-DSA-65 signature of `jws` (refused when there is none).
    fn verify_pq(&self, jws: Option<&vouch_core::jws::GeneralJws>) -> Result<(), RpError> {
        crate::pq::verify(&self.pq_keys, jws, None)
    }

    /// Verify the compact JWS `token`, its classical signature only when `classical` (when
    /// not, the caller has verified the ML-DSA-65 signature over the same payload).
    fn verify_compact(
        &self,
        token: &str,
        req: &Requirements,
        classical: bool,
    ) -> Result<VerifiedResult, RpError> {
        let audience = match &req.audience {
            Audience::Required(a) if !a.is_empty() => Some(a),
            Audience::Unchecked => None,
            Audience::Unset | Audience::Required(_) => return Err(RpError::NoAudience),
        };
        if token.len() > MAX_TOKEN {
            return Err(RpError::Malformed(format!(
                "token longer than {MAX_TOKEN} bytes"
            )));
        }
        let header_alg = peek_alg(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| RpError::Malformed(format!("header: {e}")))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(RpError::Algorithm(header_alg));
        }
        let (certified, ear) = if classical {
            let certified = match &self.bundle {
                Some(b) if crate::x5c::has_x5c(token) => {
                    Some(crate::x5c::signer(token, "JWT", b, unix_now())?)
                }
                _ => None,
            };
            let (key, alg) = match (&certified, self.keys.get(&header.kid)) {
                (Some(s), _) => (&s.key, &s.alg),
                (None, Some(k)) => (&k.0, &k.1),
                (None, None) if self.keys.is_empty() => {
                    return Err(RpError::Keys(
                        "the result carries no x5c certified by the trust bundle".into(),
                    ));
                }
                (None, None) => match self.keys.get(&header.kid) {
                    Some(k) => (&k.0, &k.1),
                    None if self.keys.len() == 1 && header.kid.is_none() => self
                        .keys
                        .values()
                        .next()
                        .map(|k| (&k.0, &k.1))
                        .ok_or(RpError::UnknownKey(String::new()))?,
                    None => {
                        // A bare key (no kid) accepts any kid only when it is the only key.
                        match (self.keys.get(&None), self.keys.len()) {
                            (Some(k), 1) => (&k.0, &k.1),
                            _ => {
                                return Err(RpError::UnknownKey(
                                    header.kid.clone().unwrap_or_default(),
                                ));
                            }
                        }
                    }
                },
            };
            if *alg != header.alg {
                return Err(RpError::Algorithm(format!(
                    "{:?} (the key is published for {alg:?})",
                    header.alg
                )));
            }
            let mut v = Validation::new(*alg);
            v.leeway = req.leeway;
            v.validate_nbf = true;
            v.validate_exp = true;
            v.required_spec_claims.clear();
            if req.require_exp {
                v.required_spec_claims.insert("exp".into());
            }
            match audience {
                Some(a) => {
                    // `aud` must be present (jsonwebtoken checks it only when it is) and name us.
                    v.set_audience(&[a]);
                    v.required_spec_claims.insert("aud".into());
                }
                None => v.validate_aud = false,
            }
            let data = jsonwebtoken::decode::<Ear>(token, key, &v).map_err(|e| {
                match (map_jwt_error(e), audience) {
                    (RpError::Audience(_), Some(a)) => RpError::Audience(a.clone()),
                    (other, _) => other,
                }
            })?;
            (certified, data.claims)
        } else {
            (None, claims_checked(token, req, audience)?)
        };
        if ear.eat_profile != EAR_PROFILE {
            return Err(RpError::Profile(ear.eat_profile));
        }
        if let Some(n) = &req.nonce
            && ear.eat_nonce.as_deref() != Some(n.as_str())
            && ear.eat_nonce != Some(vouch_core::eat_nonce(n))
        {
            return Err(RpError::Nonce);
        }
        let status = ear.overall_status();
        let ok = match status {
            ArStatus::Affirming => true,
            ArStatus::Warning => req.accept_warning || req.accept_any_status,
            _ => req.accept_any_status,
        };
        if !ok {
            return Err(RpError::Status(status.to_string()));
        }
        if let Some(missing) = req.submods.iter().find(|n| !ear.submods.contains_key(*n)) {
            return Err(RpError::Submodule(missing.clone()));
        }
        if !req.evidence_kinds.is_empty() {
            let kind = ear
                .submods
                .get(vouch_core::SUBMOD_NAME)
                .and_then(|s| s.extensions.get("vouch.evidence-kind"))
                .and_then(|k| k.as_str())
                .unwrap_or("none");
            if !req.evidence_kinds.iter().any(|k| k == kind) {
                return Err(RpError::EvidenceKind(kind.to_string()));
            }
        }
        if let Some(expected) = &req.tenant
            && ear.tenant.as_ref() != Some(expected)
        {
            return Err(RpError::Tenant {
                expected: expected.clone(),
                got: ear.tenant.clone().unwrap_or_default(),
            });
        }
        for (claim, worst) in &req.tiers {
            for sub in ear.submods.values() {
                let value = sub.trust_vector.get(*claim);
                let tier = tier_of(value);
                // "none" (no claim) never satisfies a requirement.
                if tier == ArStatus::None || tier > *worst {
                    return Err(RpError::Tier {
                        claim: claim.as_str().into(),
                        value,
                        tier: tier.to_string(),
                        required: worst.to_string(),
                    });
                }
            }
        }
        let result = VerifiedResult {
            status,
            subject: ear.sub.clone(),
            kid: header.kid,
            signer: certified.as_ref().map(|s| s.signer.to_string()),
            signer_serial: certified.map(|s| s.serial),
            ear,
        };
        if let Some(set) = &self.revocations {
            set.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .check_result(&result, unix_now())?;
        }
        Ok(result)
    }
}

/// The claims of `token` with the checks `jsonwebtoken` makes after a signature (`exp`,
/// `nbf` with the leeway, `aud`), for [`SignatureMode::PostQuantum`], where the signature
/// checked is the ML-DSA-65 one over the same payload.
fn claims_checked(
    token: &str,
    req: &Requirements,
    audience: Option<&String>,
) -> Result<Ear, RpError> {
    let ear: Ear = jsonwebtoken::dangerous::insecure_decode::<Ear>(token)
        .map_err(map_jwt_error)?
        .claims;
    let now = unix_now();
    match ear.exp {
        Some(exp) if now > exp.saturating_add(req.leeway) => return Err(RpError::Expired),
        None if req.require_exp => return Err(RpError::Malformed("missing claim exp".into())),
        _ => {}
    }
    if let Some(nbf) = ear.nbf
        && nbf > now.saturating_add(req.leeway)
    {
        return Err(RpError::NotYetValid);
    }
    if let Some(a) = audience
        && ear.aud.as_deref() != Some(a.as_str())
    {
        return Err(RpError::Audience(a.clone()));
    }
    Ok(ear)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Read the header's `alg` as text, so a refused algorithm (like `none`) is named in the error.
fn peek_alg(token: &str) -> Result<String, RpError> {
    use base64::Engine as _;
    let h = token
        .split('.')
        .next()
        .ok_or_else(|| RpError::Malformed("empty token".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| RpError::Malformed("header is not base64url".into()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| RpError::Malformed("header is not JSON".into()))?;
    match v.get("alg").and_then(|a| a.as_str()) {
        Some(a) if ACCEPTED.iter().any(|x| format!("{x:?}") == a) => Ok(a.to_string()),
        Some(a) => Err(RpError::Algorithm(a.to_string())),
        None => Err(RpError::Malformed("header has no alg".into())),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> RpError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => RpError::Signature,
        K::ExpiredSignature => RpError::Expired,
        K::ImmatureSignature => RpError::NotYetValid,
        K::InvalidAudience => RpError::Audience(String::new()),
        K::MissingRequiredClaim(c) if c == "aud" => RpError::Audience(String::new()),
        K::MissingRequiredClaim(c) => RpError::Malformed(format!("missing claim {c}")),
        _ => RpError::Malformed(e.to_string()),
    }
}
