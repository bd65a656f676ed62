//! Evidence as it crosses the wire, and the software measurements an agent signs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::UnixSeconds;

/// Largest evidence payload (decoded) a verifier accepts, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 4 * 1024 * 1024;

/// The kind of evidence; each kind has one verifier module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceKind {
    /// Software measurements signed by the agent's enrolled Ed25519 key.
    Software,
    /// Software measurements bound into a TPM 2.0 quote by an activated AK (hybrid), also
    /// signed by the agent key.
    Tpm,
    /// Unsigned sample evidence for demos and tests; the default policy rejects it.
    Sample,
    /// Software measurements bound into a TEE report (SEV-SNP, TDX, SGX, Nitro) through its
    /// report data, also signed by the agent key.
    Tee,
    /// One attester with two roots of trust: a TPM quote (a confidential VM's vTPM) and a TEE
    /// report that binds the same nonce, agent key, measurements and the quoting AK, also
    /// signed by the agent key. Appraised as one result with a submodule per component.
    Composite,
}

impl EvidenceKind {
    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Tpm => "tpm",
            Self::Sample => "sample",
            Self::Tee => "tee",
            Self::Composite => "composite",
        }
    }
}

/// Signed evidence sent by an agent to `POST /v1/attest`.
///
/// `payload` is the unpadded base64url encoding of the JSON measurements exactly as signed, so
/// the verifier checks the signature over the bytes it received and never over a re-encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Which evidence kind this is.
    pub kind: EvidenceKind,
    /// Identifier of the enrolled agent key that signed the evidence.
    pub key_id: String,
    /// base64url(JSON of the kind's measurements, e.g. [`SoftwareMeasurements`]).
    pub payload: String,
    /// base64url(Ed25519 signature over [`evidence_signing_input`]).
    pub signature: String,
}

/// The exact bytes an agent signs: a domain-separation prefix, the kind, and the encoded payload.
pub fn evidence_signing_input(kind: EvidenceKind, payload_b64: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + payload_b64.len());
    v.extend_from_slice(b"vouch-evidence-v1\0");
    v.extend_from_slice(kind.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(payload_b64.as_bytes());
    v
}

/// Measurements of one machine and one workload on it, signed by the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftwareMeasurements {
    /// The verifier's nonce this evidence answers.
    pub nonce: String,
    /// When the agent collected the measurements (Unix seconds, agent clock).
    pub collected_at: UnixSeconds,
    /// Host name of the machine.
    pub hostname: String,
    /// The workload being attested.
    pub workload: WorkloadMeasurement,
    /// Named files (configuration) and their digests.
    #[serde(default)]
    pub files: Vec<FileMeasurement>,
    /// `/etc/os-release` fields.
    pub os: OsRelease,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Running processes.
    #[serde(default)]
    pub processes: Vec<ProcessInfo>,
    /// Listening TCP sockets and bound UDP sockets.
    #[serde(default)]
    pub listening: Vec<ListeningSocket>,
    /// Installed packages, name to version (dpkg status when present).
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// Parts sent by digest instead of in full, because the verifier said it holds them
    /// (`held_parts` of its last result): part name (one of [`MEASUREMENT_PARTS`]) to the
    /// lowercase hex SHA-256 of the part's JSON ([`part_digests`]). A part named here is
    /// empty above; the verifier puts back what it holds under that digest, or refuses the
    /// evidence with `parts_unknown`. The signature covers the digests, and so the content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
    /// Only in evidence that asks for a secret (`POST /v1/secrets/release`): base64url of the
    /// raw 32-byte X25519 public key (HPKE, RFC 9180) the secret is to be sealed to, fresh for
    /// this request. Inside the measurements, so every evidence kind binds it as it binds the
    /// nonce: the agent's signature over the payload, a quote's `extraData`, a TEE's report
    /// data. The verifier seals only to the key the evidence bound, never to one the request
    /// names beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_key: Option<String>,
}

/// The parts of [`SoftwareMeasurements`] an agent may send by digest: the large ones that
/// rarely change between two attestations of a node.
pub const MEASUREMENT_PARTS: [&str; 4] = ["files", "processes", "listening", "packages"];

