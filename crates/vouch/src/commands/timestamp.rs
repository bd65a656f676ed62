//! The verifier's countersignature on SVID-signed provenance, and the revocation feed at the
//! gate (issue 15 part 7).
//!
//! `vouch provenance sign --timestamp-url` asks the verifier (`POST /v1/timestamp`) to sign
//! the SHA-256 of the DSSE signature with its own clock, presenting the builder's attestation
//! result, and puts the answer (a compact JWS of type `vouch-timestamp+jwt` under the
//! verifier's result-signing key) next to the signature as `timestamp`: outside the signed
//! payload, since it is made after the signature. `vouch provenance verify --jwks` then checks
//! the SVID chain as of that time ([`check`]), not as of the `finishedOn` the signer chose, and
//! `--revocations` refuses an SVID whose serial, or whose builder's workload or node (named by
//! the timestamp), the verifier's signed feed revokes ([`Revocations`]).
//!
//! The request carries the leaf certificate the signature was made with; the verifier stamps
//! only an SVID it issued to the workload whose result is presented, and names it in the
//! claims (`x5t#S256`, `spiffe_id`). [`check`] requires that name to be the SHA-256 of the
//! leaf of the signature it countersigns, so a stamp obtained for one certificate does not
//! vouch for a signature by another.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::Digest as _;
use std::path::Path;

use vouch_rp::{RevocationKind, RevocationSet};

/// Where the timestamp travels: a field of the envelope's first signature.
pub(crate) const FIELD: &str = "timestamp";
/// How far the signer's and the verifier's clocks may disagree, seconds: `finishedOn` may be
/// this much later than the countersigned time, and that time this much in the future.
pub(crate) const SKEW: u64 = 60;
/// How a refusal by the verifier begins (exit 1, not 2).
pub(crate) const REFUSED: &str = "the verifier refused a timestamp";
/// Longest timestamp JWS read.
const MAX_TIMESTAMP: usize = 16 * 1024;
/// Longest JWKS or revocation feed read from a file (a feed fetched from a URL is bounded per
/// page by the client: `vouch_agent::MAX_FEED_PAGE`).
const MAX_FEED: usize = 256 << 20;

/// A timestamp whose signature, key and digest checked.
#[derive(Debug, Clone)]
pub(crate) struct Countersigned {
    /// The verifier's time, Unix seconds.
    pub(crate) time: u64,
    /// The workload (`node/name`) whose result was presented for it.
    pub(crate) workload: String,
    /// The signing key's id.
    pub(crate) kid: String,
    /// The serial (revocation target) of the verifier replica certificate in its `x5c`.
    pub(crate) signer_serial: Option<String>,
}

/// `sha256:<hex>` of the first signature's bytes in the envelope `v`.
fn signature_digest(v: &serde_json::Value) -> Result<String, String> {
    let sig = v["signatures"][0]["sig"]
        .as_str()
        .ok_or("the envelope has no signature")?;
    let t = sig.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .or_else(|_| URL_SAFE_NO_PAD.decode(t))
        .map_err(|_| "the signature is not base64")?;
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    ))
}

/// The leaf certificate (DER) of the envelope `v`'s first signature: its `x5c[0]`.
pub(crate) fn first_leaf(v: &serde_json::Value) -> Result<Vec<u8>, String> {
    v["signatures"][0]["x5c"][0]
        .as_str()
        .ok_or("the signature carries no x5c leaf certificate")
        .and_then(|c| {
            STANDARD
                .decode(c.trim())
                .map_err(|_| "the x5c leaf is not base64")
        })
        .map_err(str::to_string)
}

/// Ask the verifier at `url` to timestamp the first signature of `envelope` (presenting the
/// attestation result in the file `result`, and `leaf`, the DER of the SVID the signature was
/// made with), and put its answer in the envelope. Returns the countersigned time. A verifier
/// that cannot be reached is an [`Unreachable`].
pub(crate) async fn countersign(
    envelope: &mut serde_json::Value,
    url: &str,
    ca: Option<&Path>,
    result: &Path,
    leaf: &[u8],
) -> Result<u64> {
    // The result is what timestamps are minted with: never sent over plain HTTP.
    anyhow::ensure!(
        !url.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://")),
        "{url}: the timestamp URL must be https:// (the attestation result it is sent would \
         travel in clear)"
    );
    let digest = signature_digest(envelope).map_err(anyhow::Error::msg)?;
    let token = std::fs::read_to_string(result)
        .with_context(|| format!("reading the attestation result {}", result.display()))?;
    let client = vouch_agent::VerifierClient::new(url, ca)?;
    let answer = match client.timestamp(&digest, token.trim(), leaf).await {
        Ok(a) => a,
        Err(e @ vouch_agent::AgentError::Unreachable { .. }) => {
            return Err(anyhow::Error::new(Unreachable(e.to_string())));
        }
        Err(e) => return Err(anyhow::anyhow!("{REFUSED}: {e}")),
    };
    let jws = answer["timestamp"]
        .as_str()
        .filter(|t| t.len() <= MAX_TIMESTAMP)
        .context("the verifier's answer has no timestamp")?;
    let time = answer["time"].as_u64().unwrap_or_default();
    envelope["signatures"][0][FIELD] = jws.into();
    Ok(time)
}

