//! mTLS by SPIFFE ID: rustls verifiers that accept a peer when its X.509-SVID chains to the
//! trust bundle's X.509 authorities, is valid now, is meant for the role (server or client
//! authentication), carries exactly one URI SAN that is a SPIFFE ID of the trust domain, and
//! that ID is one the relying party accepts. Host names play no part.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;

use vouch_spiffe::{SpiffeId, TrustDomain};

/// Which SPIFFE IDs a verifier accepts.
#[derive(Debug, Clone)]
pub enum AllowedIds {
    /// Any SPIFFE ID of the trust domain.
    AnyInTrustDomain,
    /// Exactly these.
    Only(Vec<SpiffeId>),
}

/// A rustls server- and client-certificate verifier by SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeVerifier {
    trust_domain: TrustDomain,
    anchors: Vec<TrustAnchor<'static>>,
    allowed: AllowedIds,
    provider: Arc<CryptoProvider>,
    revocations: Option<Arc<std::sync::RwLock<crate::RevocationSet>>>,
}

fn bad(m: impl Into<String>) -> Error {
    Error::General(m.into())
}

/// The SPIFFE ID of an X.509-SVID: its one URI SAN ([`vouch_spiffe::svid_spiffe_id`], with a
/// rustls error for use inside certificate verifiers).
pub fn svid_spiffe_id(der: &[u8]) -> Result<SpiffeId, Error> {
    vouch_spiffe::svid_spiffe_id(der).map_err(|e| bad(e.to_string()))
}

impl SpiffeVerifier {
    /// Accept peers of `trust_domain` whose SVIDs chain to one of `x509_authorities` (DER, from
    /// the trust bundle) and whose ID is allowed.
    pub fn new(
        trust_domain: &TrustDomain,
        x509_authorities: &[Vec<u8>],
        allowed: AllowedIds,
    ) -> Result<Arc<Self>, Error> {
        Self::build(trust_domain, x509_authorities, allowed, None).map(Arc::new)
    }

    fn build(
        trust_domain: &TrustDomain,
        x509_authorities: &[Vec<u8>],
        allowed: AllowedIds,
        revocations: Option<Arc<std::sync::RwLock<crate::RevocationSet>>>,
    ) -> Result<Self, Error> {
        let mut anchors = Vec::new();
        for der in x509_authorities {
            let cert = CertificateDer::from(der.clone());
            let a = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| bad(format!("trust bundle authority: {e}")))?
                .to_owned();
            anchors.push(a);
        }
        if anchors.is_empty() {
            return Err(bad("the trust bundle has no X.509 authority"));
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            anchors,
            allowed,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            revocations,
        })
    }

    /// As [`SpiffeVerifier::new`], and also refuse peers whose SVID serial is revoked in
    /// `revocations` (kept current by gossip or a saved file; checked with no network), and
    /// every peer while that set is not current: incomplete, or its newest head older than
    /// [`crate::RevocationSet::max_age`].
    pub fn with_revocations(
        trust_domain: &TrustDomain,
        x509_authorities: &[Vec<u8>],
        allowed: AllowedIds,
        revocations: Arc<std::sync::RwLock<crate::RevocationSet>>,
    ) -> Result<Arc<Self>, Error> {
        Self::build(trust_domain, x509_authorities, allowed, Some(revocations)).map(Arc::new)
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, Error> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| bad(format!("peer certificate: {e}")))?;
        ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| bad(format!("peer SVID does not chain to the trust bundle: {e}")))?;
        let id = svid_spiffe_id(end_entity)?;
        if let Some(set) = &self.revocations {
            set.read()
                .map_err(|_| bad("revocation set lock poisoned"))?
                .check_svid(end_entity.as_ref(), now.as_secs())
                .map_err(|e| bad(format!("peer SVID: {e}")))?;
        }
        if id.trust_domain() != &self.trust_domain {
            return Err(bad(format!(
                "{id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        match &self.allowed {
            AllowedIds::AnyInTrustDomain => Ok(id),
            AllowedIds::Only(ids) if ids.contains(&id) => Ok(id),
            AllowedIds::Only(_) => Err(bad(format!("{id} is not an accepted peer"))),
        }
    }
}

impl SpiffeVerifier {
    /// Check an X.509-SVID chain (leaf first, then any intermediates) outside TLS, as of `at`
    /// (Unix seconds): the same checks as for a TLS client certificate. Returns the SPIFFE ID.
    pub fn verify_chain(&self, chain: &[Vec<u8>], at: u64) -> Result<SpiffeId, Error> {
        self.check_chain(chain, at, webpki::KeyUsage::client_auth())
    }

    /// Check the certificate chain of a verifier replica's signature (a result's, a revocation
    /// record's or head's `x5c`, leaf first) against the trust bundle as of `at` (Unix
    /// seconds), and return the SPIFFE ID of its leaf. The leaf must carry the EKU
    /// id-kp-documentSigning (RFC 9336), which the trust domain's CA gives only to verifier
    /// replicas: a workload's X.509-SVID (serverAuth, clientAuth) signs nothing a relying
    /// party accepts, whatever its path.
    pub fn verify_signer_chain(&self, chain: &[Vec<u8>], at: u64) -> Result<SpiffeId, Error> {
        /// 1.3.6.1.5.5.7.3.36, DER content octets.
        const DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];
        self.check_chain(chain, at, webpki::KeyUsage::required(DOCUMENT_SIGNING))
    }

    /// [`Self::check`] on a chain of DER certificates, leaf first, as of `at`.
    fn check_chain(
        &self,
        chain: &[Vec<u8>],
        at: u64,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, Error> {
        let (leaf, rest) = chain
            .split_first()
            .ok_or_else(|| bad("empty certificate chain"))?;
        let leaf = CertificateDer::from(leaf.as_slice());
        let rest: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        self.check(
            &leaf,
            &rest,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
            usage,
        )
    }

    /// The trust domain this verifier accepts.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The TLS handshake signature by the peer's key (the same for both roles).
    fn handshake_signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.provider.signature_verification_algorithms;
        if tls13 {
            verify_tls13_signature(message, cert, dss, algs)
        } else {
            verify_tls12_signature(message, cert, dss, algs)
        }
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.handshake_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.handshake_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.handshake_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.handshake_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