/// Each part of `m` named in [`MEASUREMENT_PARTS`] with the lowercase hex SHA-256 of its JSON
/// (as `serde_json` writes it), in that order.
pub fn part_digests(m: &SoftwareMeasurements) -> [(&'static str, String); 4] {
    [
        ("files", part_digest(&m.files)),
        ("processes", part_digest(&m.processes)),
        ("listening", part_digest(&m.listening)),
        ("packages", part_digest(&m.packages)),
    ]
}

/// Send each part of `m` whose digest is the one `held` names for it (what the verifier said
/// it holds) by that digest instead of in full: the part is emptied and listed in `m.held`.
pub fn send_held_parts_by_digest(m: &mut SoftwareMeasurements, held: &BTreeMap<String, String>) {
    if held.is_empty() {
        return;
    }
    for (name, digest) in part_digests(m) {
        if held.get(name) == Some(&digest) {
            match name {
                "files" => m.files.clear(),
                "processes" => m.processes.clear(),
                "listening" => m.listening.clear(),
                _ => m.packages.clear(),
            }
            m.held.insert(name.to_string(), digest);
        }
    }
}

/// The lowercase hex SHA-256 of one part's JSON (as `serde_json` writes it).
pub fn part_digest<T: Serialize + ?Sized>(part: &T) -> String {
    let mut h = Sha256::new();
    // Writing JSON into a hash cannot fail for these types.
    let _ = serde_json::to_writer(&mut h, part);
    hex::encode(h.finalize())
}

/// The attested workload: its name, executable and (optionally) container image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadMeasurement {
    /// Workload name, unique on its node.
    pub name: String,
    /// Absolute path of the workload's executable.
    pub exe_path: String,
    /// SHA-256 of the executable, lowercase hex.
    pub exe_sha256: String,
    /// base64url Ed25519 signature over the raw 32-byte digest, from `<exe>.sig`, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_signature: Option<String>,
    /// Container image digest (`sha256:…`), when the workload runs from an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The running containers the agent's container runtime reports for this workload, each
    /// with its image's manifest digests (what the agent observed; absent from older agents'
    /// evidence). At most [`MAX_WORKLOAD_CONTAINERS`], each with at most
    /// [`MAX_CONTAINER_DIGESTS`] digests: more is refused when parsed.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded_containers"
    )]
    pub containers: Vec<ContainerImage>,
    /// Why the agent could not list this workload's running containers this round (its
    /// container runtime did not answer), when it was asked to report them and could not:
    /// `containers` is then the last list it got, or empty, and may leave running containers
    /// out. Absent when listed (and from older agents' evidence). At most
    /// [`MAX_CONTAINERS_UNLISTED`] bytes: more is refused when parsed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded_unlisted"
    )]
    pub containers_unlisted: Option<String>,
}

/// Longest reason [`WorkloadMeasurement::containers_unlisted`] may carry, in bytes.
pub const MAX_CONTAINERS_UNLISTED: usize = 256;

fn bounded_unlisted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    let v = Option::<String>::deserialize(d)?;
    if let Some(s) = &v
        && s.len() > MAX_CONTAINERS_UNLISTED
    {
        return Err(D::Error::custom(format!(
            "containers_unlisted: {} bytes, more than {MAX_CONTAINERS_UNLISTED}",
            s.len()
        )));
    }
    Ok(v)
}

/// Most containers one workload's evidence may list (as many as the agent reads from one
/// listing of its runtime, so it never leaves a running container out).
pub const MAX_WORKLOAD_CONTAINERS: usize = 256;
/// Most image digests one listed container may have.
pub const MAX_CONTAINER_DIGESTS: usize = 8;
const MAX_CONTAINER_FIELD: usize = 128;

/// One running container of a workload, as the agent's container runtime reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerImage {
    /// The container's id (64 hex, as the runtime names it).
    pub id: String,
    /// Its image's manifest digests (`sha256:<hex>`, the repo digests the runtime knows).
    #[serde(default)]
    pub image_digests: Vec<String>,
}

