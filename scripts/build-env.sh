# Sourced by scripts/test.sh and scripts/serve.sh: one build cache and one release build for
# both, so that the `shoal` serve.sh runs is the one the tests built and ran, and the main job
# after the test command compiles nothing again.

# The cache lives outside the clone: a fresh CI checkout still starts warm, and a developer's
# own ./target is left alone.
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    CARGO_TARGET_DIR=/var/cache/shoal-target
    if ! mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || [[ ! -w $CARGO_TARGET_DIR ]]; then
        CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/shoal-target"
    fi
fi
mkdir -p "$CARGO_TARGET_DIR"
export CARGO_TARGET_DIR

# The release build of the native crates, for `env "${SHOAL_RELEASE_ENV[@]}" cargo ...`.
# Release, because interop tests push hundreds of MiB through Shoal and the reference peers;
# with overflow checks and debug assertions on, so that the tests still catch what a debug
# build would (and a server that breaks an invariant stops rather than carries on wrong). LTO
# is off: it would lengthen the link of every test binary, for a few per cent of speed. Only
# for the commands that build native code: the browser engine's `web` profile inherits
# `release`, and these settings would make its wasm larger and slower.
SHOAL_RELEASE_ENV=(
    CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
    CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
    CARGO_PROFILE_RELEASE_LTO=off
)
