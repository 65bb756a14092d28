"""A tracker that always answers with the same peer list, for clients that cannot be handed a peer.

aria2c has no option to dial a given peer, but it takes extra trackers (`--bt-tracker`). This
HTTP tracker runs in a thread of the harness on 127.0.0.1 and replies to every announce with the
seeder's address in compact form (BEP 23), so aria2 finds the same seeder the other clients are
given directly. It stores nothing and never lists the announcing client itself.
"""

import ipaddress
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _bencode_reply(peers):
    compact = b"".join(ipaddress.IPv4Address(host).packed + struct.pack(">H", port) for host, port in peers)
    return b"d8:completei1e10:incompletei0e8:intervali1800e5:peers%d:%se" % (len(compact), compact)


class StaticTracker:
    def __init__(self, host="127.0.0.1"):
        self.peers = []
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = _bencode_reply(tracker.peers)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return "http://%s:%d/announce" % (host, port)

    def close(self):
        self._server.shutdown()
        self._server.server_close()
