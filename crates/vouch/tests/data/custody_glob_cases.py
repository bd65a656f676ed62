"""Glob patterns in artifact rules, judged by in-toto itself (the independent side of
crates/vouch/tests/custody.rs glob_rules_agree_with_in_toto).

For each (pattern, artifact name) case: a layout (signed by an owner key) with one step
"glob" whose expected_products are [["ALLOW", pattern], ["DISALLOW", "*"]], and that step's
link (signed by the functionary) with the one product `name`; and for each (pattern, name)
of a smaller set, a MATCH rule with source and destination prefixes; then in-toto 3.0.0's own
verification (`in_toto.verifylib.in_toto_verify`, what the `in-toto-verify` command calls,
with the keys loaded as it loads them) says pass or fail. Writes OUT/owner.pub,
OUT/NNN/{root.layout,glob.<keyid8>.link} and OUT/cases.json: [{pattern, name, dir,
in_toto}], in_toto "pass" or "fail".

Usage: python3 custody_glob_cases.py OUT
"""

import itertools
import json
import logging
import os
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from in_toto import verifylib
from in_toto.models._signer import load_public_key_from_file
from in_toto.models.layout import Layout, Step
from in_toto.models.link import Link
from in_toto.models.metadata import Metablock, Metadata
from securesystemslib.signer import CryptoSigner

logging.disable(logging.CRITICAL)
out = os.path.abspath(sys.argv[1])
os.makedirs(out, exist_ok=True)

PATTERNS = [
    "*", "*.txt", "?.txt", "[ab].txt", "[!ab].txt", "[a-c]*", "[!a-c]*", "[]]x", "[!]]x",
    "[]-]x", "[a-]x", "[-a]x", "[!-a]x", "[z-a]x", "[b-a-c]x", "[a-b-c]x", "[c-b-a]x",
    "[!b-a-c]x", "[%--]x", "[--0]x", "[", "[a", "a[", "[!]", "[!]x", "[]", "[]x", "*[",
    "\\*", "a\\b", "[\\]]", "[&~|]x", "[^a]x", "[[]x", "[a-z0-9]*", "dir/*", "*/*.o",
    "ab*cd*ef", "[[:alpha:]]x", "[!!]x", "[a-a]x", "x[b-a]", "[*]", "[?]", "\u00e9?",
    "[\u00e9-\u00fc]x", "**x", "*a*a*a*b", "[!--]x", "[a-]-]x",
]
NAMES = [
    "a.txt", "ab.txt", "]x", "-x", "!x", "ax", "zx", "[", "[x", "a[", "\\*", "&x",
    "dir/sub/x.o", "abXcdYef", "\u00e9!", ",x", "/x", "aaaab", "]-]x",
]

owner = CryptoSigner.generate_ed25519()
func = CryptoSigner.generate_ed25519()


def write_pub(signer, path):
    with open(path, "wb") as f:
        f.write(
            load_pem_private_key(signer.private_bytes, None)
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )


write_pub(owner, os.path.join(out, "owner.pub"))
write_pub(func, os.path.join(out, "func.pub"))
owner_key = load_public_key_from_file(os.path.join(out, "owner.pub"))
keys = {owner_key["keyid"]: owner_key}

cases = []
for n, (pattern, name) in enumerate(itertools.product(PATTERNS, NAMES)):
    d = os.path.join(out, "%04d" % n)
    os.makedirs(d)
    lay = Layout()
    lay.set_relative_expiration(days=1)
    k = lay.add_functionary_key_from_path(os.path.join(out, "func.pub"))
    step = Step(name="glob")
    step.pubkeys = [k["keyid"]]
    step.expected_products = [["ALLOW", pattern], ["DISALLOW", "*"]]
    lay.steps = [step]
    mb = Metablock(signed=lay)
    mb.create_signature(owner)
    mb.dump(os.path.join(d, "root.layout"))
    link = Link(name="glob", materials={}, products={name: {"sha256": "00" * 32}})
    lmb = Metablock(signed=link)
    lmb.create_signature(func)
    lmb.dump(os.path.join(d, "glob.%s.link" % k["keyid"][:8]))
    try:
        verifylib.in_toto_verify(Metadata.load(os.path.join(d, "root.layout")), keys, d)
        verdict = "pass"
    except Exception:  # pylint: disable=broad-exception-caught
        verdict = "fail"
    cases.append({"pattern": pattern, "name": name, "dir": d, "in_toto": verdict})

# MATCH with prefixes: step "src" produced a/<name>, step "glob" has b/<name> as material,
# with the same hash; ["MATCH", pattern, "IN", "b", "WITH", "PRODUCTS", "IN", "a", "FROM",
# "src"] consumes it when the pattern matches the name relative to the prefix.
MATCH_NAMES = ["x.txt", "sub/x.o", "]x", "[", "ax", "-x"]
n0 = len(cases)
for n, (pattern, name) in enumerate(itertools.product(PATTERNS, MATCH_NAMES)):
    d = os.path.join(out, "m%04d" % n)
    os.makedirs(d)
    lay = Layout()
    lay.set_relative_expiration(days=1)
    k = lay.add_functionary_key_from_path(os.path.join(out, "func.pub"))
    src = Step(name="src")
    src.pubkeys = [k["keyid"]]
    step = Step(name="glob")
    step.pubkeys = [k["keyid"]]
    step.expected_materials = [
        ["MATCH", pattern, "IN", "b/" if n % 2 else "b", "WITH", "PRODUCTS", "IN", "a", "FROM", "src"],
        ["DISALLOW", "*"],
    ]
    lay.steps = [src, step]
    mb = Metablock(signed=lay)
    mb.create_signature(owner)
    mb.dump(os.path.join(d, "root.layout"))
    for link in [
        Link(name="src", materials={}, products={"a/" + name: {"sha256": "11" * 32}}),
        Link(name="glob", materials={"b/" + name: {"sha256": "11" * 32}}, products={}),
    ]:
        lmb = Metablock(signed=link)
        lmb.create_signature(func)
        lmb.dump(os.path.join(d, "%s.%s.link" % (link.name, k["keyid"][:8])))
    try:
        verifylib.in_toto_verify(Metadata.load(os.path.join(d, "root.layout")), keys, d)
        verdict = "pass"
    except Exception:  # pylint: disable=broad-exception-caught
        verdict = "fail"
    cases.append({"pattern": pattern, "name": "b/" + name, "dir": d, "in_toto": verdict})

with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(cases, f)