/// No verifier answered (exit 3).
#[derive(Debug)]
pub(crate) struct Unreachable(pub(crate) String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach the verifier: {}", self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Read a file, or fetch an `https://` URL of the verifier (`kind` names what for errors):
/// the JWKS (`/.well-known/jwks.json`) or the revocation feed (`/v1/revocations`). A plain
/// `http://` URL is refused (a local error): whoever is on the path would choose the keys
/// timestamps and results are checked with.
pub(crate) async fn read_source(src: &str, ca: Option<&Path>, kind: Source) -> Result<String> {
    if src
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
    {
        anyhow::bail!(
            "{src}: the verifier's keys and revocations are read over https:// only (or from a \
             file): over plain HTTP anyone on the path could serve their own"
        );
    }
    if src.starts_with("https://") {
        let suffix = match kind {
            Source::Jwks => "/.well-known/jwks.json",
            Source::Revocations => "/v1/revocations",
        };
        let base = src.strip_suffix(suffix).unwrap_or(src);
        let c = vouch_agent::VerifierClient::new(base, ca)?;
        let got = match kind {
            Source::Jwks => c.jwks().await,
            Source::Revocations => c.revocations().await,
        };
        return got.map_err(|e| anyhow::Error::new(Unreachable(format!("{src}: {e}"))));
    }
    let f = std::fs::File::open(src).with_context(|| format!("reading {src}"))?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_FEED as u64 + 1), &mut s)
        .with_context(|| format!("reading {src}"))?;
    anyhow::ensure!(s.len() <= MAX_FEED, "{src} is longer than {MAX_FEED} bytes");
    Ok(s)
}

