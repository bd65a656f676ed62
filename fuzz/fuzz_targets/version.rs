#![no_main]
use libfuzzer_sys::fuzz_target;

// Version strings come from evidence (package lists); ordering must be total and never panic.
fuzz_target!(|data: (&str, &str)| {
    let (a, b) = data;
    let ab = vouch_core::compare_versions(a, b);
    assert_eq!(ab.reverse(), vouch_core::compare_versions(b, a));
    assert_eq!(
        vouch_core::compare_versions(a, a),
        std::cmp::Ordering::Equal
    );
});
