# Vouch default appraisal policy.
#
# input           the verified claims of one attestation (docs/POLICY.md lists every field)
# data.reference  reference values: data.reference[KIND][KEY] = [VALUE, ...], managed with
#                 `vouch refvalue add KIND KEY VALUE`
#
# Outputs (the policy contract):
#   deny          findings that make the result contraindicated
#   warn          findings that make the result at least warning
#   trust_vector  the positive AR4SI appraisal; each finding overrides the claim it names
#
# The rules are driven by reference values, so the default policy enforces what an operator has
# registered, except a few fixed ones for what no deployment should accept unawares: unsigned
# or sample evidence, a revoked TEE platform, a TEE that allows debugging, and SEV-SNP evidence
# bound to a vTPM that does not come from VMPL 0. Each says which reference value, if any,
# relaxes it.
package vouch.appraisal

import rego.v1

refs(kind) := object.get(data.reference, kind, {})

# Reference values used while iterating over processes and sockets, looked up once per
# evaluation (rules are memoised; function calls are not).
forbidden_process := refs("forbidden_process")

forbidden_executable := refs("forbidden_executable")

forbidden_port := refs("forbidden_port")

port_key(s) := sprintf("%s/%d", [s.proto, s.port])

# --- instance identity ----------------------------------------------------------------------

# Evidence must be signed by an enrolled agent key (or rooted in hardware).
deny contains f if {
	not input.evidence.signature_verified
	f := {
		"rule": "signed_evidence",
		"claim": "instance-identity",
		"msg": sprintf("evidence of kind %q is not signed by an enrolled key", [input.evidence.kind]),
	}
}

# Sample evidence is for demos and policy tests only.
deny contains f if {
	input.evidence.kind == "sample"
	f := {
		"rule": "sample_evidence",
		"claim": "instance-identity",
		"msg": "sample evidence is unsigned and for demos only; the default policy never accepts it",
	}
}

# --- hardware boundary ------------------------------------------------------------------------

# `vouch refvalue add require_hardware '*' true` demands TPM- or TEE-backed evidence.
deny contains f if {
	refs("require_hardware")["*"]
	not input.evidence.hardware_backed
	f := {
		"rule": "require_hardware",
		"claim": "hardware",
		"msg": "policy requires hardware-backed (TPM or TEE) evidence; this evidence is software-only",
	}
}

# --- TPM PCRs ---------------------------------------------------------------------------------

# `vouch refvalue add pcr sha256:7 <hex>`: a quoted PCR must hold one of its reference values
# (boot chain, Secure Boot policy, or a PCR the workload extends).
deny contains f if {
	input.tpm
	some key, allowed in refs("pcr")
	[bank, index] := split(key, ":")
	value := input.tpm.pcrs[bank][index]
	not value in allowed
	f := {
		"rule": "pcr",
		"claim": "executables",
		"msg": sprintf("PCR %s is %s, not a reference value", [key, value]),
	}
}

deny contains f if {
	input.tpm
	some key, _ in refs("pcr")
	[bank, index] := split(key, ":")
	not input.tpm.pcrs[bank][index]
	f := {
		"rule": "pcr",
		"claim": "executables",
		"msg": sprintf("PCR %s has a reference value but was not quoted; add it to the agent's PCR selection", [key]),
	}
}

# --- measured boot (the firmware event log, replayed to the quoted PCRs) ----------------------

# `vouch refvalue add boot required yes`: TPM evidence must carry an event log that replays.
deny contains f if {
	input.tpm
	refs("boot").required
	not input.tpm.eventlog
	f := {
		"rule": "boot",
		"claim": "executables",
		"msg": "policy requires a measured-boot event log and the evidence has none",
	}
}

# `vouch refvalue add boot secure_boot yes`: the measured SecureBoot variable must be 1.
deny contains f if {
	input.tpm
	refs("boot").secure_boot
	not input.tpm.eventlog.secure_boot == true
	f := {
		"rule": "secure_boot",
		"claim": "configuration",
		"msg": sprintf("policy requires UEFI Secure Boot; the event log says %v", [object.get(object.get(input.tpm, "eventlog", {}), "secure_boot", "nothing")]),
	}
}

# `vouch refvalue add boot_digest boot_loader <sha256>` (or `kernel`): the boot loader or
# kernel that the event log shows in PCR 4 must be one of the registered digests.
deny contains f if {
	input.tpm
	some which, allowed in refs("boot_digest")
	found := object.get(object.get(input.tpm, "eventlog", {}), which, null)
	not found in allowed
	f := {
		"rule": "boot_digest",
		"claim": "executables",
		"msg": sprintf("measured %s is %v, not a reference value", [which, found]),
	}
}

