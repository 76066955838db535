#!/usr/bin/env bash
# Install equitr-coder into ~/.equitr-coder/bin and make the command sandbox (bubblewrap)
# available. One line says which of these it did:
#
#   - the cache (actions/cache, or a self-hosted runner's home) already holds the build for
#     this cache key (cache-key.sh: the action's ref and a hash of its source): use it;
#   - the action is used at a release tag (`@v1.2.3`, or a major/minor tag `@v1`, `@v1.2`):
#     download the static binary `equitr-coder-<target>.tar.gz` of that release and its
#     `.sha256`, verify the checksum and install it. A moving tag such as `v1` is resolved
#     without the GitHub API: the release to download is `v<version>` with the version in the
#     Cargo.toml of the commit the tag points to (release.yml refuses a tag that differs from
#     Cargo.toml's version), so the binary is always the one built from the action's own
#     source. A checksum that does not match is refused: no fallback;
#   - otherwise (a branch or a sha, a fork without releases, no asset for this runner):
#     build it from the action's own source with cargo, which takes several minutes.
#
# EQUITR_RELEASE_BASE replaces https://github.com/<action repo>/releases/download (tests
# point it at a local server; it may then be plain http).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${HOME:?}/.equitr-coder"
action_dir="${GITHUB_ACTION_PATH:?}"
# composite actions do not get GITHUB_ACTION_REF / _REPOSITORY (actions/runner#2473):
# action.yml passes them as ACTION_REF / ACTION_REPOSITORY.
# Failing those, the runner's checkout path says: …/_actions/<owner>/<repo>/<ref>.
ref="${ACTION_REF:-${GITHUB_ACTION_REF:-}}"
repo="${ACTION_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}"
if [[ -z "$ref" && "$action_dir" =~ /_actions/([^/]+/[^/]+)/([^/]+)/?$ ]]; then
  repo="${repo:-${BASH_REMATCH[1]}}"
  ref="${BASH_REMATCH[2]}"
fi

os="${RUNNER_OS:-$(uname -s)}"
case "$os" in
  Linux) ;;
  *) echo "equitr-coder: runners must be Linux (x86_64 or arm64); this one is $os" >&2; exit 1 ;;
esac
case "${RUNNER_ARCH:-$(uname -m)}" in
  X64 | x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
  ARM64 | aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
  *) target="" ;;
esac

key="$(GITHUB_OUTPUT='' "$here/cache-key.sh")"
stamp="$root/.installed"

# The release tag whose binary fits the action's checkout in $tag, or why there is none.
release_tag() {
  local version
  if ! [[ "$ref" =~ ^v[0-9]+(\.[0-9]+(\.[0-9]+(-[0-9A-Za-z.-]+)?)?)?$ ]]; then
    why="no release for ref '${ref:-(none)}'"
    return 0
  fi
  version="$(awk '/^\[/ { p = ($0 == "[package]") }
    p && /^version *= *"/ { sub(/^version *= *"/, ""); sub(/".*/, ""); print; exit }' \
    "$action_dir/Cargo.toml")"
  if [ "v$version" = "$ref" ] || [[ "v$version" == "$ref".* ]]; then
    tag="v$version"
  else
    why="no release for ref '$ref' (the action's Cargo.toml says version ${version:-none})"
  fi
}

# curl an URL to a file; prints the HTTP status (000: no answer) and fails as curl does.
fetch() {
  local opts=(--fail --silent --show-error --location --retry 3 --connect-timeout 20
    --write-out '%{http_code}' --output "$2")
  if [ -z "${EQUITR_RELEASE_BASE:-}" ]; then
    opts+=(--proto '=https' --tlsv1.2)
  fi
  curl "${opts[@]}" "$1" 2>"$work/curl.err"
}

# Download, verify and install release $tag: sets $installed, or $why when there is no
# release to use. Exits on a checksum that does not match.
download() {
  local base name status code
  if [ -z "$target" ]; then
    why="no release binary for this runner's architecture (${RUNNER_ARCH:-$(uname -m)})"
    return 0
  fi
  if [ -n "${EQUITR_RELEASE_BASE:-}" ]; then
    base="${EQUITR_RELEASE_BASE%/}"
  elif [ -n "$repo" ]; then
    base="https://github.com/$repo/releases/download"
  else
    why="no release for ref '$ref' (the action's repository is unknown)"
    return 0
  fi
  name="equitr-coder-$target.tar.gz"
  status=0
  code="$(fetch "$base/$tag/$name" "$work/$name")" || status=$?
  if [ "$code" = 404 ]; then
    why="no release $tag for $target at $base (ref '$ref')"
    return 0
  elif [ "$status" != 0 ]; then
    why="could not download $base/$tag/$name (HTTP $code: $(head -c 200 "$work/curl.err" | tr '\n' ' '))"
    return 0
  fi
  status=0
  code="$(fetch "$base/$tag/$name.sha256" "$work/$name.sha256")" || status=$?
  if [ "$status" != 0 ]; then
    why="could not download the checksum $base/$tag/$name.sha256 (HTTP $code)"
    return 0
  fi
  # Exactly the line release.yml writes (`sha256sum <archive>`): a checksum file naming
  # another file would have `sha256sum --check` check that file instead.
  if ! (cd "$work" && sha256sum --check --strict --status "$name.sha256") ||
    [ "$(cat "$work/$name.sha256")" != "$(cd "$work" && sha256sum "$name")" ]; then
    echo "equitr-coder: refusing release $tag: the sha256 of $base/$tag/$name does not match $name.sha256 (a corrupted download or a tampered release); nothing was installed" >&2
    exit 1
  fi
  mkdir "$work/unpacked"
  tar -xzf "$work/$name" -C "$work/unpacked" --no-same-owner
  if ! [ -f "$work/unpacked/equitr-coder" ]; then
    echo "equitr-coder: release $tag: $name has no equitr-coder binary; nothing was installed" >&2
    exit 1
  fi
  rm -rf "$root"
  mkdir -p "$root/bin"
  # Every binary of the crate (equitr-coder, and any other [[bin]] release.yml packed).
  find "$work/unpacked" -mindepth 1 -maxdepth 1 -type f -exec install -m 0755 {} "$root/bin/" \;
  printf '%s\nrelease %s for %s\n' "$key" "$tag" "$target" >"$stamp"
  installed="downloaded release $tag for $target (sha256 verified)"
}

if [ -x "$root/bin/equitr-coder" ] && [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$key" ]; then
  echo "equitr-coder: using the cached build ($(sed -n 2p "$stamp"))"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  tag="" why="" installed=""
  release_tag
  if [ -n "$tag" ]; then
    download
  fi
  if [ -n "$installed" ]; then
    echo "equitr-coder: $installed"
  elif ! command -v cargo >/dev/null 2>&1; then
    echo "equitr-coder: $why, and cargo is not installed to build from source: install Rust first, or use the action at a release tag (@v1)" >&2
    exit 1
  else
    echo "equitr-coder: $why; building from source (several minutes)"
    # A binary left by an earlier install would make cargo refuse to overwrite it.
    rm -rf "$root"
    cargo install --locked --path "$action_dir" --root "$root"
    printf '%s\nsource build of ref %s\n' "$key" "'${ref:-(none)}'" >"$stamp"
  fi
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
