"""Independent producer of SLSA v1 provenance in DSSE envelopes for crates/vouch-image/tests/provenance.rs.

Uses the PyPI packages in-toto-attestation (the in-toto Statement v1 and the SLSA provenance v1
predicate, both as the project's protobuf messages) and securesystemslib (keys, the DSSE
envelope and its signatures). Usage: slsa_provenance.py ARTIFACT OUTDIR
Writes to OUTDIR: <alg>.pub (PEM SubjectPublicKeyInfo) for ecdsa, ed25519, rsa; good-<alg>.json
signed by that key; and, signed by the ecdsa key, envelopes each wrong in one way:
statement-v01.json, predicate-v02.json, wrong-payload-type.json, other-subject.json.
"""
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf import json_format, struct_pb2
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

artifact, out = sys.argv[1], sys.argv[2]
digest = hashlib.sha256(open(artifact, "rb").read()).hexdigest()

BUILDER = "https://github.com/vouch-test/builder/.github/workflows/build.yml@refs/tags/v1.0.0"
BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
REPO = "https://github.com/vouch-test/app"
REF = "refs/tags/v1.2.0"


def predicate():
    ext = struct_pb2.Struct()
    ext.update({"workflow": {"ref": REF, "repository": REPO, "path": ".github/workflows/release.yml"}})
    p = provenance_pb2.Provenance()
    p.build_definition.build_type = BUILD_TYPE
    p.build_definition.external_parameters.CopyFrom(ext)
    dep = p.build_definition.resolved_dependencies.add()
    dep.uri = "git+" + REPO + "@" + REF
    dep.digest["gitCommit"] = "8f70009fde0c94ade6ce2a054b94718c819126ec"
    p.run_details.builder.id = BUILDER
    p.run_details.metadata.invocation_id = "https://github.com/vouch-test/app/actions/runs/1/attempts/1"
    return json_format.MessageToDict(p)


def statement(sha256=digest):
    subject = ResourceDescriptor(name="app.bin", digest={"sha256": sha256}).pb
    st = Statement([subject], "https://slsa.dev/provenance/v1", predicate())
    st.validate()
    return json.loads(json_format.MessageToJson(st.pb))


def envelope(signer, st, payload_type="application/vnd.in-toto+json"):
    env = Envelope(json.dumps(st).encode(), payload_type, {})
    env.sign(signer)
    return env.to_dict()


def write(name, obj):
    with open(f"{out}/{name}", "w") as f:
        json.dump(obj, f)


keys = {
    "ecdsa": ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=3072),
}
signers = {}
for alg, priv in keys.items():
    with open(f"{out}/{alg}.pub", "wb") as f:
        f.write(priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    signers[alg] = CryptoSigner(priv)
    write(f"good-{alg}.json", envelope(signers[alg], statement()))

ec_signer = signers["ecdsa"]
old = statement()
old["_type"] = "https://in-toto.io/Statement/v0.1"
write("statement-v01.json", envelope(ec_signer, old))
v02 = statement()
v02["predicateType"] = "https://slsa.dev/provenance/v0.2"
write("predicate-v02.json", envelope(ec_signer, v02))
write("wrong-payload-type.json", envelope(ec_signer, statement(), "application/json"))
write("other-subject.json", envelope(ec_signer, statement(hashlib.sha256(b"another artifact").hexdigest())))
print(digest)
