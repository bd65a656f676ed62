#!/usr/bin/env bash
# A CI/CD pipeline gated by Vouch (docs/CI.md): attest the builder, build, sign the build's
# SLSA v1 provenance with the builder's X.509-SVID, and deploy only if the provenance and the
# builder's attestation result verify.
#
#   1. attest   `vouch attest --ci`: this machine and its measured files, appraised by the
#               verifier; anything but affirming stops the pipeline (exit 1, or 3 when no
#               verifier answers).
#   2. build    $VOUCH_CI_BUILD (default: a tarball of $VOUCH_CI_SOURCE) into $WORK/out/.
#   3. sign     `vouch provenance sign --svid-socket --timestamp-url`: the SVID comes from the
#               agent's SPIFFE Workload API, which the verifier issues only for an affirming
#               attestation; the verifier countersigns the signature with its own clock
#               (POST /v1/timestamp, on presentation of the builder's attestation result).
#   4. gate     `vouch provenance verify --trust-bundle --spiffe-id --jwks --revocations`
#               (signature, the verifier's timestamp, SVID chain to the trust domain as of
#               that time, SPIFFE ID, artifact digest, the verifier's signed revocation feed:
#               the SVID's serial, the builder's workload and node) and `vouch verify` (the
#               builder's attestation result: signature, audience, affirming, not expired).
#   5. deploy   copy the artifact to $VOUCH_CI_DEPLOY_DIR: reached only if 4 passed.
#
# Environment:
#   VOUCH              the vouch binary (default: vouch on PATH)
#   VOUCH_CI_WORK      working directory (default: a new temporary directory)
#   VOUCH_DEV_DIR      a running `vouch dev --dir` to use; unset: one is started here, on
#                      127.0.0.1:$VOUCH_CI_PORT (default 18443), and stopped at the end
#   VOUCH_CI_SOURCE    what to build (default: this script's directory)
#   VOUCH_CI_BUILD     the build command; it must write the artifact to "$ARTIFACT"
#   VOUCH_CI_TRUST_BUNDLE the trust domain's CA (PEM or SPIFFE bundle JSON; default the dev
#                      verifier's $VOUCH_DEV_DIR/server/spiffe/ca.crt)
#   VOUCH_CI_DEPLOY_DIR where "deploy" puts the artifact (default $VOUCH_CI_WORK/deployed)
#   VOUCH_CI_BEFORE_ATTEST, VOUCH_CI_AFTER_SIGN
#                      optional commands run before step 1 and between steps 3 and 4, for
#                      fault injection in tests (crates/vouch/tests/ci_pipeline.rs): a changed
#                      measured file, an artifact swapped after signing, foreign provenance,
#                      the builder's node revoked.
#
# Exit status: 0 deployed; otherwise the failing step's (1 refused, 2 local error,
# 3 verifier unreachable), after a line "pipeline stopped at <step>" on stderr.
set -euo pipefail

VOUCH=${VOUCH:-vouch}
WORK=${VOUCH_CI_WORK:-$(mktemp -d)}
SOURCE=${VOUCH_CI_SOURCE:-$(cd "$(dirname "$0")" && pwd)}
DEPLOY_DIR=${VOUCH_CI_DEPLOY_DIR:-$WORK/deployed}
AUDIENCE=vouch-dev-rp
mkdir -p "$WORK/out"
export WORK

stop() {
    echo "pipeline stopped at $1 (exit $2)" >&2
    exit "$2"
}

# 0. The verifier and agent: a running dev stack, or one started for this run.
DEV_PID=
if [ -n "${VOUCH_DEV_DIR:-}" ]; then
    DEV=$VOUCH_DEV_DIR
else
    DEV=$WORK/dev
    "$VOUCH" dev --dir "$DEV" --listen "127.0.0.1:${VOUCH_CI_PORT:-18443}" --interval 2 \
        >"$WORK/dev.log" 2>&1 &
    DEV_PID=$!
    trap '[ -n "$DEV_PID" ] && kill "$DEV_PID" 2>/dev/null; wait 2>/dev/null || true' EXIT
