#!/usr/bin/env bash
# Install, with apt-get, the Debian packages Vouch needs when they are missing.
#   scripts/deps.sh          what building needs: a C toolchain, pkg-config, libtss2 (TPM agent)
#   scripts/deps.sh --test   and what the tests need: a real TPM stack (swtpm with its
#                            EK-certificate tools, tpm2-tools as an independent quote producer,
#                            tpm2-abrmd on a private D-Bus for the tabrmd TCTI)
#                            openssl (an independent X.509 verifier), SoftHSM2 (a PKCS#11
#                            token for the CA key), PostgreSQL (tests start throwaway servers
#                            from its binaries, and a primary with a streaming standby:
#                            initdb, pg_basebackup, pg_ctl promote, psql), and the PyPI `spiffe`
#                            package (an independent Workload API client) in target/pyenv,
#                            iproute2 (network namespaces for the gossip partition test),
#                            chromium (the dashboard rendered by a real headless browser),
#                            systemd (systemd-analyze checks the packaged units), man-db
#                            (the generated man pages rendered), PyJWT and cryptography
#                            (docs/VERIFY.md's Python verifies results, an independent JWT
#                            implementation), the PyPI tuf package (python-tuf makes the
#                            TUF repositories `vouch update` checks); podman and runc below also
#                            build and run the packaged image (crates/vouch/tests/packaging.rs)
set -euo pipefail

packages=(build-essential ca-certificates pkg-config libtss2-dev)
if [ "${1:-}" = "--test" ]; then
    packages+=(swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus openssl python3
        python3-venv softhsm2 postgresql iproute2 chromium systemd man-db
        python3-jwt python3-cryptography)
    # examples/ci/github-actions.yml validated against SchemaStore's workflow schema
    # (crates/vouch/tests/ci_pipeline.rs)
    packages+=(python3-yaml python3-jsonschema)
    # a real Prometheus scrapes the verifier and the agent, and promtool checks their
    # /metrics text (crates/vouch-server/tests/prometheus.rs)
    packages+=(prometheus)
fi
if [ "${1:-}" = "--test" ]; then
    # crates/vouch-server/tests/containers.rs: images built from scratch with buildah, run by
    # podman with runc (crun does not drive hybrid v1/v2 cgroups), and dockerd (docker.io);
    # binutils strips the client
    packages+=(podman buildah runc conmon binutils docker.io)
    # crates/vouch-image/tests/registry.rs: a real OCI registry on loopback (docker-registry),
    # images pushed and inspected by skopeo; registry_auth.rs: its htpasswd file made by
    # apache2-utils' htpasswd (bcrypt)
    packages+=(docker-registry skopeo apache2-utils)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
    venv="$(cd "$(dirname "$0")/.." && pwd)/target/pyenv"
    if ! "$venv/bin/python3" -c "import spiffe" 2>/dev/null; then
        echo "installing the PyPI spiffe client into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "spiffe==0.3.2"
    fi
    # python-tuf makes the TUF repositories of `vouch update` (crates/vouch/tests/update_tuf.rs)
    if ! "$venv/bin/python3" -c "import tuf.api.metadata, securesystemslib.signer" 2>/dev/null; then
        echo "installing the PyPI tuf package into $venv" >&2
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "tuf==7.0.1" "securesystemslib[crypto]==1.6.0"
    fi
    # in-toto records and checks the supply chain of `vouch custody verify` (crates/vouch/tests/custody.rs)
    if ! "$venv/bin/python3" -c "import in_toto.models.layout" 2>/dev/null; then
        echo "installing the PyPI in-toto package into $venv" >&2
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "in-toto==3.0.0" "securesystemslib[crypto]==1.6.0"
    fi
    # in-toto-attestation signs the SLSA provenance of crates/vouch-image/tests/provenance.rs
    if ! "$venv/bin/python3" -c "import in_toto_attestation.v1.statement, securesystemslib.dsse" 2>/dev/null; then
        echo "installing the PyPI in-toto-attestation package into $venv" >&2
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "in-toto-attestation==0.9.3" "securesystemslib[crypto]==1.6.0"
    fi
fi
