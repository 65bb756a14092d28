#!/usr/bin/env python3
"""libtorrent 2.1 (the PyPI wheel, built with WebTorrent support) as a WebRTC reference peer.

  <venv python> lt21_peer.py seed  TORRENT DATA_DIR --tracker ws://... [options]
  <venv python> lt21_peer.py leech SOURCE  OUT_DIR  --tracker ws://... [options]

The same driver as lt_peer.py (same roles, options, events and stdin contract: see its help),
run by the interpreter of the virtualenv that scripts/install-test-deps.sh fills with PyPI
`libtorrent==2.1.*` (Debian's python3-libtorrent is 2.0, without WebTorrent). libtorrent 2.1
announces to ws:// and wss:// trackers with WebRTC offers and answers theirs, so a peer found
there is reached over a WebRTC data channel (libdatachannel), while TCP stays as in lt_peer.py.

Extra options:
  --stun HOST:PORT   STUN server for WebRTC (default: none; libtorrent's own default is a public
                     server, which a test must never reach)
  --no-tcp           no TCP peers at all, either way: WebRTC is the only path to this peer
  --max-offers N     WebRTC offers sent with each announce (libtorrent's default is 10)

WebRTC needs an interface other than loopback: run it in a private network namespace
(shoal_testkit::netns), as the Rust tests do.
"""

import sys

import lt_peer
from lt_peer import lt
from peerlib import fail


def add_args(ap):
    ap.add_argument("--stun", default="", metavar="HOST:PORT", help="STUN server ('' = none, the default)")
    ap.add_argument("--max-offers", type=int, default=None, metavar="N", help="WebRTC offers per announce")


def main():
    a = lt_peer.make_parser(__doc__, add_args).parse_args()
    settings = lt.default_settings()
    # A wheel without WebTorrent (or Debian's 2.0 picked up by mistake) would silently speak
    # TCP only and make a WebRTC test prove nothing.
    if "webtorrent_stun_server" not in settings:
        fail("libtorrent %s at %s has no WebTorrent support (need PyPI libtorrent 2.1, see "
             "scripts/install-test-deps.sh)" % (lt.__version__, lt.__file__))
    # lt_peer.py pins outgoing connections to --ip; libtorrent applies that to WebRTC peer
    # connections too, which then fail with "No such device": let those leave as they must.
    a.extra_settings = {"webtorrent_stun_server": a.stun, "outgoing_interfaces": ""}
    if a.max_offers is not None:
        a.extra_settings["max_webtorrent_offers"] = a.max_offers
    lt_peer.run(a)


if __name__ == "__main__":
    sys.exit(main())
