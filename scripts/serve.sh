#!/usr/bin/env bash
# The main job from a fresh clone: builds the browser engine (web/pkg) and `shoal`, then runs
# `shoal serve` with the arguments given (none: a sample video), e.g.
#
#   scripts/serve.sh                      # http://127.0.0.1:8080/ plays the sample
#   scripts/serve.sh movie.mp4 --http 0.0.0.0:8080 --public-host my.lan.name
#
# The first run installs what the build needs and is missing: the wasm32 target (through
# rust-toolchain.toml) and wasm-bindgen-cli at the version Cargo.lock pins (a few minutes).
#
# It builds into the cache scripts/test.sh uses, with the same settings (scripts/build-env.sh):
# after the test command, it starts at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/build-env.sh
source "$ROOT/scripts/build-env.sh"
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
    rustup target add wasm32-unknown-unknown
pin=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [[ $(wasm-bindgen --version 2>/dev/null | awk '{print $2}') != "$pin" ]]; then
    echo "installing wasm-bindgen-cli $pin (once)" >&2
    cargo install wasm-bindgen-cli --version "$pin"
fi
"$ROOT/scripts/build-web.sh" >&2
exec env "${SHOAL_RELEASE_ENV[@]}" cargo run --release -p shoal-cli -- serve "$@"
