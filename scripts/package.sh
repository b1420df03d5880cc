#!/usr/bin/env bash
# Packs one built binary as a release archive and prints the archive's path:
#   scripts/package.sh BINARY TARGET OUTDIR
# OUTDIR/kustos-VERSION-TARGET.tar.gz holds kustos-VERSION-TARGET/ with the
# binary, README.md and SECURITY.md; beside it, ….tar.gz.sha256 is its
# SHA-256 in the format `sha256sum -c` and `shasum -a 256 -c` check.
# The release workflow runs it for each binary; tests/it/platforms.rs runs it
# and checks the archive and its checksum.
set -euo pipefail
(($# == 3)) || { echo "usage: $0 BINARY TARGET OUTDIR" >&2; exit 2; }
bin="$1" target="$2" out="$3"
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)"
[[ "$target" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "package: bad target name: $target" >&2; exit 2; }
name="kustos-$version-$target"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
install -m 0755 "$bin" "$stage/$name/kustos"
install -m 0644 "$root/README.md" "$root/SECURITY.md" "$stage/$name/"
# Files owned by root in the archive, not by the build machine's user
# (GNU tar on Linux, bsdtar on macOS spell it differently).
if tar --version 2>/dev/null | grep -q GNU; then
  owner=(--owner=0 --group=0 --numeric-owner)
else
  owner=(--uid 0 --gid 0 --numeric-owner)
fi
tar -C "$stage" "${owner[@]}" -czf "$out/$name.tar.gz" "$name"

if command -v sha256sum >/dev/null 2>&1; then
  sum=(sha256sum)
else
  sum=(shasum -a 256)
fi
(cd "$out" && "${sum[@]}" "$name.tar.gz" >"$name.tar.gz.sha256")
echo "$out/$name.tar.gz"
