#![no_main]
use libfuzzer_sys::fuzz_target;

// The TCG event log parser, replay, check and claims on arbitrary bytes.
fuzz_target!(|data: &[u8]| {
    if let Ok(log) = vouch_tpm::EventLog::parse(data) {
        let replayed = log.replay();
        let _ = log.check(&replayed);
        for bank in log.banks() {
            let _ = log.claims(bank, &(0..24).collect());
        }
    }
});
