//! The SPIFFE CA key in a PKCS#11 token (SoftHSM2): the verifier generates it in the token,
//! signs SVIDs through the token, keeps no key file, finds the same key after a restart, and
//! the key cannot be read out. (One test in this binary: SoftHSM2 reads its configuration
//! from the process environment.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rcgen::PublicKeyData as _;

use vouch_core::wire::{SvidRequest, svid_signing_input};
use vouch_identity::{Entry, Pkcs11Config, Selector, SpiffeId};
use vouch_server::unix_now;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn softhsm(dir: &std::path::Path) -> Pkcs11Config {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // SAFETY: the only test in this process sets it before any thread reads it.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "vouch-ca"])
        .args(["--pin", "1234", "--so-pin", "5678"])
        .output()
        .expect("softhsm2-util (Debian softhsm2; scripts/deps.sh --test installs it)");
    assert!(out.status.success(), "{out:?}");
    Pkcs11Config {
        module: MODULE.into(),
        token_label: "vouch-ca".into(),
        pin: "1234".into(),
        key_label: "spiffe-ca".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_key_lives_and_signs_in_the_token_and_never_leaves_it() {
    let scratch = tempfile::tempdir().unwrap();
    let p11 = softhsm(scratch.path());

    // A wrong PIN is a clear configuration error.
    let wrong = Pkcs11Config {
        pin: "0000".into(),
        ..p11.clone()
    };
    let e = vouch_identity::Pkcs11Key::open(&wrong).unwrap_err();
    assert!(e.to_string().contains("logging in"), "{e}");

    let h = common::Harness::new(|c| c.svid_ca_pkcs11 = Some(p11.clone())).await;
    let spiffe = h.cfg.data_dir.join("spiffe");
    assert!(spiffe.join("ca.crt").exists());
    assert!(
        !spiffe.join("ca.key").exists(),
        "no key file when the key is in the token"
    );

    // An SVID issued by the verifier, signed in the token.
    let mut agent = h.agent("db").await;
    h.trust(&mut agent).await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    let id = SpiffeId::parse("spiffe://vouch.local/db").unwrap();
    let entry = Entry::new(
        "e-db".into(),
        &id,
        vec![Selector::parse("vouch:workload:db").unwrap()],
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&entry).await.unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let pk = B64.encode(leaf_key.subject_public_key_info());
    let key_id = agent.enrollment().key_id.clone();
    let r = h
        .client()
        .svid(&SvidRequest {
            signature: agent
                .key()
                .sign_b64(&svid_signing_input(&key_id, "db", &pk, &[])),
            key_id,
            workload: "db".into(),
            public_key: pk,
            selectors: vec![],
        })
        .await
        .unwrap();
    let leaf_der = B64.decode(&r.svids[0].x509_svid).unwrap();
    let ca_pem = std::fs::read_to_string(spiffe.join("ca.crt")).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    let ca_der = B64.decode(&r.bundle[0]).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    ca.verify_signature(None).unwrap();

    // OpenSSL agrees.
    std::fs::write(scratch.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(
        scratch.path().join("leaf.pem"),
        vouch_identity::cert_to_pem(&leaf_der),
    )
    .unwrap();
    let v = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(scratch.path().join("ca.pem"))
        .arg(scratch.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");

    // In the token: private, sensitive, never extractable; its value cannot be read.
    let ctx = vouch_identity::pkcs11_context(std::path::Path::new(MODULE)).unwrap();
    let slot = ctx.get_slots_with_initialized_token().unwrap()[0];
    let session = ctx.open_ro_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::new("1234".into())))
        .or_else(|e| match e {
            // The verifier's session already logged the user in.
            cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _) => {
                Ok(())
            }
            e => Err(e),
        })
        .unwrap();
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"spiffe-ca".to_vec()),
        ])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Token,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(
        attrs.contains(&Attribute::NeverExtractable(true)),
        "{attrs:?}"
    );
    assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
    assert!(
        !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the private value must not be readable: {attrs:?}"
    );

    // A restart finds the same key in the token and keeps the same CA certificate.
    let td = vouch_identity::TrustDomain::parse("vouch.local").unwrap();
    let again =
        vouch_identity::SvidCa::open_pkcs11(&p11, &spiffe, &td, 86_400, unix_now()).unwrap();
    assert_eq!(again.cert_der(), ca_der.as_slice());
}