# IMA: files measured since boot that the allow/deny lists (reference kinds `ima_allow`
# path → sha256, `ima_deny` sha256 → reason) refuse. Failures stay until the TPM resets.
deny contains f if {
	some failure in input.tpm.ima.failures
	f := {"rule": "ima", "claim": "executables", "msg": failure}
}

# With IMA reference values registered, TPM evidence must carry an IMA replay: the verifier
# sets `input.tpm.ima` only when the quote came with the log, or when PCR 10 is still where
# its replay of this boot's list left it. Without this, a node that reboots and never sends
# its log would never be appraised against the lists.
deny contains f if {
	input.tpm
	count(refs("ima_allow")) + count(refs("ima_deny")) > 0
	not is_object(input.tpm.ima)
	f := {
		"rule": "ima_required",
		"claim": "executables",
		"msg": "policy has IMA reference values and the evidence has no IMA replay: quote PCR 10 and set the agent's ima_log",
	}
}

# --- executables ------------------------------------------------------------------------------

# The workload's executable must match a registered digest.
deny contains f if {
	allowed := refs("executable")[input.workload.name]
	not input.workload.exe_sha256 in allowed
	f := {
		"rule": "workload_executable",
		"claim": "executables",
		"msg": sprintf("executable %s of workload %q has sha256 %s, which is not a reference value", [input.workload.exe_path, input.workload.name, input.workload.exe_sha256]),
	}
}

# No reference for this workload yet: say so, and how to add one.
warn contains f if {
	not refs("executable")[input.workload.name]
	f := {
		"rule": "workload_executable_unknown",
		"claim": "executables",
		"msg": sprintf("no reference value for workload %q; register it with: vouch refvalue add executable %s %s", [input.workload.name, input.workload.name, input.workload.exe_sha256]),
	}
}

# Forbidden processes, by name.
deny contains f if {
	some p in input.processes
	reason := forbidden_process[p.name]
	f := {
		"rule": "forbidden_process",
		"claim": "executables",
		"msg": sprintf("forbidden process %s (pid %d) is running: %s", [p.name, p.pid, concat("; ", reason)]),
	}
}

# Forbidden executables, by digest (whatever their name).
deny contains f if {
	some p in input.processes
	reason := forbidden_executable[p.exe_sha256]
	f := {
		"rule": "forbidden_executable",
		"claim": "executables",
		"msg": sprintf("process %s (pid %d) runs forbidden executable %s: %s", [p.name, p.pid, p.exe_sha256, concat("; ", reason)]),
	}
}

# Required signatures on the workload's executable.
deny contains f if {
	required := refs("required_signer")[input.workload.name]
	some signer in required
	not signer in input.workload.signers
	f := {
		"rule": "required_signature",
		"claim": "executables",
		"msg": sprintf("executable of workload %q is not signed by %q", [input.workload.name, signer]),
	}
}

# --- container images (input.images, from [image_signatures]) --------------------------------

# `vouch refvalue add require_image_signature '*' true`: a workload that runs from a container
# image must report a digest with a cosign signature by a key the verifier trusts
# (`[image_signatures] keys`); `vouch refvalue add require_image_signature signed_by <key id>`
# accepts only the keys listed (ids as `input.images[].signed_by` shows them).
image_signature_required if refs("require_image_signature")["*"]

image_signature_required if refs("require_image_signature").signed_by

image_key_trusted(img) if {
	not refs("require_image_signature").signed_by
	count(img.signed_by) > 0
}

image_key_trusted(img) if {
	some k in img.signed_by
	k in refs("require_image_signature").signed_by
}

deny contains f if {
	image_signature_required
	some img in object.get(input, "images", [])
	not image_key_trusted(img)
	f := {
		"rule": "require_image_signature",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q is not signed by a trusted key: %s", [img.digest, input.workload.name, object.get(img, "reason", sprintf("signed by %s, none of them a required key", [concat(", ", img.signed_by)]))]),
	}
}

# An image digest no one checked: this verifier has no [image_signatures].
deny contains f if {
	image_signature_required
	digest := input.workload.image_digest
	is_string(digest)
	not input.images
	f := {
		"rule": "require_image_signature",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q: image signatures are required and this verifier checks none ([image_signatures])", [digest, input.workload.name]),
	}
}

# Image digests the workload's running containers report (the agent's container runtime), as
# well as its declared image_digest.
reported_image_digests contains d if {
	d := input.workload.image_digest
	is_string(d)
}

