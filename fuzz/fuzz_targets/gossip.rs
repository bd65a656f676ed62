#![no_main]
//! Gossip datagrams as they arrive on the UDP port: any bytes, framed and MAC-checked before
//! chitchat reads them, never a panic; one that verifies is sealed by this key.
use libfuzzer_sys::fuzz_target;
use vouch_rp::gossip::{GossipKey, GossipKeys, open_datagram};

fuzz_target!(|data: &[u8]| {
    let Ok(key) = GossipKey::new(&[7u8; 32]) else {
        return;
    };
    let keys = GossipKeys::new(key);
    let _ = open_datagram(&keys, b"vouch.local", data);
});
