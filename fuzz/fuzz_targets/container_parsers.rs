#![no_main]
//! The container attestor's parsers of untrusted bytes: a `/proc/<pid>/cgroup` file (cgroup
//! names are chosen by whoever may create cgroups) and the container runtime's Engine API
//! answers. Never a panic; every selector made from an answer is one the verifier accepts.
use libfuzzer_sys::fuzz_target;
use vouch_agent::{ContainerId, container_ids_from_cgroup, parse_container_json, parse_image_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(ids) = container_ids_from_cgroup(&String::from_utf8_lossy(data)) {
        assert!(ids.iter().all(|i| i.as_str().len() == 64));
    }
    let Some(id) =
        ContainerId::parse("9f53d31ab4ba7b0124b0340ca1b1dd7dc089435e1b78d4ec2ab82cfc121c4f93")
    else {
        return;
    };
    if let Ok(mut info) = parse_container_json(&id, data) {
        if let Ok(digests) = parse_image_json(data) {
            info.image_digests = digests;
        }
        for s in info.selectors() {
            assert!(vouch_identity::Selector::parse(&s).is_ok(), "{s:?}");
        }
    }
    if let Ok(digests) = parse_image_json(data) {
        assert!(digests.iter().all(|d| d.len() == 71 && d.starts_with("sha256:")));
    }
});
