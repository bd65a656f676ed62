"""TUF repositories for crates/vouch/tests/update_tuf.rs, made with python-tuf (the PyPI `tuf`
package, an independent producer): a good repository at two versions, and one repository per
attack of the TUF specification, each with metadata tampered here (re-signed with real keys
where the attack needs valid signatures).

    python3 tuf_repos.py OUT

writes OUT/root.json (the trusted root a device pins: version 1, root and targets roles
2 of 3 keys) and OUT/<scenario>/{metadata,targets}/ for each scenario below, plus
OUT/expected.json with the targets' lengths and sha256 of the good versions.
"""

import hashlib
import json
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

NAME = "app.conf"
V1 = b"mode = stable\nworkers = 4\n"
V2 = b"mode = stable\nworkers = 8\n# update 2\n"
EVIL = b"mode = debug\nbackdoor = on\n"

OUT = sys.argv[1]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
LATER = NOW + timedelta(days=7)

root_signers = [CryptoSigner.generate_ed25519() for _ in range(3)]
targets_signers = [CryptoSigner.generate_ed25519() for _ in range(3)]
snapshot_signer = CryptoSigner.generate_ed25519()
timestamp_signer = CryptoSigner.generate_ed25519()
stranger = CryptoSigner.generate_ed25519()


def make_root(version):
    root = Root(version=version, expires=LATER, consistent_snapshot=True)
    for s in root_signers:
        root.add_key(s.public_key, "root")
    for s in targets_signers:
        root.add_key(s.public_key, "targets")
    root.add_key(snapshot_signer.public_key, "snapshot")
    root.add_key(timestamp_signer.public_key, "timestamp")
    root.roles["root"].threshold = 2
    root.roles["targets"].threshold = 2
    return root


def signed(obj, signers):
    md = Metadata(obj)
    for s in signers:
        md.sign(s, append=True)
    return md


def write(md, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    md.to_file(path, serializer=JSONSerializer(compact=False))


def meta(md):
    """A MetaFile (version, length, sha256) for a metadata file as serialized."""
    data = md.to_bytes(JSONSerializer(compact=False))
    return MetaFile(
        version=md.signed.version,
        length=len(data),
        hashes={"sha256": hashlib.sha256(data).hexdigest()},
    )


class Repo:
    """One repository directory: metadata/ and targets/ (consistent snapshots)."""

    def __init__(self, name):
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "metadata"))
        os.makedirs(os.path.join(self.dir, "targets"))
        write(ROOT1, self.md("1.root.json"))

    def md(self, name):
        return os.path.join(self.dir, "metadata", name)

    def target(self, data, name=NAME, stored=None):
        """Store a target under its consistent-snapshot name; `stored` replaces its bytes."""
        tf = TargetFile.from_data(name, data, ["sha256"])
        # The consistent-snapshot name: the digest before the file's own name, in its directory.
        d, base = os.path.split(name)
        path = os.path.join(self.dir, "targets", d, f"{tf.hashes['sha256']}.{base}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data if stored is None else stored)
        return tf

    def targets(self, version, tfs, signers=None):
        t = Targets(version=version, expires=LATER)
        for tf in tfs:
            t.targets[tf.path] = tf
        md = signed(t, targets_signers[:2] if signers is None else signers)
        write(md, self.md(f"{version}.targets.json"))
        return md

    def snapshot(self, version, targets_md, targets_version=None, signer=None):
        s = Snapshot(version=version, expires=LATER)
        mf = meta(targets_md)
        if targets_version is not None:
            mf = MetaFile(version=targets_version)
        s.meta = {"targets.json": mf}
        md = signed(s, [signer or snapshot_signer])
        write(md, self.md(f"{version}.snapshot.json"))
        return md

    def timestamp(self, version, snapshot_md, expires=LATER, pad=0, signer=None):
        t = Timestamp(version=version, expires=expires, snapshot_meta=meta(snapshot_md))
        md = signed(t, [signer or timestamp_signer])
        write(md, self.md("timestamp.json"))
        if pad:
            # Valid JSON, still validly signed (signatures cover the canonical form), but
            # larger than a client's bound for timestamp metadata.
            with open(self.md("timestamp.json"), "ab") as f:
                f.write(b" " * pad)
        return md

    def release(self, version, data, **kw):
        """A complete, valid release at `version` of every role, `data` as the target."""
        tf = self.target(data)
        t = self.targets(version, [tf])
        s = self.snapshot(version, t)
        return self.timestamp(version, s, **kw)


ROOT1 = signed(make_root(1), root_signers[:2])
os.makedirs(OUT, exist_ok=True)
write(ROOT1, os.path.join(OUT, "root.json"))

# The good repository, version 1 and version 2.
Repo("v1").release(1, V1)
Repo("v2").release(2, V2)

# Rollback: older metadata after version 2 was seen. The timestamp itself is older...
Repo("rollback_timestamp").release(1, V1)
# ...or a new, validly signed timestamp names an older snapshot...
r = Repo("rollback_snapshot")
tf = r.target(V1)
s1 = r.snapshot(1, r.targets(1, [tf]))
r.timestamp(3, s1)
# ...or a new snapshot names an older targets.
r = Repo("rollback_targets")
t1 = r.targets(1, [r.target(V1)])
r.timestamp(3, r.snapshot(3, t1))

# Freeze: a validly signed timestamp that has expired.
Repo("freeze").release(2, V2, expires=NOW - timedelta(hours=1))

# Mix-and-match: snapshot says targets version 2, the repository serves version 1's
# (validly signed) targets under that name.
r = Repo("mix_and_match")
t1 = r.targets(1, [r.target(V1)])
os.replace(r.md("1.targets.json"), r.md("2.targets.json"))
r.timestamp(2, r.snapshot(2, t1, targets_version=2))

# Arbitrary software: the stored target has one byte flipped (same length).
r = Repo("arbitrary")
flipped = bytearray(V2)
flipped[5] ^= 0x01
tf = r.target(V2, stored=bytes(flipped))
r.timestamp(2, r.snapshot(2, r.targets(2, [tf])))

# Endless data: the stored target is longer than its listed length...
r = Repo("endless_target")
tf = r.target(V2, stored=V2 + b"A" * 4096)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf])))
# ...and a timestamp larger than the client's bound.
Repo("endless_metadata").release(2, V2, pad=256 * 1024)