fn bounded_containers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ContainerImage>, D::Error> {
    use serde::de::Error as _;
    let v = Vec::<ContainerImage>::deserialize(d)?;
    if v.len() > MAX_WORKLOAD_CONTAINERS {
        return Err(D::Error::custom(format!(
            "{} containers, more than {MAX_WORKLOAD_CONTAINERS}",
            v.len()
        )));
    }
    for c in &v {
        if c.id.len() > MAX_CONTAINER_FIELD
            || c.image_digests.len() > MAX_CONTAINER_DIGESTS
            || c.image_digests
                .iter()
                .any(|x| x.len() > MAX_CONTAINER_FIELD)
        {
            return Err(D::Error::custom(format!(
                "container {:?}: id or digests longer than {MAX_CONTAINER_FIELD}, or more \
                 than {MAX_CONTAINER_DIGESTS} digests",
                crate::clip(&c.id, 64)
            )));
        }
    }
    Ok(v)
}

/// One measured file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeasurement {
    /// Absolute path.
    pub path: String,
    /// SHA-256 of the content, lowercase hex; `None` when the file could not be read.
    pub sha256: Option<String>,
    /// base64url Ed25519 signature over the raw digest, from `<path>.sig`, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why the file could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The identifying fields of `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`.
    pub version_id: String,
    /// `PRETTY_NAME`.
    #[serde(default)]
    pub pretty_name: String,
}

/// One running process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub name: String,
    /// Executable path, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// SHA-256 of the executable, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
}

/// One listening socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningSocket {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Local address, e.g. `0.0.0.0` or `::1`.
    pub address: String,
    /// Local port.
    pub port: u16,
}

/// The payload of `tpm` evidence.
///
/// `measurements` is base64url of the software measurements' JSON bytes; the quote's
/// `extraData` is [`tpm_extra_data`] over the nonce, the agent key and exactly those bytes, so
/// the software claims are hardware-backed only through the quote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmPayload {
    /// base64url(JSON of [`SoftwareMeasurements`]).
    pub measurements: String,
    /// base64url of the marshalled `TPMS_ATTEST`.
    pub attest: String,
    /// base64url of the marshalled `TPMT_SIGNATURE`.
    pub quote_signature: String,
    /// Quoted PCR values: bank (`sha256`) → PCR index → hex digest.
    pub pcrs: BTreeMap<String, BTreeMap<u8, String>>,
    /// IMA measurement-list lines from entry `start` on (`ascii_runtime_measurements`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima: Option<ImaSlice>,
    /// base64url of the firmware event log (`binary_bios_measurements`), when the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<String>,
}

/// The payload of `tee` evidence (base64url JSON inside [`Evidence::payload`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeePayload {
    /// `sev-snp`, `tdx`, `sgx` or `nitro`.
    pub tee: String,
    /// base64url(JSON of [`SoftwareMeasurements`]).
    pub measurements: String,
    /// base64url of the report, quote or attestation document, as the TEE produced it.
    pub report: String,
    /// base64url DER certificates the report needs (SEV-SNP: the VEK, then the ASK or ASVK).
    #[serde(default)]
    pub certs: Vec<String>,
}

/// A TEE report as it crosses the wire, inside [`CompositePayload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeReport {
    /// `sev-snp`, `tdx`, `sgx` or `nitro`.
    pub tee: String,
    /// base64url of the report, quote or attestation document, as the TEE produced it.
    pub report: String,
    /// base64url DER certificates the report needs (SEV-SNP: the VEK, then the ASK or ASVK).
    #[serde(default)]
    pub certs: Vec<String>,
}

/// The payload of `composite` evidence: a TPM quote (whose `extraData` is [`tpm_extra_data`],
/// as for `tpm` evidence) and a TEE report whose report data is [`composite_report_data`]
/// over the same nonce, agent key and measurements and the name of the AK that quoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositePayload {
    /// The TPM part, with the measurements.
    pub tpm: TpmPayload,
    /// The TEE part.
    pub tee: TeeReport,
}

