# Example: accept only hardware-backed evidence (a TPM quote or a TEE report).
#
# Software-only evidence is signed by the agent's own key, so a compromised host could lie.
# This policy draws the hardware boundary: anything not rooted in hardware is contraindicated.
package vouch.appraisal

import rego.v1

deny contains {
	"rule": "hardware_boundary",
	"claim": "hardware",
	"msg": sprintf("evidence of kind %q is not rooted in hardware; this trust domain accepts only TPM- or TEE-backed evidence", [input.evidence.kind]),
} if {
	not input.evidence.hardware_backed
}

trust_vector := {"instance-identity": 2, "hardware": 2} if {
	input.evidence.signature_verified
	input.evidence.hardware_backed
}
