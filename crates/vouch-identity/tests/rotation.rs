//! CA rotation on a clock we control: prepare at half life, activate at five sixths, retired
//! authorities kept until the SVIDs they signed expire, SVIDs never outliving their CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::PublicKeyData as _;
use vouch_identity::{CaSet, SpiffeId, TrustDomain};

fn signed_by(leaf: &[u8], ca: &[u8]) -> bool {
    let (_, l) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(ca).unwrap();
    l.verify_signature(Some(c.public_key())).is_ok()
}

fn not_after(leaf: &[u8]) -> i64 {
    let (_, l) = x509_parser::parse_x509_certificate(leaf).unwrap();
    l.validity().not_after.timestamp()
}

#[test]
fn rotation_keeps_svids_in_flight_valid() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::parse("example.org").unwrap();
    let id = SpiffeId::new(&td, "/svc").unwrap();
    let spki = rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info();
    // The first CA: notBefore 940 (60 s of slack), notAfter 1600.
    let mut set = CaSet::load_or_create(dir.path(), &td, 600, 1000).unwrap();
    assert_eq!(set.active().validity(), (940, 1600));
    assert_eq!(set.sequence(), 1);
    let first_ca = set.active().cert_der().to_vec();
    let a = set.active().issue(&id, &spki, 100, 1000).unwrap();

    // Another process sharing the directory (a second replica, or `vouch ca`).
    let observer = CaSet::load_or_create(dir.path(), &td, 600, 1000).unwrap();
    assert!(!observer.changed_on_disk());

    // Before half life nothing happens; after it, the next CA is published but does not sign.
    assert!(!set.rotate_if_due(600, 100, 1200).unwrap());
    assert!(set.rotate_if_due(600, 100, 1300).unwrap());
    assert_eq!(set.sequence(), 2);
    assert!(observer.changed_on_disk());
    let next_ca = set.next().unwrap().cert_der().to_vec();
    assert_eq!(set.authorities(1300), vec![&first_ca[..], &next_ca[..]]);
    let b = set.active().issue(&id, &spki, 100, 1300).unwrap();
    assert!(signed_by(&b, &first_ca));
    assert!(set.prepare(600, 1300).is_err(), "one next CA at a time");

    // At five sixths the next CA signs; the old one stays in the bundle while its SVIDs live.
    assert!(!set.rotate_if_due(600, 100, 1400).unwrap());
    assert!(set.rotate_if_due(600, 100, 1500).unwrap());
    assert_eq!(set.sequence(), 3);
    assert_eq!(set.active().cert_der(), &next_ca[..]);
    let c = set.active().issue(&id, &spki, 100, 1500).unwrap();
    assert!(signed_by(&c, &next_ca) && !signed_by(&c, &first_ca));
    let bundle = set.authorities(1500);
    assert!(bundle.contains(&&first_ca[..]) && bundle.contains(&&next_ca[..]));
    for old in [&a, &b] {
        assert!(
            bundle.iter().any(|ca| signed_by(old, ca)),
            "SVIDs in flight still verify"
        );
    }
    assert!(!dir.path().join("next").exists());

    // The state survives a restart.
    let reloaded = CaSet::load_or_create(dir.path(), &td, 600, 1500).unwrap();
    assert_eq!(reloaded.active().cert_der(), &next_ca[..]);
    assert_eq!(reloaded.authorities(1550).len(), 2);
    assert_eq!(reloaded.sequence(), 3);
    // Once every SVID of the old CA has expired, it leaves the bundle.
    assert_eq!(reloaded.authorities(1601), vec![&next_ca[..]]);
}

#[test]
fn svids_never_outlive_their_ca_and_activation_needs_a_prepared_ca() {
    let dir = tempfile::tempdir().unwrap();
    let td = TrustDomain::parse("example.org").unwrap();
    let id = SpiffeId::new(&td, "/svc").unwrap();
    let spki = rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info();
    let mut set = CaSet::load_or_create(dir.path(), &td, 600, 1000).unwrap();
    let late = set.active().issue(&id, &spki, 3600, 1550).unwrap();
    assert_eq!(not_after(&late), 1600);
    assert!(
        set.active().issue(&id, &spki, 10, 1600).is_err(),
        "expired CA"
    );
    assert!(set.activate(100, 1000).is_err());
}
