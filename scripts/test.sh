#!/usr/bin/env bash
# The whole Vouch test suite, from a fresh Debian machine with Rust.
#
# Installs with apt-get the Debian packages the tests need (when missing), then runs every
# test of the workspace: unit tests, the loopback end-to-end harness (verifier + agent +
# relying party over TLS), the CLI tests (including SIGKILL durability) and the examples.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use: a C toolchain, and a real TPM stack (swtpm with
# its EK-certificate tools, tpm2-tools as an independent quote producer, libtss2 for the agent).
packages=(build-essential ca-certificates pkg-config swtpm swtpm-tools tpm2-tools libtss2-dev)

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

cargo test --workspace --locked "$@"