reported_image_digests contains d if {
	some c in object.get(input.workload, "containers", [])
	some d in c.image_digests
}

# A running container whose image has no manifest digest (built locally, never pushed or
# pulled): no signature can name it.
deny contains f if {
	image_signature_required
	some c in object.get(input.workload, "containers", [])
	count(c.image_digests) == 0
	f := {
		"rule": "require_image_signature",
		"claim": "executables",
		"msg": sprintf("container %s of workload %q runs an image with no manifest digest (never pushed to or pulled from a registry): its signature cannot be checked", [c.id, input.workload.name]),
	}
}

# The agent was asked to report this workload's running containers and could not list them
# this round (its container runtime did not answer): the containers it reports (the last list,
# or none) may leave some out, so nothing says every running image is signed.
deny contains f if {
	image_signature_required
	why := object.get(input.workload, "containers_unlisted", null)
	is_string(why)
	f := {
		"rule": "require_image_signature",
		"claim": "executables",
		"msg": sprintf("workload %q: the agent could not list the running containers: %s", [input.workload.name, why]),
	}
}

# Running containers' digests no one checked: this verifier has no [image_signatures].
deny contains f if {
	image_signature_required
	not input.images
	some d in reported_image_digests
	not d == input.workload.image_digest
	f := {
		"rule": "require_image_signature",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q: image signatures are required and this verifier checks none ([image_signatures])", [d, input.workload.name]),
	}
}

# `vouch refvalue add require_provenance_builder '*' <builder id>` (one value per allowed
# builder): every image the workload runs must carry SLSA provenance (attached as cosign does,
# signed by a key of [image_signatures], `provenance = true`) whose builder is one of them;
# `require_provenance_source '*' <repository>` likewise for the source repository.
provenance_builders := object.get(refs("require_provenance_builder"), "*", [])

provenance_sources := object.get(refs("require_provenance_source"), "*", [])

provenance_why(img) := img.provenance.reason if {
	img.provenance.reason
} else := sprintf("built by %s from %v", [img.provenance.builder_id, img.provenance.source_repo]) if {
	img.provenance.builder_id
} else := "this verifier checks no provenance ([image_signatures] provenance = true)"

deny contains f if {
	count(provenance_builders) > 0
	some img in object.get(input, "images", [])
	not img.provenance.builder_id in provenance_builders
	f := {
		"rule": "require_provenance_builder",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q has no provenance from an allowed builder: %s", [img.digest, input.workload.name, provenance_why(img)]),
	}
}

deny contains f if {
	count(provenance_sources) > 0
	some img in object.get(input, "images", [])
	not img.provenance.source_repo in provenance_sources
	f := {
		"rule": "require_provenance_source",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q has no provenance from an allowed source repository: %s", [img.digest, input.workload.name, provenance_why(img)]),
	}
}

# Provenance required and a running container whose image has no manifest digest (built
# locally, never pushed or pulled): no provenance can name it.
deny contains f if {
	count(provenance_builders) + count(provenance_sources) > 0
	some c in object.get(input.workload, "containers", [])
	count(c.image_digests) == 0
	rule := provenance_rule
	f := {
		"rule": rule,
		"claim": "executables",
		"msg": sprintf("container %s of workload %q runs an image with no manifest digest (never pushed to or pulled from a registry): no provenance can name it", [c.id, input.workload.name]),
	}
}

# Provenance required and the agent could not list the workload's running containers.
deny contains f if {
	count(provenance_builders) + count(provenance_sources) > 0
	why := object.get(input.workload, "containers_unlisted", null)
	is_string(why)
	rule := provenance_rule
	f := {
		"rule": rule,
		"claim": "executables",
		"msg": sprintf("workload %q: the agent could not list the running containers: %s", [input.workload.name, why]),
	}
}

provenance_rule := "require_provenance_builder" if {
	count(provenance_builders) > 0
} else := "require_provenance_source"

# Provenance required and image digests reported that no one checked.
deny contains f if {
	count(provenance_builders) + count(provenance_sources) > 0
	not input.images
	some d in reported_image_digests
	f := {
		"rule": "require_provenance_builder",
		"claim": "executables",
		"msg": sprintf("container image %s of workload %q: provenance is required and this verifier checks none ([image_signatures])", [d, input.workload.name]),
	}
}

# --- configuration ----------------------------------------------------------------------------

# Measured configuration files must match a registered digest.
deny contains f if {
	some path, allowed in refs("file")
	m := input.files[path]
	not m.sha256 in allowed
	f := {
		"rule": "config_file",
		"claim": "configuration",
		"msg": sprintf("file %s has sha256 %v, expected one of %v", [path, m.sha256, allowed]),
	}
}

