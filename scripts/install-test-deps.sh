#!/usr/bin/env bash
# Installs what Shoal's tests need on Debian 12 (bookworm). Idempotent, and fast when
# everything is already there: apt is only called for packages `dpkg` does not report installed.
#
#   sudo scripts/install-test-deps.sh
#
# Reference peers for interop tests (see tests/peers/): libtorrent (python3-libtorrent 2.0),
# Transmission 3.00, aria2 1.36, opentracker, qBittorrent; ffmpeg for media payloads; GNU time
# for peak-RSS figures; iproute2/util-linux for private network namespaces.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

APT_PACKAGES=(
    python3-libtorrent
    transmission-cli
    aria2
    opentracker
    ffmpeg
    qbittorrent-nox
    time
    iproute2
    util-linux
)

# --- Browser / WebTorrent interop: NOT needed yet. -----------------------------------------
# When the browser tests land, add these to APT_PACKAGES (and an `npm ci --ignore-scripts` of
# the test page's package.json; see the notes in tests/peers/README.md):
#   chromium chromium-driver nodejs npm
# --------------------------------------------------------------------------------------------

say() { printf '[install-test-deps] %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            SUDO=(sudo)
        else
            say "ERROR: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "apt packages: all ${#APT_PACKAGES[@]} present"
fi

# The pinned toolchain (rust-toolchain.toml) must be able to build shoal-proto for browsers.
cd "$ROOT"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rust target wasm32-unknown-unknown: present"
else
    rustup target add wasm32-unknown-unknown
fi

# Fuzzing: cargo-fuzz on a nightly toolchain (the pinned stable one cannot build with
# sanitizers). Both only when missing.
if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly toolchain (for cargo fuzz)"
    rustup toolchain install nightly --profile minimal
fi
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "cargo-fuzz: $(cargo +nightly fuzz --version)"
else
    cargo install cargo-fuzz --locked
fi
