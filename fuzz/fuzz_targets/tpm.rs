#![no_main]
use libfuzzer_sys::fuzz_target;

// Every TPM structure parser and the quote verifier on arbitrary bytes.
fuzz_target!(|data: &[u8]| {
    let _ = vouch_tpm::TpmsAttest::parse(data);
    let _ = vouch_tpm::TpmtSignature::parse(data);
    let _ = vouch_tpm::TpmtPublic::from_tpm2b(data);
    let _ = vouch_tpm::TpmtPublic::parse(data);
    let _ = vouch_tpm::parse_tpm2_tools_pcrs(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(entries) = vouch_tpm::parse_ima_log(text)
    {
        let quoted = [(vouch_tpm::HashAlg::Sha256, vec![0u8; 32])];
        let _ = vouch_tpm::ImaState::default().replay_to(&entries, &quoted);
    }
    if data.len() > 4 {
        let (a, b) = data.split_at(data.len() / 2);
        let ak = vouch_tpm::Ak::from_spki(b);
        let _ = vouch_tpm::verify_quote(
            &ak,
            a,
            b,
            &vouch_tpm::PcrValues::default(),
            &[],
            &vouch_tpm::QuotePolicy::default(),
        );
    }
    let store = vouch_tpm::EkTrustStore::default();
    if let Ok(ek) = vouch_tpm::TpmtPublic::parse(&[
        0, 1, 0, 11, 0, 5, 0, 114, 0, 0, 0, 16, 0, 16, 8, 0, 0, 0, 0, 0, 0, 0,
    ]) {
        let _ = store.verify(data, &ek, 0);
    }
});
