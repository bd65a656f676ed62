# Example: warn, not deny. Processes whose executable is not in the allow list (reference
# values of kind `allowed_executable`, keyed by sha256) make the result `warning`, so a relying
# party that accepts warnings keeps working while operators look into the drift.
package vouch.appraisal

import rego.v1

allowed := object.get(data.reference, "allowed_executable", {})

warn contains {"rule": "unknown_process", "claim": "executables", "msg": sprintf("process %s (pid %d) runs an executable outside the allow list", [p.name, p.pid])} if {
	count(allowed) > 0
	some p in input.processes
	p.exe_sha256
	not allowed[p.exe_sha256]
}

trust_vector := {"instance-identity": 2, "executables": 2} if {
	input.evidence.signature_verified
}