# Files a workload must measure.
deny contains f if {
	some path in refs("required_file")[input.workload.name]
	not input.files[path]
	f := {
		"rule": "required_file",
		"claim": "configuration",
		"msg": sprintf("workload %q must measure %s but the evidence does not include it", [input.workload.name, path]),
	}
}

# A measured file could not be read.
warn contains f if {
	some path, m in input.files
	is_string(m.error)
	f := {
		"rule": "file_unreadable",
		"claim": "configuration",
		"msg": sprintf("file %s could not be read by the agent: %s", [path, m.error]),
	}
}

# Required signatures on configuration files.
deny contains f if {
	some path, required in refs("required_signer")
	m := input.files[path]
	some signer in required
	not signer in m.signers
	f := {
		"rule": "required_signature",
		"claim": "configuration",
		"msg": sprintf("file %s is not signed by %q", [path, signer]),
	}
}

# Minimum OS version, per OS id, compared as versions (9 < 12).
deny contains f if {
	some minimum in refs("min_os_version")[input.os.id]
	not vouch.version_at_least(input.os.version_id, minimum)
	f := {
		"rule": "min_os_version",
		"claim": "configuration",
		"msg": sprintf("%s %s is older than the minimum %s", [input.os.id, input.os.version_id, minimum]),
	}
}

# Minimum package versions (patch level), compared in dpkg order.
deny contains f if {
	some pkg, minimums in refs("min_package")
	some minimum in minimums
	installed := input.packages[pkg]
	not vouch.version_at_least(installed, minimum)
	f := {
		"rule": "min_package",
		"claim": "configuration",
		"msg": sprintf("package %s %s is older than the minimum %s", [pkg, installed, minimum]),
	}
}

deny contains f if {
	some pkg, minimums in refs("min_package")
	not input.packages[pkg]
	f := {
		"rule": "min_package",
		"claim": "configuration",
		"msg": sprintf("package %s (minimum %s) is required but not installed", [pkg, concat(", ", minimums)]),
	}
}

# Forbidden listening ports ("tcp/23").
deny contains f if {
	some s in input.listening
	reason := forbidden_port[port_key(s)]
	f := {
		"rule": "forbidden_port",
		"claim": "configuration",
		"msg": sprintf("forbidden port %s is listening on %s: %s", [port_key(s), s.address, concat("; ", reason)]),
	}
}

# Ports a workload must listen on, per workload name.
deny contains f if {
	some key in refs("required_port")[input.workload.name]
	not listening_on(key)
	f := {
		"rule": "required_port",
		"claim": "configuration",
		"msg": sprintf("workload %q must listen on %s but nothing listens there", [input.workload.name, key]),
	}
}

listening_on(key) if {
	some s in input.listening
	port_key(s) == key
}

# --- confidential computing (input.tee) ---------------------------------------------------------

# A debug TEE lets the host read and write its memory (for SEV-SNP, `debug` is the guest
# policy's DEBUG bit: debugging allowed, which the host can use at any time): contraindicated,
# and never affirming even where an operator accepts it for development
# (`vouch refvalue add allow_tee_debug '*' true` turns the refusal into a warning).
deny contains f if {
	input.tee.debug == true
	not refs("allow_tee_debug")["*"]
	f := {
		"rule": "tee_debug",
		"claim": "hardware",
		"msg": sprintf("the %s TEE allows debugging: its memory is open to the host", [input.tee.kind]),
	}
}

warn contains f if {
	input.tee.debug == true
	refs("allow_tee_debug")["*"]
	f := {
		"rule": "tee_debug",
		"claim": "hardware",
		"msg": sprintf("the %s TEE allows debugging (accepted by allow_tee_debug, for development only): its memory is open to the host", [input.tee.kind]),
	}
}

# A guest that may migrate (SEV-SNP: the guest policy allows a migration agent, MIGRATE_MA; TDX:
# a migratable TD) can be moved to another platform by software outside this report's
# measurement, which then holds its keys: a warning by default. `vouch refvalue add
# tee_migration <kind or *> allow` accepts it, `... deny` refuses it (a kind's own value is
# read before `*`).
tee_migration := object.get(refs("tee_migration"), input.tee.kind, object.get(refs("tee_migration"), "*", []))

deny contains f if {
	input.tee.migratable == true
	"deny" in tee_migration
	f := {
		"rule": "tee_migration",
		"claim": "hardware",
		"msg": sprintf("the %s guest may be migrated to another platform (a migration agent or migration TD), which tee_migration denies", [input.tee.kind]),
	}
}

