#!/usr/bin/env bash
# The allocator's share of the CPU training epoch (issue #13: under 5% at hidden 100).
#
# Records `epoch_time` (the course loop on the CPU backend) with `perf record` and sums the
# samples that fall in the allocator: glibc's malloc/free family and Rust's allocation
# shims. Prints the epoch time line, the share, then the symbols it counted.
#
#   scripts/alloc_share.sh                 # hidden 100, batch 10, 3000 epochs
#   scripts/alloc_share.sh --hidden 1000 --batch 50 --epochs 100
#
# Needs `perf` (Debian: linux-perf) and permission to record (perf_event_paranoid <= 2,
# or root). Builds the example in release mode first.
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    args=(--hidden 100 --batch 10 --epochs 3000)
fi
command -v perf >/dev/null || { echo "perf not found (Debian: apt-get install linux-perf)" >&2; exit 1; }
cargo build --release --example epoch_time >&2
data=$(mktemp -t alloc_share.XXXXXX)
trap 'rm -f "$data" "$data.old"' EXIT
perf record -q -o "$data" target/release/examples/epoch_time "${args[@]}"
grep -m1 'model name' /proc/cpuinfo | sed 's/^model name\s*: /cpu: /' || true
perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | python3 -c '
import re, sys
pattern = re.compile(r"malloc|calloc|realloc|_int_free|cfree|^free$|__libc_free|tcache|consolidate|unlink_chunk|sysmalloc|__rdl_|__rust_(alloc|dealloc|realloc|alloc_zeroed|no_alloc_shim)")
rows = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(\S+)", line)
    if m and pattern.search(m.group(2)):
        rows.append((float(m.group(1)), m.group(2)))
print("allocator share: %.2f%% of samples" % sum(p for p, _ in rows))
for p, s in sorted(rows, reverse=True):
    print("  %5.2f%%  %s" % (p, s))
'