# Key compromise below threshold: targets naming the attacker's file, signed by one of the
# two targets keys needed...
r = Repo("targets_below_threshold")
tf = r.target(EVIL)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf], signers=targets_signers[:1])))
# ...and a new root (keys of the attacker's choosing) signed by one of the two root keys.
r = Repo("root_below_threshold")
root2 = make_root(2)
root2.roles["targets"].keyids = [stranger.public_key.keyid]
root2.keys[stranger.public_key.keyid] = stranger.public_key
root2.roles["targets"].threshold = 1
write(signed(root2, root_signers[:1] + [stranger]), r.md("2.root.json"))
tf = r.target(EVIL)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf], signers=[stranger])))

# Wrong key: targets signed by a key the root does not name (twice over the threshold count).
r = Repo("wrong_key")
tf = r.target(EVIL)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf], signers=[stranger, snapshot_signer])))

# A good root rotation (version 2 signed by 2 of 3 keys of version 1 and of version 2).
r = Repo("rotated")
write(signed(make_root(2), root_signers[:2]), r.md("2.root.json"))
tf = r.target(V2)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf])))

# A root rotation that replaces the timestamp and snapshot keys (the old ones retired, say
# compromised);
# served afterwards, the old repository ("v1": root 1 only, timestamp by the old key) must not
# take the device back to root 1.
r = Repo("rotated_online_keys")
new_timestamp = CryptoSigner.generate_ed25519()
new_snapshot = CryptoSigner.generate_ed25519()
root2 = make_root(2)
root2.revoke_key(timestamp_signer.public_key.keyid, "timestamp")
root2.add_key(new_timestamp.public_key, "timestamp")
root2.revoke_key(snapshot_signer.public_key.keyid, "snapshot")
root2.add_key(new_snapshot.public_key, "snapshot")
write(signed(root2, root_signers[:2]), r.md("2.root.json"))
tf = r.target(V2)
r.timestamp(2, r.snapshot(2, r.targets(2, [tf]), signer=new_snapshot), signer=new_timestamp)

# A root the attacker made alone (version 2, their key for every role, signed by it only) and a
# repository signed with it: a device must never start from it, wherever it is put in the cache.
evil_root = Root(version=2, expires=LATER, consistent_snapshot=True)
for role in ["root", "targets", "snapshot", "timestamp"]:
    evil_root.add_key(stranger.public_key, role)
write(signed(evil_root, [stranger]), os.path.join(OUT, "evil_root.json"))
r = Repo("evil")
tf = r.target(EVIL)
r.timestamp(
    2,
    r.snapshot(2, r.targets(2, [tf], signers=[stranger]), signer=stranger),
    signer=stranger,
)

