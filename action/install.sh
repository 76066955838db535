#!/usr/bin/env bash
# Build equitr-coder from the action's own source, unless the cache restored the build, and
# make the command sandbox (bubblewrap) available.
set -euo pipefail
root="$HOME/.equitr-coder"
if [ -x "$root/bin/equitr-coder" ]; then
  echo "equitr-coder: using the cached build"
else
  echo "equitr-coder: building from ${GITHUB_ACTION_PATH:?} (the first run takes several minutes)"
  cargo install --locked --path "$GITHUB_ACTION_PATH" --root "$root"
fi
# run_command runs every command in a bubblewrap sandbox; without it commands are refused.
if ! command -v bwrap >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo apt-get install -y --no-install-recommends bubblewrap >/dev/null
fi
# Ubuntu 24.04 runners forbid unprivileged user namespaces through AppArmor, which
# bubblewrap needs; allow them for this (throw-away) runner.
if [ "$(sysctl -n kernel.apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)" = 1 ]; then
  sudo sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0
fi
