#!/usr/bin/env bash
# THE test command: what CI runs (.ci/run) and what to run before pushing.
#
#   scripts/test.sh              every stage, in order; stops at the first failure
#   scripts/test.sh fmt clippy   only the stages named
#   scripts/test.sh -k [STAGE]   --keep-going: run the other stages after a failure too,
#                                then fail (what CI wants: every problem in one run)
#
# Stages: deps fmt clippy wasm test fuzz
#   deps    scripts/install-test-deps.sh (apt packages, wasm target, cargo-fuzz; fast when present)
#   fmt     cargo fmt --all --check
#   clippy  cargo clippy --workspace --all-targets -- -D warnings
#   wasm    the sans-IO crates build for wasm32-unknown-unknown; web/pkg (scripts/build-web.sh)
#   test    cargo test --workspace --release --no-fail-fast (unit, integration, interop), and
#           the vendored sctp-proto fix's test
#   fuzz    every cargo-fuzz target for FUZZ_SECONDS each (skipped while fuzz/ does not exist)
#
# Environment:
#   CARGO_TARGET_DIR     build cache, kept between runs (default /var/cache/shoal-target, or
#                        ~/.cache/shoal-target when that is not writable)
#   FUZZ_SECONDS         per fuzz target (default 20)
#   SHOAL_TEST_BUDGET    seconds for the whole run (default 2700 = 45 min); each stage is
#                        killed when it would overrun it
#   SHOAL_SKIP_INTEROP=1 skip the tests that need third-party peers (see tests/peers)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_STAGES=(deps fmt clippy wasm test fuzz)
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
BUDGET="${SHOAL_TEST_BUDGET:-2700}"
DEADLINE=$((SECONDS + BUDGET))

# The build cache and the release settings, shared with scripts/serve.sh.
# shellcheck source=scripts/build-env.sh
source "$ROOT/scripts/build-env.sh"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# ---- stage bookkeeping ----------------------------------------------------------------------

CURRENT=""      # stage being run
STAGE_START=0
CHILD=""        # pid (= process group) of the bounded command being waited on
SUMMARY=()
FAILED=()

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

