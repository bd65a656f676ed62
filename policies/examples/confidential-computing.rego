# Example: a trust domain of confidential VMs and enclaves only.
#
# Accepts only TEE evidence (SEV-SNP, TDX, SGX, Nitro, Azure confidential VMs on SEV-SNP or
# TDX) that is not in debug mode, whose launch
# measurement is registered (`vouch refvalue add tee_measurement <kind> <hex>`), and whose TCB
# is at least the minimums below; an SGX or TDX platform's TCB status must have been judged
# against Intel's collateral (`tee_collateral_dir`) and be up to date; it must not be
# migratable (an SEV-SNP guest that allows a migration agent, a migratable TD), and an SEV-SNP
# report must come from VMPL 0. Use it with
# `vouch policy add cc policies/examples/confidential-computing.rego`, or try it offline:
# `vouch tee verify --kind sev-snp report.bin --cert vcek.der --cert ask_ark.pem --roots roots/
# --policy policies/examples/confidential-computing.rego`.
package vouch.appraisal

import rego.v1

# Minimum security patch levels, per TEE kind and TCB component. An Azure confidential VM's
# (az-snp-vtpm, az-tdx-vtpm) are its hardware report's, so the same as SEV-SNP's and TDX's.
minimum_tcb := {
	"sev-snp": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
	"az-snp-vtpm": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
	"sgx": {"qe_svn": 8, "pce_svn": 13},
	"tdx": {"qe_svn": 0, "pce_svn": 0},
	"az-tdx-vtpm": {"qe_svn": 0, "pce_svn": 0},
}

# The kinds whose TCB status comes from Intel's DCAP collateral, and those with an SEV-SNP
# report (whose VMPL counts).
dcap_kinds := {"sgx", "tdx", "az-tdx-vtpm"}

snp_kinds := {"sev-snp", "az-snp-vtpm"}

deny contains {
	"rule": "tee_required",
	"claim": "hardware",
	"msg": sprintf("evidence of kind %q is not from a TEE", [input.evidence.kind]),
} if {
	not input.tee
}

deny contains {
	"rule": "tee_debug",
	"claim": "hardware",
	"msg": sprintf("%s in debug mode: the host can read its memory", [input.tee.kind]),
} if {
	input.tee.debug == true
}

deny contains {
	"rule": "tee_measurement",
	"claim": "executables",
	"msg": sprintf("%s launch measurement %s is not registered", [input.tee.kind, input.tee.measurement]),
} if {
	input.tee
	not input.tee.measurement in object.get(object.get(data.reference, "tee_measurement", {}), input.tee.kind, [])
}

deny contains {
	"rule": "min_tcb",
	"claim": "hardware",
	"msg": sprintf("%s TCB %s is %v, below %v", [input.tee.kind, component, object.get(input.tee.tcb, component, "absent"), minimum]),
} if {
	some component, minimum in object.get(minimum_tcb, input.tee.kind, {})
	not object.get(input.tee.tcb, component, -1) >= minimum
}

# SGX and TDX: the TCB status DCAP collateral gives (input.tee.tcb.status). A quote whose
# platform has no collateral in the store is "not judged (no collateral)": nothing says the
# platform is patched, so it is refused like an out-of-date one. SWHardeningNeeded (the
# platform is current; the enclave or TD must carry software mitigations) is accepted with a
# warning.
accepted_tcb_status := {"UpToDate", "SWHardeningNeeded"}

deny contains {
	"rule": "tee_tcb_status",
	"claim": "hardware",
	"msg": sprintf("the %s platform's TCB status is %v, not one of %v", [input.tee.kind, object.get(input.tee.tcb, "status", "absent"), accepted_tcb_status]),
} if {
	input.tee.kind in dcap_kinds
	not input.tee.tcb.status in accepted_tcb_status
}

warn contains {
	"rule": "tee_tcb_status",
	"claim": "hardware",
	"msg": sprintf("the %s platform needs software hardening (SWHardeningNeeded): check the advisories %v", [input.tee.kind, object.get(input.tee.details, "advisory_ids", [])]),
} if {
	input.tee.kind in dcap_kinds
	input.tee.tcb.status == "SWHardeningNeeded"
}

deny contains {
	"rule": "tee_migratable",
	"claim": "hardware",
	"msg": sprintf("the %s guest may be migrated to another platform", [input.tee.kind]),
} if {
	input.tee.migratable == true
}

deny contains {
	"rule": "snp_vmpl",
	"claim": "hardware",
	"msg": sprintf("the SEV-SNP report comes from VMPL %v, not VMPL 0", [input.tee.details.vmpl]),
} if {
	input.tee.kind in snp_kinds
	input.tee.details.vmpl != 0
}

trust_vector := {"instance-identity": 2, "executables": 2, "hardware": 2} if {
	input.tee
}
