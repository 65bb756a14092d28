#!/usr/bin/env bash
# Tracker benchmark: responses per second with the tracker pinned to core 0 and the load
# generator on core 1 (aquatic's load testers, or ours with `--loadgen shoal`), Shoal against
# aquatic_udp / aquatic_ws and bittorrent-tracker (aquatic's WS load tester speaks TLS only, so
# every WS server is measured over wss), then memory per idle WebSocket connection at 1k and
# 10k connections. See README.md.
#
#   benches/tracker/run.sh [SECONDS] [bench.py options...]   (default 30 s per run)
#   benches/tracker/run.sh 30 --rounds 3                     (what docs/BENCHMARKS.md records)
#   benches/tracker/run.sh 20 --rounds 2 --loadgen shoal --only udp,wss   (our load generator)
#
# Needs: taskset, openssl, python3, the aquatic binaries on PATH (`cargo install aquatic_ws
# aquatic_udp aquatic_ws_load_test aquatic_udp_load_test`; runs of a missing tool print SKIP),
# node + tests/web/node_modules for bittorrent-tracker. Results go to target/bench-tracker/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SECS="${1:-30}"
shift || true
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export PATH="$PATH:$HOME/.cargo/bin"

for tool in taskset openssl python3; do
    command -v "$tool" >/dev/null || { echo "tracker-bench: $tool is needed" >&2; exit 1; }
done
if [ -z "${SHOAL_TRACKER:-}" ] || [ -z "${SHOAL_LOADGEN:-}" ]; then
    # Our load generator (`--loadgen shoal`) is an example of the same crate: built alongside.
    cargo build --release -q -p shoal-tracker --example tracker --example loadgen \
        --manifest-path "$ROOT/Cargo.toml"
fi
SHOAL="${SHOAL_TRACKER:-$TARGET/release/examples/tracker}"
LOADGEN="${SHOAL_LOADGEN:-$TARGET/release/examples/loadgen}"
exec python3 "$HERE/bench.py" --shoal "$SHOAL" --loadgen-bin "$LOADGEN" --secs "$SECS" "$@"
