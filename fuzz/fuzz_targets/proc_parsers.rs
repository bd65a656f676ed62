#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_evidence::parsers::{parse_dpkg_status, parse_os_release, parse_proc_net};

fuzz_target!(|data: &str| {
    let _ = parse_os_release(data);
    let _ = parse_proc_net(data, "tcp", "0A");
    let _ = parse_dpkg_status(data);
});
