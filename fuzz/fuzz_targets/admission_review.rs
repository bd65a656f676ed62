#![no_main]
//! `AdmissionReview` requests as the API server posts them to the admission webhook (their
//! objects are what users submitted): any bytes, and a Pod review and a Binding review built to
//! the documented `admission.k8s.io/v1` schema with the input's bytes folded in (so the pod
//! spec and binding paths are reached), never a panic; what parses keeps its bounds.
use libfuzzer_sys::fuzz_target;
use vouch_core::admission::{MAX_IMAGES, MAX_UID, Subject, parse};

const POD: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"admin","groups":["system:authenticated"]},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"nodeName":"node-1","initContainers":[{"name":"i","image":"registry.example:5000/shop/init:v1"}],"containers":[{"name":"c0","image":"registry.example:5000/shop/web:v1"},{"name":"c1","image":"registry.example:5000/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],"ephemeralContainers":null}},"oldObject":null,"dryRun":false}}"#;
const BINDING: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"b1","kind":{"group":"","version":"v1","kind":"Binding"},"resource":{"group":"","version":"v1","resource":"pods"},"subResource":"binding","name":"web","namespace":"shop","operation":"CREATE","object":{"kind":"Binding","apiVersion":"v1","metadata":{"name":"web","namespace":"shop"},"target":{"kind":"Node","name":"ip-10-0-1-7.ec2.internal"}}}}"#;

fn check(bytes: &[u8]) {
    if let Ok(r) = parse(bytes) {
        assert!(!r.uid.is_empty() && r.uid.len() <= MAX_UID);
        if let Subject::PodSpec { images, .. } = &r.subject {
            assert!(images.len() <= MAX_IMAGES + 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // A known review with the input xored in from a position the first two bytes choose.
    if data.len() > 2 {
        let base = if data[0] & 1 == 0 { POD } else { BINDING };
        let mut t = base.as_bytes().to_vec();
        let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % t.len();
        for (i, b) in data[2..].iter().enumerate() {
            if let Some(x) = t.get_mut(at + i) {
                *x ^= b;
            }
        }
        check(&t);
    }
});
