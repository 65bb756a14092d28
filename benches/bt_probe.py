"""Is a peer seeding? Ask it over the wire, the same way for every client.

We open a TCP connection, send a BitTorrent handshake for the info-hash and read until the peer
shows what it has: a `bitfield` with every piece, or `have_all` (BEP 6). A client still checking
its files either refuses the connection, sends a partial bitfield/`have_none`, or says nothing;
all of those mean "not yet". This avoids trusting each client's own log format.
"""

import os
import socket
import struct
import time

PROTOCOL = b"\x13BitTorrent protocol"
MSG_BITFIELD = 5
MSG_HAVE_ALL = 0x0E
MSG_HAVE_NONE = 0x0F
MAX_MESSAGE = 1 << 20  # a bitfield for any benchmark payload is far smaller


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return buf


def _full_bitfield(payload, num_pieces):
    if len(payload) != (num_pieces + 7) // 8:
        return False
    full, rest = divmod(num_pieces, 8)
    if any(b != 0xFF for b in payload[:full]):
        return False
    return rest == 0 or payload[full] == (0xFF << (8 - rest)) & 0xFF


def has_all_pieces(host, port, info_hash_hex, num_pieces, timeout_s=3.0):
    """One probe: True if the peer at host:port answers for the torrent with every piece."""
    peer_id = b"-SB0001-" + os.urandom(12)
    reserved = b"\x00" * 5 + b"\x10\x00\x04"  # extension protocol + fast extension
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(PROTOCOL + reserved + bytes.fromhex(info_hash_hex) + peer_id)
            reply = _read_exact(s, 68)
            if reply[:20] != PROTOCOL or reply[28:48] != bytes.fromhex(info_hash_hex):
                return False
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                (length,) = struct.unpack(">I", _read_exact(s, 4))
                if length == 0:
                    continue  # keep-alive
                if length > MAX_MESSAGE:
                    return False
                body = _read_exact(s, length)
                kind = body[0]
                if kind == MSG_HAVE_ALL:
                    return True
                if kind == MSG_HAVE_NONE:
                    return False
                if kind == MSG_BITFIELD:
                    return _full_bitfield(body[1:], num_pieces)
                # extended handshake, allowed-fast, etc. may come first: keep reading
            return False
    except (OSError, ConnectionError, struct.error):
        return False


def wait_until_seeding(host, port, info_hash_hex, num_pieces, limit_s, alive=lambda: True, every_s=0.25):
    """Probe until the peer has every piece; False on timeout or when `alive()` turns False."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and alive():
        if has_all_pieces(host, port, info_hash_hex, num_pieces):
            return True
        time.sleep(every_s)
    return False
