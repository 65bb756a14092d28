#!/usr/bin/env bash
# Builds the browser engine into web/pkg: crates/shoal-web for wasm32, then wasm-bindgen's
# ES module glue. `shoal serve` embeds web/ (see crates/shoal-cli/build.rs, which runs this
# when web/pkg is missing or stale).
#
#   scripts/build-web.sh            build (into the cache of scripts/build-env.sh)
#
# Needs the wasm32-unknown-unknown target (rust-toolchain.toml lists it) and wasm-bindgen-cli
# at the version of the wasm-bindgen crate in Cargo.lock (scripts/install-test-deps.sh
# installs it; wasm-pack is not used: it downloads binaries).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/build-env.sh
source "$ROOT/scripts/build-env.sh"
TARGET_DIR="$CARGO_TARGET_DIR"
want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ $have != "$want" ]]; then
    echo "wasm-bindgen-cli $want is needed (found: ${have:-none}):" >&2
    echo "  cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build -p shoal-web --target wasm32-unknown-unknown --profile web
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
    "$TARGET_DIR/wasm32-unknown-unknown/web/shoal_web.wasm"
echo "built web/pkg ($(du -h web/pkg/shoal_web_bg.wasm | cut -f1) of wasm)"
