#!/usr/bin/env bash
# Vouch's main job on its embedded default, from a fresh Debian machine with Rust: installs the
# build dependencies when missing, then runs `vouch dev` (a verifier on SQLite, an agent
# attesting this machine, the dashboard). Extra arguments go to `vouch dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec cargo run --release --locked -- dev "$@"