# Delegations. The top-level targets delegates, in this order:
#   "firmware"  firmware/*        2 of 3 keys  terminating
#   "apps"      apps/*            1 key        not terminating, and it delegates
#       "apps-beta"  apps/beta-*  1 key        (nested)
#   "catchall"  *, */*            1 key        not terminating (listed last)
# The good repository "deleg" has firmware/fw.bin (by "firmware"), apps/app.conf (by "apps"),
# apps/beta-app.conf (by "apps-beta"), apps/extra.conf (by "catchall": "apps" does not list it and
# does not terminate, so the search goes on to its sibling); "catchall" also lists
# firmware/fw.bin with other bytes (shadowed: "firmware" comes first) and firmware/evil.bin
# ("firmware" terminates the search for firmware/*, so its sibling is never asked).
FW = b"firmware 1.0\n"
APP = b"app = 1\n"
BETA = b"app = beta\n"
EXTRA = b"extra = 1\n"
fw_signers = [CryptoSigner.generate_ed25519() for _ in range(3)]
apps_signer = CryptoSigner.generate_ed25519()
beta_signer = CryptoSigner.generate_ed25519()
catchall_signer = CryptoSigner.generate_ed25519()


def delegation(name, signers, threshold, paths, terminating):
    keys = {s.public_key.keyid: s.public_key for s in signers}
    role = DelegatedRole(name, list(keys), threshold, terminating, paths=paths)
    return keys, role


def deleg_repo(name, tamper=None):
    """The delegation tree above; `tamper(roles)` changes the delegated roles' targets or
    signers before they are signed (roles: name -> [Targets, signers])."""
    r = Repo(name)
    fw_k, fw_d = delegation("firmware", fw_signers, 2, ["firmware/*"], True)
    ap_k, ap_d = delegation("apps", [apps_signer], 1, ["apps/*"], False)
    bt_k, bt_d = delegation("apps-beta", [beta_signer], 1, ["apps/beta-*"], False)
    ca_k, ca_d = delegation("catchall", [catchall_signer], 1, ["*", "*/*"], False)
    roles = {
        "firmware": [Targets(version=1, expires=LATER), fw_signers[:2]],
        "apps": [Targets(version=1, expires=LATER), [apps_signer]],
        "apps-beta": [Targets(version=1, expires=LATER), [beta_signer]],
        "catchall": [Targets(version=1, expires=LATER), [catchall_signer]],
    }

    def put(role, path, data):
        tf = r.target(data, name=path)
        roles[role][0].targets[path] = tf

    put("firmware", "firmware/fw.bin", FW)
    put("apps", "apps/app.conf", APP)
    put("apps-beta", "apps/beta-app.conf", BETA)
    put("catchall", "apps/extra.conf", EXTRA)
    # Shadowed and terminated: the catch-all's own firmware.
    roles["catchall"][0].targets["firmware/fw.bin"] = TargetFile.from_data(
        "firmware/fw.bin", EVIL, ["sha256"]
    )
    put("catchall", "firmware/evil.bin", EVIL)
    roles["apps"][0].delegations = Delegations(keys=bt_k, roles={"apps-beta": bt_d})
    if tamper:
        tamper(roles, put)
    top = Targets(version=1, expires=LATER)
    top.delegations = Delegations(
        keys={**fw_k, **ap_k, **ca_k},
        roles={"firmware": fw_d, "apps": ap_d, "catchall": ca_d},
    )
    metas = {}
    for role, (t, signers) in roles.items():
        md = signed(t, signers)
        write(md, r.md(f"1.{role}.json"))
        metas[f"{role}.json"] = meta(md)
    top_md = signed(top, targets_signers[:2])
    write(top_md, r.md("1.targets.json"))
    s = Snapshot(version=1, expires=LATER)
    s.meta = {"targets.json": meta(top_md), **metas}
    snap = signed(s, [snapshot_signer])
    write(snap, r.md("1.snapshot.json"))
    r.timestamp(1, snap)
    return r


deleg_repo("deleg")


# Below the delegation's threshold: firmware signed by 1 of the 3 keys (2 needed).
def below(roles, put):
    roles["firmware"][1] = fw_signers[:1]


deleg_repo("deleg_below_threshold", below)


# A key the delegation does not name for the role: apps-beta signed by the apps key.
def wrong_key(roles, put):
    roles["apps-beta"][1] = [apps_signer]


deleg_repo("deleg_wrong_key", wrong_key)