/// One component of an attester made of several (`composite` evidence): its submodule name
/// in the result and how its claims differ from the whole's, namely its own evidence kind
/// (`input.evidence.kind`) and the other components' claims left out. The policy appraises
/// each component on the whole's claims so changed, as if that part had come alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentView {
    /// Submodule name (`tpm`, `sev-snp`, …).
    pub name: String,
    /// The evidence kind the component would be alone.
    pub kind: EvidenceKind,
    /// Top-level claims of the other components, left out (`tee` for the TPM part).
    pub without: Vec<String>,
}

impl ComponentView {
    /// The component's claims, made from the whole's (JSON).
    pub fn apply(&self, whole: &serde_json::Value) -> serde_json::Value {
        let mut v = whole.clone();
        if let Some(o) = v.as_object_mut() {
            for k in &self.without {
                o.remove(k);
            }
            if let Some(e) = o.get_mut("evidence").and_then(|e| e.as_object_mut()) {
                e.insert("kind".into(), self.kind.as_str().into());
            }
        }
        v
    }
}

/// The 64 bytes the TEE report of `composite` evidence must carry as its report data:
/// `SHA-512("vouch-composite-v1" 0x00 ‖ nonce ‖ 0 ‖ agent key ‖ SHA-256(measurements) ‖
/// AK name)`, where the AK name is the TPM name (nameAlg ‖ digest of the public area) of the
/// key that signed the quote.
pub fn composite_report_data(
    nonce: &str,
    agent_public_key: &[u8],
    measurements_json: &[u8],
    ak_name: &[u8],
) -> Vec<u8> {
    binding::<sha2::Sha512>(
        b"vouch-composite-v1\0",
        nonce,
        agent_public_key,
        measurements_json,
        ak_name,
    )
}

/// The 64 bytes a TEE report must carry as its report data (SEV-SNP REPORT_DATA, TDX/SGX
/// REPORTDATA, Nitro `nonce`): SHA-512 over the nonce, the agent key and the measurements.
pub fn tee_report_data(nonce: &str, agent_public_key: &[u8], measurements_json: &[u8]) -> Vec<u8> {
    binding::<sha2::Sha512>(
        b"vouch-tee-v1\0",
        nonce,
        agent_public_key,
        measurements_json,
        &[],
    )
}

/// `H(label ‖ nonce ‖ 0 ‖ agent key ‖ SHA-256(measurements) ‖ tail)`: what hardware evidence
/// binds (a quote's `extraData`, a TEE's report data).
fn binding<H: sha2::Digest>(
    label: &[u8],
    nonce: &str,
    agent_public_key: &[u8],
    measurements_json: &[u8],
    tail: &[u8],
) -> Vec<u8> {
    let mut h = H::new();
    h.update(label);
    h.update(nonce.as_bytes());
    h.update([0]);
    h.update(agent_public_key);
    h.update(<sha2::Sha256 as sha2::Digest>::digest(measurements_json));
    h.update(tail);
    h.finalize().to_vec()
}

/// A slice of the IMA measurement list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaSlice {
    /// Index of the first entry in `log` (0 = from boot).
    pub start: u64,
    /// The lines.
    pub log: String,
}

/// The quote's `extraData` for `tpm` evidence:
/// `SHA-256("vouch-tpm-v1" 0x00 || nonce || 0 || agent public key || SHA-256(measurements))`.
pub fn tpm_extra_data(nonce: &str, agent_public_key: &[u8], measurements_json: &[u8]) -> Vec<u8> {
    binding::<sha2::Sha256>(
        b"vouch-tpm-v1\0",
        nonce,
        agent_public_key,
        measurements_json,
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256, Sha512};

    /// The three bindings, written out once more by hand: a change to any input changes them,
    /// and no two kinds give the same bytes for the same inputs.
    #[test]
    fn bindings_are_the_documented_hashes() {
        let m = br#"{"nonce":"n"}"#;
        let by_hand = |label: &[u8], tail: &[u8], sha512: bool| {
            let mut v = label.to_vec();
            v.extend_from_slice(b"nonce\0key");
            v.extend_from_slice(&Sha256::digest(m));
            v.extend_from_slice(tail);
            if sha512 {
                Sha512::digest(&v).to_vec()
            } else {
                Sha256::digest(&v).to_vec()
            }
        };
        let tpm = tpm_extra_data("nonce", b"key", m);
        let tee = tee_report_data("nonce", b"key", m);
        let comp = composite_report_data("nonce", b"key", m, b"ak");
        assert_eq!(tpm, by_hand(b"vouch-tpm-v1\0", b"", false));
        assert_eq!(tee, by_hand(b"vouch-tee-v1\0", b"", true));
        assert_eq!(comp, by_hand(b"vouch-composite-v1\0", b"ak", true));
        assert_eq!((tpm.len(), tee.len(), comp.len()), (32, 64, 64));
        assert_ne!(comp, composite_report_data("nonce", b"key", m, b"ak2"));
        assert_ne!(tee, tee_report_data("nonc", b"ekey", m));
    }
}

