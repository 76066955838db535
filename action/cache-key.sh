#!/usr/bin/env bash
# The cache key of the installed equitr-coder (~/.equitr-coder): the runner's OS and
# architecture, the action's ref (`uses: …@REF`) and a hash of everything in the action's
# checkout that changes the binary or how it is installed, so that upgrading the action never
# runs an old build. (`hashFiles` only sees the workspace, not the action's own files.)
#
# Appends `key=…` to $GITHUB_OUTPUT when that is set, else prints the key (install.sh uses
# that to tell whether what is in ~/.equitr-coder is this key's build).
set -euo pipefail
dir="${GITHUB_ACTION_PATH:?}"
# composite actions do not get GITHUB_ACTION_REF (actions/runner#2473): action.yml passes it;
# failing that, the runner's checkout path says: …/_actions/<owner>/<repo>/<ref>.
ref="${ACTION_REF:-${GITHUB_ACTION_REF:-}}"
if [[ -z "$ref" && "$dir" =~ /_actions/[^/]+/[^/]+/([^/]+)/?$ ]]; then
  ref="${BASH_REMATCH[1]}"
fi
ref="$(printf '%s' "${ref:-local}" | tr -c 'A-Za-z0-9._-' '_')"

cd "$dir"
test -f Cargo.toml || { echo "equitr-coder: no Cargo.toml in the action at $dir" >&2; exit 1; }
inputs=()
for p in Cargo.toml Cargo.lock build.rs src migrations action/install.sh action/cache-key.sh; do
  if [ -e "$p" ]; then inputs+=("$p"); fi
done
# Relative paths, so the key does not depend on where the runner checked the action out.
hash="$(find "${inputs[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32)"
key="equitr-coder-${RUNNER_OS:-$(uname -s)}-${RUNNER_ARCH:-$(uname -m)}-${ref}-${hash}"

if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "key=$key" >> "$GITHUB_OUTPUT"
else
  echo "$key"
fi