fi
for _ in $(seq 1 300); do
    [ -S "$DEV/agent/api.sock" ] && [ -f "$DEV/server/context.toml" ] && break
    if [ -n "$DEV_PID" ] && ! kill -0 "$DEV_PID" 2>/dev/null; then
        cat "$WORK/dev.log" >&2
        stop "start (vouch dev exited)" 2
    fi
    sleep 0.1
done
[ -S "$DEV/agent/api.sock" ] || stop "start (no Workload API socket in $DEV/agent)" 3
SERVER=$(sed -n 's/^server = "\(.*\)"$/\1/p' "$DEV/server/context.toml")
CA=$DEV/server/tls/ca.crt
export DEV SERVER CA

if [ -n "${VOUCH_CI_BEFORE_ATTEST:-}" ]; then
    bash -c "$VOUCH_CI_BEFORE_ATTEST"
fi

# 1. Attest the builder: the machine (this vouch binary, the measured configuration).
set +e
"$VOUCH" attest --ci --server "$SERVER" --ca-cert "$CA" --agent-dir "$DEV/agent" \
    --workload vouch-dev --exe "$(command -v "$VOUCH")" --file "$DEV/workload.conf" \
    --result-audience "$AUDIENCE" >"$WORK/attest.json"
rc=$?
set -e
cat "$WORK/attest.json"
[ "$rc" -eq 0 ] || stop attest "$rc"
# The result this attestation produced (the running agent keeps attesting into the same
# directory): presented for the timestamp and checked at the gate.
cp "$(sed -n 's/.*"result_path":"\([^"]*\)".*/\1/p' "$WORK/attest.json")" "$WORK/result.jwt"

# 2. Build.
ARTIFACT=$WORK/out/app.tar
export ARTIFACT
if [ -n "${VOUCH_CI_BUILD:-}" ]; then
    bash -c "$VOUCH_CI_BUILD" || stop build 2
else
    tar -C "$SOURCE" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -cf "$ARTIFACT" . || stop build 2
fi

# 3. Sign the provenance with the builder's SVID (from the agent's Workload API).
"$VOUCH" provenance sign --artifact "$ARTIFACT" --svid-socket "$DEV/agent/api.sock" \
    --source-repo "file://$SOURCE" --out "$WORK/provenance.json" \
    --timestamp-url "$SERVER" --ca-cert "$CA" --result "$WORK/result.jwt" || stop sign $?

if [ -n "${VOUCH_CI_AFTER_SIGN:-}" ]; then
    bash -c "$VOUCH_CI_AFTER_SIGN"
fi

# 4. Gate. The deploy side trusts only the trust domain's CA (here the dev verifier's
#    published spiffe/ca.crt; elsewhere its /v1/bundle, fetched over TLS pinned to its CA),
#    the verifier's result keys (its JWKS: they sign the timestamp too) and the builder's
#    expected SPIFFE ID. The revocation feed is public and each record is signed: fetched
#    here, checked against the trust bundle record by record.
BUNDLE=${VOUCH_CI_TRUST_BUNDLE:-$DEV/server/spiffe/ca.crt}
BUILDER_ID=spiffe://vouch.local/dev/uid-$(id -u)
"$VOUCH" provenance verify --envelope "$WORK/provenance.json" --artifact "$ARTIFACT" \
    --trust-bundle "$BUNDLE" --spiffe-id "$BUILDER_ID" \
    --jwks "$SERVER/.well-known/jwks.json" --revocations "$SERVER/v1/revocations" \
    --ca-cert "$CA" || stop "gate (provenance)" $?
"$VOUCH" verify --jwks "$SERVER/.well-known/jwks.json" --ca-cert "$CA" --audience "$AUDIENCE" \
    --trust-bundle "$BUNDLE" --revocations "$SERVER/v1/revocations" \
    "$WORK/result.jwt" || stop "gate (builder attestation)" $?

# 5. Deploy.
mkdir -p "$DEPLOY_DIR"
cp "$ARTIFACT" "$DEPLOY_DIR/"
echo "deployed $(basename "$ARTIFACT") built by $BUILDER_ID"