#[cfg(test)]
mod container_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn workload(containers: serde_json::Value) -> Result<WorkloadMeasurement, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "name": "w", "exe_path": "/bin/w", "exe_sha256": "00", "containers": containers,
        }))
    }

    #[test]
    fn containers_are_optional_bounded_and_leave_old_evidence_unchanged() {
        // An older agent's workload (no `containers`) parses, and serializes back the same:
        // part digests and signatures over it do not change.
        let old = serde_json::json!({"name": "w", "exe_path": "/bin/w", "exe_sha256": "00"});
        let w: WorkloadMeasurement = serde_json::from_value(old.clone()).unwrap();
        assert!(w.containers.is_empty());
        assert_eq!(serde_json::to_value(&w).unwrap(), old);

        let one = |n: usize| serde_json::json!({"id": "c".repeat(64), "image_digests": vec![format!("sha256:{}", "a".repeat(64)); n]});
        let ok = workload(serde_json::json!(vec![one(8); 256])).unwrap();
        assert_eq!(ok.containers.len(), 256);
        let e = workload(serde_json::json!(vec![one(1); 257])).unwrap_err();
        assert!(
            e.to_string().contains("257 containers, more than 256"),
            "{e}"
        );
        let e = workload(serde_json::json!([one(9)])).unwrap_err();
        assert!(e.to_string().contains("more than 8 digests"), "{e}");
        let e = workload(serde_json::json!([{"id": "c".repeat(129), "image_digests": []}]))
            .unwrap_err();
        assert!(e.to_string().contains("longer than 128"), "{e}");
        // Unknown fields in a container are refused as elsewhere in the evidence.
        assert!(workload(serde_json::json!([{"id": "c", "image": "x"}])).is_err());

        // `containers_unlisted`: absent from the old workload above (so its JSON is unchanged),
        // kept when set, bounded, and omitted again when None.
        let mut v = old.clone();
        v["containers_unlisted"] = serde_json::json!("r".repeat(256));
        let w: WorkloadMeasurement = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            w.containers_unlisted.as_deref(),
            Some("r".repeat(256).as_str())
        );
        assert_eq!(serde_json::to_value(&w).unwrap(), v);
        v["containers_unlisted"] = serde_json::json!("r".repeat(257));
        let e = serde_json::from_value::<WorkloadMeasurement>(v.clone()).unwrap_err();
        assert!(e.to_string().contains("257 bytes, more than 256"), "{e}");
        v["containers_unlisted"] = serde_json::Value::Null;
        let w: WorkloadMeasurement = serde_json::from_value(v).unwrap();
        assert_eq!(serde_json::to_value(&w).unwrap(), old);
        // The part digest of an old workload does not move with the new field.
        let none = WorkloadMeasurement {
            name: "w".into(),
            exe_path: "/bin/w".into(),
            exe_sha256: "00".into(),
            ..Default::default()
        };
        assert_eq!(part_digest(&none), part_digest(&old));
        let unlisted = WorkloadMeasurement {
            containers_unlisted: Some("down".into()),
            ..none.clone()
        };
        assert_ne!(part_digest(&unlisted), part_digest(&none));
    }
}