on_exit() {
    local rc=$?
    if [[ -n $CURRENT ]]; then
        # interrupted in the middle of a stage
        SUMMARY+=("$(printf '%-7s FAILED %s' "$CURRENT" "$(fmt_secs $((SECONDS - STAGE_START)))")")
    fi
    if ((${#SUMMARY[@]})); then
        printf '\n==== summary (target dir %s) ====\n' "$CARGO_TARGET_DIR"
        printf '  %s\n' "${SUMMARY[@]}"
        printf '  total   %s\n' "$(fmt_secs "$SECONDS")"
    fi
    if ((rc == 0)); then
        printf 'ALL STAGES PASSED\n'
    else
        printf 'TESTS FAILED (exit %d)%s\n' "$rc" "${FAILED[*]:+: ${FAILED[*]}}" >&2
    fi
}
trap on_exit EXIT

# Ctrl-C / SIGTERM: stop the whole process group of the running command (cargo, the test
# binaries and the peers they started), then fail.
on_signal() {
    if [[ -n $CHILD ]]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || true
    fi
    exit 130
}
trap on_signal INT TERM

# run CAP CMD...: runs CMD, killed after CAP seconds or when the overall budget runs out.
# `timeout` makes itself a process-group leader, so its pid names the whole group.
run() {
    local cap=$1
    shift
    local left=$((DEADLINE - SECONDS))
    if ((left <= 0)); then
        echo "time budget of ${BUDGET}s exhausted before: $*" >&2
        return 124
    fi
    ((cap <= left)) || cap=$left
    echo "+ $*"
    timeout --kill-after=30 "$cap" "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    if ((rc == 124 || rc == 137)); then
        echo "!!! timed out after ${cap}s: $*" >&2
    fi
    return "$rc"
}

# stage NAME FUNCTION: runs one stage in a subshell with errexit, so that any failing command
# ends the stage; then either stops the run (default) or records it and goes on (--keep-going).
stage() {
    CURRENT=$1
    shift
    STAGE_START=$SECONDS
    printf '\n==> [%s] started %s UTC\n' "$CURRENT" "$(date -u +%H:%M:%S)"
    local rc=0
    set +e
    (
        trap on_signal INT TERM
        set -e
        "$@"
    )
    rc=$?
    set -e
    local dt=$((SECONDS - STAGE_START))
    if ((rc == 130)); then
        exit 130
    fi
    if ((rc == 0)); then
        printf '<== [%s] ok in %s\n' "$CURRENT" "$(fmt_secs "$dt")"
        SUMMARY+=("$(printf '%-7s ok     %s' "$CURRENT" "$(fmt_secs "$dt")")")
    else
        printf '\n!!! [%s] FAILED (exit %d) after %s\n' "$CURRENT" "$rc" "$(fmt_secs "$dt")" >&2
        SUMMARY+=("$(printf '%-7s FAILED %s (exit %d)' "$CURRENT" "$(fmt_secs "$dt")" "$rc")")
        FAILED+=("$CURRENT")
    fi
    CURRENT=""
    if ((rc != 0 && !KEEP_GOING)); then
        exit "$rc"
    fi
}

# ---- stages -----------------------------------------------------------------------------------

stage_deps() { run 1800 "$ROOT/scripts/install-test-deps.sh"; }

stage_fmt() {
    local color=never
    [[ -t 1 ]] && color=auto
    run 300 cargo fmt --all --check -- --color "$color"
}

stage_clippy() { run 1500 cargo clippy --workspace --all-targets -- -D warnings; }

# The sans-IO crates build for browsers, the browser engine is lint-clean there, and web/pkg
# is built for the Chromium tests of the test stage (and for `shoal serve`).
stage_wasm() {
    run 900 cargo build -p shoal-proto -p shoal-tracker-proto --target wasm32-unknown-unknown
    run 900 cargo clippy -p shoal-web --target wasm32-unknown-unknown -- -D warnings
    run 900 "$ROOT/scripts/build-web.sh"
}

# The release build of scripts/build-env.sh (why: see there).
# --no-fail-fast: every test binary runs, so one failure does not hide the others.
# SHOAL_NO_DHT, SHOAL_NO_LSD, SHOAL_NO_PORT_MAPPING: no test reaches outside, and the DHT's
# default routers are outside, LSD's multicast goes to the LAN, port mapping asks the
# machine's router; the tests of each start local nodes, a private namespace or a router
# namespace (miniupnpd) and turn it back on.
# XDG_STATE_HOME, XDG_DATA_HOME: the resume records and server libraries every shoal the tests
# start keeps by default go to a folder of this run's, not the user's.
stage_test() {
    local state
    state="$(mktemp -d "${TMPDIR:-/tmp}/shoal-test-state.XXXXXX")"
    run 1800 env "${SHOAL_RELEASE_ENV[@]}" SHOAL_NO_DHT=1 SHOAL_NO_LSD=1 SHOAL_NO_PORT_MAPPING=1 \
        XDG_STATE_HOME="$state" XDG_DATA_HOME="$state/data" \
        cargo test --workspace --release --no-fail-fast
    rm -rf "$state"
    # A vendored fix's own test (vendor/*.diff names it; it fails without the fix).
    run 600 cargo test --manifest-path vendor/sctp-proto/Cargo.toml --lib \
        test_sender_work_per_chunk_does_not_grow_with_the_flight
}

stage_fuzz() {
    if [[ ! -d fuzz ]]; then
        echo "fuzz/ does not exist yet: skipping fuzzing"
        return 0
    fi
    local fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
    local targets
    targets="$(timeout 300 cargo +nightly fuzz list)"
    if [[ -z $targets ]]; then
        echo "fuzz/ exists but 'cargo fuzz list' found no targets" >&2
        return 1
    fi
    echo "fuzz targets: $(echo "$targets" | tr '\n' ' ')"
    run 1200 cargo +nightly fuzz build --target-dir "$fuzz_target_dir"
    local t
    for t in $targets; do
        local t0=$SECONDS
        run $((FUZZ_SECONDS + 300)) cargo +nightly fuzz run "$t" --target-dir "$fuzz_target_dir" \
            -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048
        echo "    fuzz $t: ok in $(fmt_secs $((SECONDS - t0)))"
    done
}

# ---- main -------------------------------------------------------------------------------------

KEEP_GOING=0
if [[ ${1:-} == -k || ${1:-} == --keep-going ]]; then
    KEEP_GOING=1
    shift
fi
if (($#)); then
    STAGES=("$@")
else
    STAGES=("${ALL_STAGES[@]}")
fi
for s in "${STAGES[@]}"; do
    if [[ ! " ${ALL_STAGES[*]} " =~ " $s " ]]; then
        echo "unknown stage '$s' (stages: ${ALL_STAGES[*]})" >&2
        exit 2
    fi
done

echo "shoal tests: stages '${STAGES[*]}', budget ${BUDGET}s, CARGO_TARGET_DIR=$CARGO_TARGET_DIR, $(nproc) cores"
for s in "${STAGES[@]}"; do
    stage "$s" "stage_$s"
    if [[ $s == deps ]]; then
        # after deps, so that a first run reports the toolchain it installed
        echo "toolchain: $(rustc --version); nightly: $(rustc +nightly --version 2>/dev/null || echo none)"
    fi
done
if ((${#FAILED[@]})); then
    exit 1
fi
