#!/usr/bin/env bash
# Proves that third_party/bbolt is go.etcd.io/bbolt v1.5.0 from the Go module
# proxy plus bbolt-v1.5.0.patch, and nothing else: it downloads the upstream
# module (checked against sum.golang.org by the go command), applies the patch
# to the files we vendor, and compares the result with third_party/bbolt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

upstream=$(cd "$work" && go mod download -json go.etcd.io/bbolt@v1.5.0 |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$upstream" ] || [ ! -d "$upstream" ]; then
	echo "verify-bbolt: could not download go.etcd.io/bbolt@v1.5.0" >&2
	exit 1
fi

# We vendor the non-test Go files of the packages the library builds from
# (root, errors, internal/common, internal/freelist, version), go.mod and
# LICENSE.
for d in . errors internal/common internal/freelist version; do
	mkdir -p "$work/a/$d"
	for f in "$upstream/$d"/*.go; do
		case "$f" in *_test.go) continue ;; esac
		cp "$f" "$work/a/$d/"
	done
done
cp "$upstream/go.mod" "$upstream/LICENSE" "$work/a/"
chmod -R u+w "$work/a"

(cd "$work/a" && patch -s -p1 <"$here/bbolt-v1.5.0.patch")
if ! diff -r "$work/a" "$here/bbolt"; then
	echo "verify-bbolt: third_party/bbolt differs from upstream v1.5.0 + bbolt-v1.5.0.patch (diff above)" >&2
	exit 1
fi
echo "verify-bbolt: third_party/bbolt == go.etcd.io/bbolt v1.5.0 + bbolt-v1.5.0.patch"
