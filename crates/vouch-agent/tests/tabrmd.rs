//! The agent's TPM through the `tabrmd` TCTI (tpm2-abrmd in front of an swtpm): EK, AK,
//! quote and credential activation as on a host that runs the resource manager. One test in
//! this binary: the TCTI reads the bus address from the process environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_agent::{Tpm, TpmConfig};
use vouch_testkit::{Swtpm, Tabrmd};
use vouch_tpm::{
    Ak, QuotePolicy, RH_ENDORSEMENT, TpmtPublic, make_credential, qualified_name, verify_quote,
};

#[test]
fn the_agent_works_through_the_tabrmd_resource_manager() {
    let sw = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let broker = Tabrmd::start(&sw, dir.path());
    // SAFETY: the only test in this process, before any TPM or D-Bus use.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &broker.bus_address) };
    let state = tempfile::tempdir().unwrap();
    let tpm = Tpm::new(
        TpmConfig {
            tcti: broker.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![0, 7],
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        },
        state.path(),
    );
    let id = tpm.identity().unwrap();
    let ek = TpmtPublic::from_tpm2b(&id.ek_public).unwrap();
    let ak = TpmtPublic::from_tpm2b(&id.ak_public).unwrap();
    assert!(
        id.ek_cert.is_some(),
        "EK certificate read from NV through the broker"
    );
    let nonce = [5u8; 32];
    let q = tpm.quote(&nonce).unwrap();
    let parent = qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name());
    verify_quote(
        &Ak::from_public(&ak, &parent).unwrap(),
        &q.attest,
        &q.signature,
        &q.pcrs,
        &nonce,
        &QuotePolicy::default(),
    )
    .unwrap();
    let secret = [0x11; 32];
    let made = make_credential(&ek, &ak.name(), &secret, &[3; 32]).unwrap();
    assert_eq!(
        tpm.activate_credential(&made.id_object, &made.encrypted_secret)
            .unwrap(),
        secret
    );
}