# A target outside the role's paths: "apps" lists firmware/evil.bin.
def outside(roles, put):
    put("apps", "firmware/evil.bin", EVIL)


deleg_repo("deleg_outside_paths", outside)


# A wildcard across a directory: "apps/*" does not cover apps/sub/evil.conf in TUF's matching
# (a separator is not matched by a wildcard), nor does "*/*" of the catch-all.
def across(roles, put):
    put("apps", "apps/sub/evil.conf", EVIL)


deleg_repo("deleg_across_separator", across)

# Consistent snapshots off (root_plain.json, the same keys): metadata and targets under their
# plain names (timestamp.json, snapshot.json, targets.json; targets/app.conf,
# targets/firmware/fw.bin), as a repository that rewrites files in place serves them.
root_plain = make_root(1)
root_plain.consistent_snapshot = False
root_plain_md = signed(root_plain, root_signers[:2])
write(root_plain_md, os.path.join(OUT, "root_plain.json"))
plain = os.path.join(OUT, "plain")
shutil.rmtree(plain, ignore_errors=True)
write(root_plain_md, os.path.join(plain, "metadata", "1.root.json"))
write(root_plain_md, os.path.join(plain, "metadata", "root.json"))
plain_targets = Targets(version=1, expires=LATER)
for name, data in [(NAME, V2), ("firmware/fw.bin", FW)]:
    path = os.path.join(plain, "targets", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    plain_targets.targets[name] = TargetFile.from_data(name, data, ["sha256"])
pt = signed(plain_targets, targets_signers[:2])
write(pt, os.path.join(plain, "metadata", "targets.json"))
ps = Snapshot(version=1, expires=LATER)
ps.meta = {"targets.json": meta(pt)}
ps_md = signed(ps, [snapshot_signer])
write(ps_md, os.path.join(plain, "metadata", "snapshot.json"))
write(
    signed(Timestamp(version=1, expires=LATER, snapshot_meta=meta(ps_md)), [timestamp_signer]),
    os.path.join(plain, "metadata", "timestamp.json"),
)

# python-tuf's own client (ngclient) on each delegation repository: what it finds for each
# target (its sha256), or why not: the reference the Rust test compares vouch with.


class LocalFetcher(FetcherInterface):
    def __init__(self, repo_dir):
        self.repo_dir = repo_dir

    def _fetch(self, url):
        path = os.path.join(self.repo_dir, url.split("//repo/", 1)[1])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise DownloadHTTPError(str(e), 404) from e
        return iter([data])


def ngclient(name, target):
    work = os.path.join(OUT, ".ngclient", name, target.replace("/", "_"))
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(OUT, "root.json"), "rb") as f:
        bootstrap = f.read()
    try:
        u = Updater(
            work,
            "http://repo/metadata/",
            target_base_url="http://repo/targets/",
            fetcher=LocalFetcher(os.path.join(OUT, name)),
            bootstrap=bootstrap,
        )
        u.refresh()
        info = u.get_targetinfo(target)
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return {"error": f"{type(e).__name__}: {e}"}
    if info is None:
        return {"error": "not found"}
    return {"sha256": info.hashes["sha256"]}


DELEG_TARGETS = [
    "firmware/fw.bin",
    "apps/app.conf",
    "apps/beta-app.conf",
    "apps/extra.conf",
    "firmware/evil.bin",
    "apps/sub/evil.conf",
]
python_tuf = {
    name: {t: ngclient(name, t) for t in DELEG_TARGETS}
    for name in [
        "deleg",
        "deleg_below_threshold",
        "deleg_wrong_key",
        "deleg_outside_paths",
        "deleg_across_separator",
    ]
}
shutil.rmtree(os.path.join(OUT, ".ngclient"), ignore_errors=True)

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(
        {
            "name": NAME,
            "v1": {"length": len(V1), "sha256": hashlib.sha256(V1).hexdigest()},
            "v2": {"length": len(V2), "sha256": hashlib.sha256(V2).hexdigest()},
            "evil": {"length": len(EVIL), "sha256": hashlib.sha256(EVIL).hexdigest()},
            "deleg": {
                "firmware/fw.bin": hashlib.sha256(FW).hexdigest(),
                "apps/app.conf": hashlib.sha256(APP).hexdigest(),
                "apps/beta-app.conf": hashlib.sha256(BETA).hexdigest(),
                "apps/extra.conf": hashlib.sha256(EXTRA).hexdigest(),
            },
            "python_tuf": python_tuf,
        },
        f,
    )
