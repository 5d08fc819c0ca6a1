#!/usr/bin/env bash
# Proves that third_party/raft is hashicorp/raft v1.8.0 from the Go module
# proxy plus raft-v1.8.0.patch, and nothing else: it downloads the upstream
# module (checked against sum.golang.org by the go command), applies the patch
# to the files we vendor, and compares the result with third_party/raft.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

upstream=$(cd "$work" && go mod download -json github.com/hashicorp/raft@v1.8.0 |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$upstream" ] || [ ! -d "$upstream" ]; then
	echo "verify-raft: could not download github.com/hashicorp/raft@v1.8.0" >&2
	exit 1
fi

# We vendor the module's non-test Go files (root and bench/), go.mod and LICENSE.
mkdir -p "$work/a/bench"
for f in "$upstream"/*.go "$upstream"/bench/*.go; do
	case "$f" in *_test.go) continue ;; esac
	rel=${f#"$upstream"/}
	cp "$f" "$work/a/$rel"
done
cp "$upstream/go.mod" "$upstream/LICENSE" "$work/a/"
chmod -R u+w "$work/a"

(cd "$work/a" && patch -s -p1 <"$here/raft-v1.8.0.patch")
if ! diff -r "$work/a" "$here/raft"; then
	echo "verify-raft: third_party/raft differs from upstream v1.8.0 + raft-v1.8.0.patch (diff above)" >&2
	exit 1
fi
echo "verify-raft: third_party/raft == hashicorp/raft v1.8.0 + raft-v1.8.0.patch"
