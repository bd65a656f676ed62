#!/usr/bin/env bash
# The whole Vouch test suite, from a fresh Debian machine with Rust.
#
# Installs with apt-get what the build and the tests need (when missing), then runs every test
# of the workspace: unit tests, the loopback end-to-end harness (verifier + agent + relying
# party over TLS), TPM tests against swtpm, the CLI tests (including SIGKILL durability) and the
# examples; and checks that every fuzz target still compiles (running them needs cargo-fuzz:
# see the README). fuzz/ is its own workspace with its own Cargo.lock: after changing the
# dependencies of a crate, refresh it with `cargo update --manifest-path fuzz/Cargo.toml -w`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
cargo test --workspace --locked "$@"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked --target-dir target/fuzz-check
