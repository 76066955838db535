#!/usr/bin/env bash
# The cache key of the equitr-coder build: the runner's OS and architecture and the hash of
# the action's Cargo.lock. (`hashFiles` only sees the workspace, not the action's own files.)
set -euo pipefail
lock="${GITHUB_ACTION_PATH:?}/Cargo.lock"
hash="$(sha256sum "$lock" | cut -c1-32)"
echo "key=equitr-coder-${RUNNER_OS:-os}-${RUNNER_ARCH:-arch}-${hash}" >> "${GITHUB_OUTPUT:?}"