warn contains f if {
	input.tee.migratable == true
	not "deny" in tee_migration
	not "allow" in tee_migration
	f := {
		"rule": "tee_migration",
		"claim": "hardware",
		"msg": sprintf("the %s guest may be migrated to another platform (a migration agent or migration TD); accept it with: vouch refvalue add tee_migration %s allow, or refuse it with ... deny", [input.tee.kind, input.tee.kind]),
	}
}

# Composite evidence (a confidential VM and its vTPM): the SEV-SNP report must come from VMPL 0,
# the layer that owns the vTPM (an SVSM or paravisor). A report from VMPL 1-3 was requested by
# less privileged guest software, which chose the AK name it binds; the vTPM's owner did not.
deny contains f if {
	input.evidence.kind == "composite"
	input.tee.kind == "sev-snp"
	not input.tee.details.vmpl == 0
	f := {
		"rule": "snp_vmpl",
		"claim": "hardware",
		"msg": sprintf("the SEV-SNP report bound to the vTPM comes from VMPL %v, not from VMPL 0 (the layer that owns the vTPM)", [object.get(object.get(input.tee, "details", {}), "vmpl", "absent")]),
	}
}

# The launch measurement (SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE, Nitro PCR0) must be one
# registered for its kind: `vouch refvalue add tee_measurement sev-snp <hex>`.
deny contains f if {
	input.tee
	allowed := refs("tee_measurement")[input.tee.kind]
	not input.tee.measurement in allowed
	f := {
		"rule": "tee_measurement",
		"claim": "executables",
		"msg": sprintf("%s launch measurement %s is not a registered one", [input.tee.kind, input.tee.measurement]),
	}
}

warn contains f if {
	input.tee
	not refs("tee_measurement")[input.tee.kind]
	f := {
		"rule": "tee_measurement_unknown",
		"claim": "executables",
		"msg": sprintf("no reference launch measurement for %s; register it with: vouch refvalue add tee_measurement %s %s", [input.tee.kind, input.tee.kind, input.tee.measurement]),
	}
}

# DCAP collateral judged the platform's TCB (input.tee.tcb.status): a revoked platform is never
# trusted; anything but UpToDate is a warning naming the status.
deny contains f if {
	input.tee.tcb.status == "Revoked"
	f := {"rule": "tee_tcb_status", "claim": "hardware", "msg": sprintf("the %s platform's TCB is revoked", [input.tee.kind])}
}

warn contains f if {
	status := input.tee.tcb.status
	not status in {"UpToDate", "Revoked"}
	f := {"rule": "tee_tcb_status", "claim": "hardware", "msg": sprintf("the %s platform's TCB status is %s", [input.tee.kind, status])}
}

# `vouch refvalue add require_tee_revocation '*' true`: TEE evidence must have been checked
# against its vendor's CRLs (SEV-SNP: an AMD CRL in the offline store; SGX/TDX: DCAP
# collateral; Nitro has none, so it is refused under this rule).
deny contains f if {
	refs("require_tee_revocation")["*"]
	input.tee
	not input.tee.revocation_checked == true
	f := {
		"rule": "tee_revocation",
		"claim": "hardware",
		"msg": sprintf("the %s evidence was not checked against a vendor CRL; put the vendor's CRL (or DCAP collateral) in tee_collateral_dir", [input.tee.kind]),
	}
}

# Minimum TCB: `vouch refvalue add min_tee_tcb sev-snp.snp 8` (components: sev-snp bootloader,
# tee, snp, microcode; sgx isv_svn, qe_svn, pce_svn; tdx qe_svn, pce_svn).
deny contains f if {
	input.tee
	some key, values in refs("min_tee_tcb")
	startswith(key, sprintf("%s.", [input.tee.kind]))
	component := substring(key, count(input.tee.kind) + 1, -1)
	some v in values
	minimum := to_number(v)
	not object.get(input.tee.tcb, component, -1) >= minimum
	f := {
		"rule": "min_tee_tcb",
		"claim": "hardware",
		"msg": sprintf("%s TCB component %s is %v, below the minimum %v", [input.tee.kind, component, object.get(input.tee.tcb, component, "absent"), minimum]),
	}
}

# --- positive appraisal -----------------------------------------------------------------------

trust_vector := {
	"instance-identity": 2,
	"configuration": 2,
	"executables": 2,
	"hardware": hardware,
} if {
	input.evidence.signature_verified
}

hardware := 2 if input.evidence.hardware_backed

else := 0
