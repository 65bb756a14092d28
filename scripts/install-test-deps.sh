#!/usr/bin/env bash
# Installs what Shoal's tests need on Debian 12 (bookworm). Idempotent, and fast when
# everything is already there: apt is only called for packages `dpkg` does not report installed.
#
#   sudo scripts/install-test-deps.sh
#
# Reference peers for interop tests (see tests/peers/): libtorrent (python3-libtorrent 2.0),
# Transmission 3.00, aria2 1.36, opentracker, qBittorrent; nginx as a web seed; coturn as a STUN
# server; nftables for NAT routers in namespaces, miniupnpd for their port mapping; ffmpeg for
# media payloads; GNU time for peak-RSS figures; iproute2/util-linux for private network
# namespaces. WebRTC peers: PyPI libtorrent 2.1 in a virtualenv of its own, WebTorrent in node
# with @roamhq/wrtc (npm).
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
    # HTTP web seeds (BEP 19): tests run it on loopback with a config of their own
    nginx
    # self-signed certificates for the https/wss tests (shoal_testkit::test_certificate)
    openssl
    # a real STUN server for `--stun` (webrtc_interop.rs, webrtc_nat.rs; STUN-only mode)
    coturn
    # the NAT routers of webrtc_nat.rs (masquerade and a stateful filter, shoal_testkit::nat)
    nftables
    # UPnP IGD/NAT-PMP/PCP on those routers (shoal_testkit::upnp): the binary only, no service
    miniupnpd-nftables
    # the virtualenv holding PyPI libtorrent 2.1 (ensurepip is packaged apart in Debian)
    python3-venv
    # The npm side of the tracker and browser tests (tests/web): bittorrent-tracker's client,
    # WebTorrent 3 in headless Chromium.
    chromium
    nodejs
)

say() { printf '[install-test-deps] %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then
    SUDO=(sudo)
fi
# No debconf questions, also through sudo (which drops the environment). Only the binary package
# of miniupnpd is installed: the `miniupnpd` package, whose service would start a system daemon
# and ask about its interfaces, is not (tests start their own in a namespace).
APT_GET=(env DEBIAN_FRONTEND=noninteractive apt-get)

if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]] && ((${#SUDO[@]} == 0)); then
        say "ERROR: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    "${SUDO[@]}" "${APT_GET[@]}" update -q
    "${SUDO[@]}" "${APT_GET[@]}" install -y -q --no-install-recommends "${missing[@]}"
else
    say "apt packages: all ${#APT_PACKAGES[@]} present"
fi

# Debian packages npm apart from nodejs; other nodejs builds (e.g. NodeSource's) bundle it, and
# Debian's npm package would conflict with them, so it is installed only when missing.
if ! command -v npm >/dev/null; then
    say "installing: npm"
    "${SUDO[@]}" "${APT_GET[@]}" install -y -q --no-install-recommends npm
fi

# npm packages of tests/web, from its lock file. --ignore-scripts: a WebTorrent dependency's
# install script insists on pnpm, and node-datachannel's downloads a binary (no internet here);
# the tests load WebRTC-free stubs instead (tests/web/no-webrtc).
# @roamhq/wrtc (WebRTC for WebTorrent in node) ships its linux-x64 binary inside the npm package.
if [[ -d "$ROOT/tests/web/node_modules/bittorrent-tracker" ]] \
    && [[ -d "$ROOT/tests/web/node_modules/@roamhq/wrtc" ]] \
    && [[ ! "$ROOT/tests/web/node_modules/.package-lock.json" -ot "$ROOT/tests/web/package-lock.json" ]]; then
    say "npm packages (tests/web): present"
else
    (cd "$ROOT/tests/web" && npm ci --ignore-scripts --no-audit --no-fund)
fi

# PyPI libtorrent 2.1 (WebTorrent, i.e. WebRTC, built in) for tests/peers/lt21_peer.py, in a
# virtualenv of its own so that the system Python keeps Debian's 2.0 for the classic tests. The
# path is the one shoal_testkit looks in (paths::LT21_VENV); SHOAL_LT21_VENV overrides both.
LT21_VENV="${SHOAL_LT21_VENV:-/var/cache/shoal-test-deps/lt21-venv}"
LT21_PIN="libtorrent==2.1.1"
if [[ -x "$LT21_VENV/bin/python" ]] && "$LT21_VENV/bin/python" -c \
    'import sys, libtorrent as lt; sys.exit(not (lt.__version__.startswith("2.1.") and "webtorrent_stun_server" in lt.default_settings()))' \
    2>/dev/null; then
    say "libtorrent 2.1 ($LT21_VENV): present"
else
    say "installing $LT21_PIN into $LT21_VENV"
    mkdir -p "$(dirname "$LT21_VENV")"
    # Debian's interpreter, not whatever python3 comes first on PATH (pyenv, another venv).
    [[ -x "$LT21_VENV/bin/python" ]] || /usr/bin/python3 -m venv "$LT21_VENV"
    "$LT21_VENV/bin/pip" install -q --disable-pip-version-check "$LT21_PIN"
fi

# The pinned toolchain (rust-toolchain.toml) must be able to build shoal-proto for browsers.
cd "$ROOT"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rust target wasm32-unknown-unknown: present"
else
    rustup target add wasm32-unknown-unknown
fi

# The browser engine's JS glue (scripts/build-web.sh): wasm-bindgen-cli at exactly the version
# of the wasm-bindgen crate in Cargo.lock (they must match). Built from crates.io once per
# machine (a few minutes); wasm-pack is not used because it downloads binaries.
WASM_BINDGEN_PIN=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [[ $(wasm-bindgen --version 2>/dev/null | awk '{print $2}') == "$WASM_BINDGEN_PIN" ]]; then
    say "wasm-bindgen-cli $WASM_BINDGEN_PIN: present"
else
    say "installing wasm-bindgen-cli $WASM_BINDGEN_PIN"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_PIN"
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
