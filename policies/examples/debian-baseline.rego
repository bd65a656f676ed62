# Example: a self-contained host baseline for Debian machines, with the values written in the
# policy rather than kept as reference values.
#
#   - Debian 12 or later (compared as versions: 12 > 9)
#   - OpenSSL at least the 3.0.15 security update
#   - no telnet daemon running, nothing listening on port 23
#   - the workload listens on 8080
package vouch.appraisal

import rego.v1

min_debian := "12"

min_packages := {"openssl": "3.0.15-1~deb12u1"}

forbidden_processes := {"telnetd", "in.telnetd", "rshd"}

forbidden_ports := {"tcp/23", "tcp/513"}

required_ports := {"tcp/8080"}

port(s) := sprintf("%s/%d", [s.proto, s.port])

deny contains {"rule": "os", "claim": "configuration", "msg": sprintf("OS %s is not Debian", [input.os.id])} if {
	input.os.id != "debian"
}

deny contains {"rule": "os_version", "claim": "configuration", "msg": sprintf("Debian %s is older than %s", [input.os.version_id, min_debian])} if {
	input.os.id == "debian"
	not vouch.version_at_least(input.os.version_id, min_debian)
}

deny contains {"rule": "patch_level", "claim": "configuration", "msg": sprintf("%s %s is older than %s", [name, v, minimum])} if {
	some name, minimum in min_packages
	v := input.packages[name]
	vouch.version_cmp(v, minimum) < 0
}

deny contains {"rule": "forbidden_process", "claim": "executables", "msg": sprintf("%s (pid %d) must not run", [p.name, p.pid])} if {
	some p in input.processes
	p.name in forbidden_processes
}

deny contains {"rule": "forbidden_port", "claim": "configuration", "msg": sprintf("%s is listening on %s", [port(s), s.address])} if {
	some s in input.listening
	port(s) in forbidden_ports
}

deny contains {"rule": "required_port", "claim": "configuration", "msg": sprintf("nothing listens on %s", [p])} if {
	some p in required_ports
	not listening(p)
}

listening(p) if {
	some s in input.listening
	port(s) == p
}

trust_vector := {"instance-identity": 2, "configuration": 2, "executables": 2} if {
	input.evidence.signature_verified
}
