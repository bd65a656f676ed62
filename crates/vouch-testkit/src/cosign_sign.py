#!/usr/bin/env python3
"""An independent cosign-format signer for the registry test.

Debian's skopeo and podman refuse to sign with a sigstore key ("Debian-local change:
sigstore disabled"), so this plays cosign's part with Python's `cryptography` (OpenSSL):
it writes the simple-signing payload cosign writes, signs it with ECDSA P-256 / SHA-256,
and pushes it to the registry the way `cosign sign --key` stores it (OCI distribution API:
blobs, then the manifest tagged sha256-<hex>.sig, the signature in the layer annotation
dev.cosignproject.cosign/signature).

  cosign_sign.py genkey DIR NAME    (writes DIR/NAME.key, DIR/NAME.pub)
  cosign_sign.py sign REGISTRY REPO DIGEST KEY CA MODE
MODE: good | flip-signature | flip-payload | other-digest:<sha256:hex> | no-annotation

  cosign_sign.py copy REGISTRY REPO DIGEST CA SIGFILE
pushes a signature someone else made, as containers/image stores it (`\0sigstore-json\n`,
then {mimeType, payload, annotations}), as the layer of DIGEST's sha256-<hex>.sig manifest,
payload and annotations byte for byte (a key-less one carries its certificate and Rekor
bundle annotations).

  cosign_sign.py attest REGISTRY REPO DIGEST KEY CA MODE   (the target/pyenv Python)
attaches SLSA v1 provenance as `cosign attest --key` stores it: a manifest tagged
sha256-<hex>.att whose layer (application/vnd.dsse.envelope.v1+json) is a DSSE envelope
holding an in-toto Statement v1, both made by the PyPI in-toto-attestation and
securesystemslib packages (as crates/vouch-image/tests/data/slsa_provenance.py does).
MODE: good | builder:<id> | source:<repo> | other-digest:<sha256:hex> | flip-signature
"""
import base64, hashlib, json, ssl, sys, urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def genkey(d, name):
    k = ec.generate_private_key(ec.SECP256R1())
    open(f"{d}/{name}.key", "wb").write(k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    open(f"{d}/{name}.pub", "wb").write(k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def push(base, ctx, repo, tag, payload, annotations,
         media_type="application/vnd.dev.cosign.simplesigning.v1+json"):
    def req(method, url, data=None, ctype=None):
        r = urllib.request.Request(url, data=data, method=method)
        if ctype:
            r.add_header("Content-Type", ctype)
        return urllib.request.urlopen(r, context=ctx)

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = req("POST", f"{base}/v2/{repo}/blobs/uploads/").headers["Location"]
        if loc.startswith("/"):
            loc = base + loc
        sep = "&" if "?" in loc else "?"
        req("PUT", f"{loc}{sep}digest={digest}", data, "application/octet-stream")
        return digest, len(data)

    config = b"{}"
    cdig, clen = blob(config)
    pdig, plen = blob(payload)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cdig, "size": clen},
        "layers": [{"mediaType": media_type,
                    "digest": pdig, "size": plen, "annotations": annotations}],
    }).encode()
    req("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest,
        "application/vnd.oci.image.manifest.v1+json")


def sign(registry, repo, digest, keyfile, ca, mode):
    key = serialization.load_pem_private_key(open(keyfile, "rb").read(), None)
    named = mode.split(":", 1)[1] if mode.startswith("other-digest:") else digest
    payload = json.dumps({
        "critical": {"identity": {"docker-reference": f"{registry}/{repo}"},
                     "image": {"docker-manifest-digest": named},
                     "type": "cosign container image signature"},
        "optional": None}, separators=(",", ":")).encode()
    sig = bytearray(key.sign(payload, ec.ECDSA(hashes.SHA256())))
    if mode == "flip-signature":
        sig[len(sig) // 2] ^= 0x01
    if mode == "flip-payload":
        payload = bytearray(payload)
        payload[payload.index(b"cosign")] ^= 0x20  # 'c' -> 'C'
        payload = bytes(payload)
    annotations = {} if mode == "no-annotation" else {
        "dev.cosignproject.cosign/signature": base64.b64encode(bytes(sig)).decode()}
    ctx = ssl.create_default_context(cafile=ca)
    tag = digest.replace(":", "-", 1) + ".sig"
    push(f"https://{registry}", ctx, repo, tag, payload, annotations)


BUILDER = "https://github.com/vouch-test/builder/.github/workflows/build.yml@refs/tags/v1.0.0"
BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
SOURCE = "https://github.com/vouch-test/app"
REF = "refs/tags/v1.2.0"


def attest(registry, repo, digest, keyfile, ca, mode):
    from google.protobuf import json_format, struct_pb2
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    key = serialization.load_pem_private_key(open(keyfile, "rb").read(), None)
    builder = mode.split(":", 1)[1] if mode.startswith("builder:") else BUILDER
    source = mode.split(":", 1)[1] if mode.startswith("source:") else SOURCE
    named = mode.split(":", 1)[1] if mode.startswith("other-digest:") else digest
    ext = struct_pb2.Struct()
    ext.update({"workflow": {"ref": REF, "repository": source,
                             "path": ".github/workflows/release.yml"}})
    p = provenance_pb2.Provenance()
    p.build_definition.build_type = BUILD_TYPE
    p.build_definition.external_parameters.CopyFrom(ext)
    p.run_details.builder.id = builder
    subject = ResourceDescriptor(name=f"{registry}/{repo}",
                                 digest={"sha256": named.split(":", 1)[1]}).pb
    st = Statement([subject], "https://slsa.dev/provenance/v1", json_format.MessageToDict(p))
    st.validate()
    payload = json_format.MessageToJson(st.pb).encode()
    env = Envelope(payload, "application/vnd.in-toto+json", {})
    env.sign(CryptoSigner(key))
    doc = env.to_dict()
    if mode == "flip-signature":
        sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
        sig[len(sig) // 2] ^= 0x01
        doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    ctx = ssl.create_default_context(cafile=ca)
    tag = digest.replace(":", "-", 1) + ".att"
    push(f"https://{registry}", ctx, repo, tag, json.dumps(doc).encode(),
         {"dev.cosignproject.cosign/signature": "",
          "predicateType": "https://slsa.dev/provenance/v1"},
         "application/vnd.dsse.envelope.v1+json")


def copy(registry, repo, digest, ca, sigfile):
    raw = open(sigfile, "rb").read()
    head = b"\x00sigstore-json\n"
    assert raw.startswith(head), "not a containers/image sigstore signature"
    doc = json.loads(raw[len(head):])
    ctx = ssl.create_default_context(cafile=ca)
    tag = digest.replace(":", "-", 1) + ".sig"
    push(f"https://{registry}", ctx, repo, tag, base64.b64decode(doc["payload"]),
         doc["annotations"], doc["mimeType"])


if __name__ == "__main__":
    if sys.argv[1] == "copy":
        copy(*sys.argv[2:7])
    elif sys.argv[1] == "genkey":
        genkey(*sys.argv[2:4])
    elif sys.argv[1] == "attest":
        attest(*sys.argv[2:8])
    else:
        sign(*sys.argv[2:8])