/// [`read_source`] for a command that exits 3 when no verifier answers (`vouch verify`,
/// `vouch provenance verify`, as `vouch attest --ci`): a URL that cannot be fetched is said on
/// standard error and given as `None`.
pub(crate) async fn read_source_or_unreachable(
    src: &str,
    ca: Option<&Path>,
    kind: Source,
) -> Result<Option<String>> {
    match read_source(src, ca, kind).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is::<Unreachable>() => {
            eprintln!("error: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What [`read_source`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// A JWKS.
    Jwks,
    /// A revocation feed.
    Revocations,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    digest: String,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
    iat: u64,
}

/// Check the timestamp of the envelope `v`'s first signature against the verifier's `jwks`:
/// a compact JWS of type `vouch-timestamp+jwt` whose `kid` is in the JWKS and whose signature
/// verifies under that key with that key's algorithm, countersigning the SHA-256 of exactly
/// this signature, at a time not more than [`SKEW`] in the future, for the certificate `leaf`
/// (DER) the signature was made with (`x5t#S256`, its base64url SHA-256). `Err` is a refusal
/// reason.
pub(crate) fn check(
    v: &serde_json::Value,
    jwks: &str,
    now: u64,
    leaf: &[u8],
) -> Result<Countersigned, String> {
    use jsonwebtoken::{Validation, jwk::Jwk};
    let token = match v["signatures"][0].get(FIELD) {
        None => {
            return Err(
                "the signature has no verifier timestamp (sign with --timestamp-url, or verify \
                 with --allow-signer-time to trust the signer's finishedOn)"
                    .into(),
            );
        }
        Some(t) => t.as_str().ok_or("the timestamp is not a string")?,
    };
    if token.len() > MAX_TIMESTAMP {
        return Err("the timestamp is too long".into());
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| format!("timestamp header: {e}"))?;
    if header.typ.as_deref() != Some(vouch_server::TIMESTAMP_TYP) {
        return Err(format!(
            "the timestamp's typ is {:?}, not {:?}",
            header.typ,
            vouch_server::TIMESTAMP_TYP
        ));
    }
    let kid = header.kid.as_deref().ok_or("the timestamp names no kid")?;
    let set: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let jwk = set["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"].as_str() == Some(kid)))
        .ok_or_else(|| format!("the timestamp's key {kid:?} is not in the verifier's JWKS"))?;
    let jwk: Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| format!("JWKS key {kid}: {e}"))?;
    let alg = match jwk.common.key_algorithm {
        Some(jsonwebtoken::jwk::KeyAlgorithm::EdDSA) => jsonwebtoken::Algorithm::EdDSA,
        Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => jsonwebtoken::Algorithm::ES256,
        other => {
            return Err(format!(
                "JWKS key {kid}: algorithm {other:?} is not EdDSA or ES256"
            ));
        }
    };
    if header.alg != alg {
        return Err(format!(
            "the timestamp is signed with {:?}, key {kid} is {alg:?}",
            header.alg
        ));
    }
    let key =
        jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| format!("JWKS key {kid}: {e}"))?;
    let mut val = Validation::new(alg);
    val.required_spec_claims.clear();
    val.validate_exp = false;
    val.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &val)
        .map_err(|e| format!("the timestamp does not verify under key {kid}: {e}"))?
        .claims;
    let want = signature_digest(v)?;
    if claims.digest != want {
        return Err(format!(
            "the timestamp countersigns {}, not this signature ({want})",
            claims.digest
        ));
    }
    // The stamp names the certificate the verifier checked was issued to the presenter's
    // workload: it must be the one this signature was made with.
    let leaf_thumb = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(leaf));
    match claims.x5t_s256.as_deref() {
        None => {
            return Err("the timestamp names no certificate (x5t#S256): it is not bound to the                         signer's SVID"
                .into());
        }
        Some(t) if t != leaf_thumb => {
            return Err(format!(
                "the timestamp is for certificate x5t#S256 {t}, not the signer's ({leaf_thumb})"
            ));
        }
        Some(_) => {}
    }
    if claims.iat > now + SKEW {
        return Err(format!(
            "the timestamp is {} s in the future",
            claims.iat - now
        ));
    }
    let signer_serial = header
        .x5c
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|c| STANDARD.decode(c).ok())
        .and_then(|der| {
            x509_parser::parse_x509_certificate(&der)
                .ok()
                .map(|(_, c)| vouch_core::revocation::serial_target(c.raw_serial()))
        });
    tracing::debug!(iss = %claims.iss, "timestamp verified");
    Ok(Countersigned {
        time: claims.iat,
        workload: claims.sub,
        kid: kid.to_string(),
        signer_serial,
    })
}

/// The verifier's revocation feed, checked record by record against the trust bundle.
pub(crate) struct Revocations {
    set: RevocationSet,
}

impl Revocations {
    /// Load `feed` (a `GET /v1/revocations` answer, or a set saved by `vouch rp watch`)
    /// with records and heads accepted only from verifier replicas certified by `authorities`
    /// (the trust domain `td`'s CA), and refusing once its head is older than `max_age`
    /// seconds. Errors are local (exit 2).
    pub(crate) fn load(
        feed: &str,
        authorities: &[Vec<u8>],
        td: &vouch_rp::TrustDomain,
        max_age: u64,
        now: u64,
    ) -> Result<Self> {
        let bundle =
            vouch_rp::SpiffeVerifier::new(td, authorities, vouch_rp::AllowedIds::AnyInTrustDomain)
                .map_err(|e| anyhow::anyhow!("trust bundle for revocations: {e}"))?;
        let mut set =
            RevocationSet::new(bundle).with_max_age(std::time::Duration::from_secs(max_age));
        // A record or head that does not check is left out: the set is then incomplete and
        // every check refuses, rather than a revocation being missed.
        set.load_json(feed.as_bytes(), now)
            .map_err(|e| anyhow::anyhow!("the revocation feed: {e}"))?;
        Ok(Self { set })
    }

    /// Refuse (the reason) the SVID `leaf` (DER) when its serial is revoked, the workload or
    /// node named by `ts` is, or the verifier replica certificate that signed `ts` is; and
    /// everything while the feed is incomplete or its head older than allowed.
    pub(crate) fn check(
        &self,
        leaf: &[u8],
        ts: Option<&Countersigned>,
        now: u64,
    ) -> Result<String, String> {
        self.set
            .check_svid(leaf, now)
            .map_err(|e| format!("revocations: the SVID: {e}"))?;
        if let Some(ts) = ts {
            let node = ts.workload.split_once('/').map(|(n, _)| n);
            for (what, kind, target) in [
                (
                    "the builder's workload",
                    RevocationKind::Workload,
                    Some(ts.workload.as_str()),
                ),
                ("the builder's node", RevocationKind::Node, node),
                (
                    "the timestamp's verifier certificate",
                    RevocationKind::Svid,
                    ts.signer_serial.as_deref(),
                ),
            ] {
                if let Some(t) = target
                    && let Some(c) = self.set.revoked(kind, t)
                {
                    return Err(format!(
                        "revocations: {what} {t} is revoked (epoch {}: {})",
                        c.epoch, c.reason
                    ));
                }
            }
        }
        let view = self.set.view();
        Ok(format!(
            "revocations complete through epoch {}",
            view.complete_through
        ))
    }
}

