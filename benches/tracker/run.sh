#!/usr/bin/env bash
# Tracker benchmark: responses per second, tracker pinned to core 0 and load on core 1.
# Compares Shoal's tracker with aquatic_udp / aquatic_ws and bittorrent-tracker, using
# aquatic's load testers (the WS one speaks TLS only, so every WS server is measured over wss).
#
#   benches/tracker/run.sh [SECONDS]        (default 20 s per run)
#
# Needs: taskset, openssl, the aquatic binaries on PATH (`cargo install aquatic_ws aquatic_udp
# aquatic_ws_load_test aquatic_udp_load_test`; a run is skipped with a SKIP line otherwise),
# node + tests/web/node_modules for bittorrent-tracker. Results go to benches/tracker/results/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SECS="${1:-20}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$HERE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

say() { printf '[tracker-bench] %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

cargo build --release -q -p shoal-tracker --example tracker --manifest-path "$ROOT/Cargo.toml"
SHOAL="${SHOAL_TRACKER:-$TARGET/release/examples/tracker}"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
# aquatic wants PKCS#8 keys.
openssl pkcs8 -topk8 -nocrypt -in "$WORK/key.pem" -out "$WORK/key8.pem"

# Starts "$@" on core 0 and waits until PORT answers.
serve() {
    local port="$1"; shift
    taskset -c 0 "$@" >"$WORK/server.log" 2>&1 </dev/null &
    SERVER=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        ss -uln | grep -q ":$port " && return 0
        sleep 0.1
    done
    say "server on $port did not come up:"; cat "$WORK/server.log"; return 1
}
stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# aquatic load testers print their own config (-p); we set address, duration and one worker.
load_config() {
    local tool="$1" addr="$2" file="$3"
    "$tool" -p > "$file"
    sed -i -e "s/^server_address = .*/server_address = \"$addr\"/" \
           -e "s/^duration = .*/duration = $SECS/" \
           -e "s/^workers = .*/workers = 1/" "$file"
}

run_load() { # name tool config
    local name="$1" tool="$2" cfg="$3"
    say "$name: load for ${SECS}s"
    taskset -c 1 "$tool" -c "$cfg" > "$OUT/$name.txt" 2>&1 || true
    say "$name: RSS $(rss_kib "$SERVER") KiB after the run"
    grep -iE "responses|per second|total" "$OUT/$name.txt" | tail -5 || true
}

# --- UDP -----------------------------------------------------------------------------------
if have aquatic_udp_load_test; then
    load_config aquatic_udp_load_test "127.0.0.1:19001" "$WORK/udp_load.toml"
    serve 19001 "$SHOAL" --udp 127.0.0.1:19001 --threads 1 && run_load shoal-udp aquatic_udp_load_test "$WORK/udp_load.toml"; stop
    if have aquatic_udp; then
        aquatic_udp -p > "$WORK/aq_udp.toml"
        sed -i -e 's/^address_ipv4 = .*/address_ipv4 = "127.0.0.1:19001"/' -e 's/^socket_workers = .*/socket_workers = 1/' \
               -e 's/^swarm_workers = .*/swarm_workers = 1/' "$WORK/aq_udp.toml"
        serve 19001 aquatic_udp -c "$WORK/aq_udp.toml" && run_load aquatic-udp aquatic_udp_load_test "$WORK/udp_load.toml"; stop
    else say "SKIP: aquatic_udp not installed"; fi
else
    say "SKIP: aquatic_udp_load_test not installed (UDP runs)"
fi

# --- WebSocket over TLS --------------------------------------------------------------------
if have aquatic_ws_load_test; then
    load_config aquatic_ws_load_test "127.0.0.1:19002" "$WORK/ws_load.toml"
    serve 19002 "$SHOAL" --ws 127.0.0.1:19002 --threads 1 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key8.pem" \
        && run_load shoal-wss aquatic_ws_load_test "$WORK/ws_load.toml"; stop
    if have aquatic_ws; then
        aquatic_ws -p > "$WORK/aq_ws.toml"
        sed -i -e 's/^address = .*/address = "127.0.0.1:19002"/' -e 's/^socket_workers = .*/socket_workers = 1/' \
               -e 's/^swarm_workers = .*/swarm_workers = 1/' -e 's/^enable_tls = .*/enable_tls = true/' \
               -e "s|^tls_certificate_path = .*|tls_certificate_path = \"$WORK/cert.pem\"|" \
               -e "s|^tls_private_key_path = .*|tls_private_key_path = \"$WORK/key8.pem\"|" "$WORK/aq_ws.toml"
        serve 19002 aquatic_ws -c "$WORK/aq_ws.toml" && run_load aquatic-wss aquatic_ws_load_test "$WORK/ws_load.toml"; stop
    else say "SKIP: aquatic_ws not installed"; fi
    if have node && [ -d "$ROOT/tests/web/node_modules/bittorrent-tracker" ]; then
        serve 19002 node "$HERE/bt_tracker.mjs" 19002 "$WORK/cert.pem" "$WORK/key.pem" \
            && run_load bittorrent-tracker-wss aquatic_ws_load_test "$WORK/ws_load.toml"; stop
    else say "SKIP: node or tests/web/node_modules missing (bittorrent-tracker)"; fi
else
    say "SKIP: aquatic_ws_load_test not installed (WebSocket runs)"
fi

# --- Memory per idle WebSocket connection ----------------------------------------------------
say "memory per idle WebSocket connection (Shoal): see"
say "  cargo test -p shoal-tracker --test ws_protocol many_idle -- --nocapture"
say "results in $OUT"
