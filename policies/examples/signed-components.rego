# Example: critical components must carry a signature by a trusted signer.
#
# Register the signer's Ed25519 public key once:
#   vouch refvalue add signer release-team <base64url public key>
# and ship `<file>.sig` (base64url Ed25519 signature over the file's raw SHA-256 digest) next to
# the executable and each configuration file. The verifier checks the signatures and reports
# the names of the signers in input.workload.signers and input.files[path].signers.
package vouch.appraisal

import rego.v1

required_signer := "release-team"

deny contains {"rule": "unsigned_executable", "claim": "executables", "msg": sprintf("executable %s is not signed by %s", [input.workload.exe_path, required_signer])} if {
	not required_signer in input.workload.signers
}

deny contains {"rule": "unsigned_config", "claim": "configuration", "msg": sprintf("configuration %s is not signed by %s", [path, required_signer])} if {
	some path, f in input.files
	not required_signer in f.signers
}

trust_vector := {"instance-identity": 2, "executables": 2, "configuration": 2} if {
	input.evidence.signature_verified
}