/// `vouch provenance timestamp`: what to countersign, and where.
#[derive(Debug, clap::Args)]
pub(crate) struct TimestampArgs {
    /// The DSSE envelope whose first signature is countersigned (rewritten in place unless
    /// --out).
    #[arg(long)]
    envelope: std::path::PathBuf,
    /// Write the timestamped envelope here.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// The verifier, `https://host:port`.
    #[arg(long)]
    timestamp_url: String,
    /// The attestation result the verifier issued to the builder (`vouch attest --ci`'s
    /// `result_path`).
    #[arg(long)]
    result: std::path::PathBuf,
    /// CA certificate (PEM) of the verifier's TLS certificate.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
}

/// Run `vouch provenance timestamp`.
pub(crate) async fn run(a: TimestampArgs) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let bytes =
        std::fs::read(&a.envelope).with_context(|| format!("reading {}", a.envelope.display()))?;
    anyhow::ensure!(
        bytes.len() <= vouch_image::provenance::MAX_ENVELOPE_BYTES,
        "{} is larger than an envelope may be",
        a.envelope.display()
    );
    let mut v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", a.envelope.display()))?;
    let leaf = first_leaf(&v).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (only SVID-signed envelopes are timestamped)",
            a.envelope.display()
        )
    })?;
    match countersign(
        &mut v,
        &a.timestamp_url,
        a.ca_cert.as_deref(),
        &a.result,
        &leaf,
    )
    .await
    {
        Ok(t) => eprintln!(
            "timestamp from {}: {}",
            a.timestamp_url,
            super::rfc3339::format_rfc3339(t)
        ),
        Err(e) if e.is::<Unreachable>() => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(3));
        }
        Err(e) if e.to_string().starts_with(REFUSED) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e),
    }
    let out = a.out.as_ref().unwrap_or(&a.envelope);
    let text = serde_json::to_string_pretty(&v)? + "\n";
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use aws_lc_rs::signature::KeyPair as _;

    /// A timestamp signed by a key of `jwks` over the first signature of `env`, with `x5t`.
    fn stamped(x5t: Option<&str>) -> (serde_json::Value, String) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref()),
        }]})
        .to_string();
        let mut env = serde_json::json!({"signatures": [{"sig": STANDARD.encode(b"a signature")}]});
        let digest = signature_digest(&env).unwrap();
        let mut claims = serde_json::json!({
            "iss": "spiffe://vouch.local/vouch/verifier/k1", "sub": "n/w", "att": "a",
            "digest": digest, "spiffe_id": "spiffe://vouch.local/w", "iat": 1_000,
        });
        if let Some(t) = x5t {
            claims["x5t#S256"] = t.into();
        }
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.typ = Some(vouch_server::TIMESTAMP_TYP.into());
        h.kid = Some("k1".into());
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        env["signatures"][0][FIELD] = jsonwebtoken::encode(&h, &claims, &key).unwrap().into();
        (env, jwks)
    }

    #[test]
    fn a_timestamp_must_name_the_signers_certificate() {
        let leaf = b"the signer's leaf DER";
        let thumb = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(leaf));
        let (env, jwks) = stamped(Some(&thumb));
        assert_eq!(check(&env, &jwks, 1_000, leaf).unwrap().time, 1_000);
        // The same stamp checked for another certificate.
        let e = check(&env, &jwks, 1_000, b"another leaf DER").unwrap_err();
        assert!(e.contains("not the signer's"), "{e}");
        // No x5t#S256 (as stamps were made before the binding).
        let (env, jwks) = stamped(None);
        let e = check(&env, &jwks, 1_000, leaf).unwrap_err();
        assert!(e.contains("names no certificate"), "{e}");
        // One character of the thumbprint changed.
        let mut t = thumb.into_bytes();
        t[0] = if t[0] == b'A' { b'B' } else { b'A' };
        let (env, jwks) = stamped(Some(std::str::from_utf8(&t).unwrap()));
        assert!(check(&env, &jwks, 1_000, leaf).is_err());
    }
}
