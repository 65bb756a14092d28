#!/usr/bin/python3
"""Checks of the harness's own parts (no BitTorrent client needed, runs in a second):

  /usr/bin/python3 -m unittest discover -s benches -p 'test_*.py'
"""

import os
import socket
import struct
import sys
import threading
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bt_probe  # noqa: E402
import report  # noqa: E402
from payloads import canonical_label, parse_size  # noqa: E402
from static_tracker import StaticTracker  # noqa: E402

INFO_HASH = "ab" * 20


class FakePeer:
    """Accepts one connection, answers the handshake, then sends the given messages."""

    def __init__(self, messages, info_hash=INFO_HASH):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages = messages
        self.info_hash = bytes.fromhex(info_hash)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.recv(68)
                conn.sendall(bt_probe.PROTOCOL + b"\0" * 8 + self.info_hash + b"-XX0000-" + b"0" * 12)
                for kind, body in self.messages:
                    conn.sendall(struct.pack(">IB", 1 + len(body), kind) + body)
                conn.recv(1)  # wait for the prober to hang up
        except OSError:
            pass  # the prober may hang up early, with our messages unread (a reset)
        finally:
            self.server.close()


class ProbeTest(unittest.TestCase):
    def probe(self, messages, pieces, info_hash=INFO_HASH):
        peer = FakePeer(messages, info_hash)
        return bt_probe.has_all_pieces("127.0.0.1", peer.port, INFO_HASH, pieces, timeout_s=2)

    def test_full_bitfield_is_seeding(self):
        self.assertTrue(self.probe([(bt_probe.MSG_BITFIELD, b"\xff\xc0")], 10))

    def test_missing_piece_is_not_seeding(self):
        self.assertFalse(self.probe([(bt_probe.MSG_BITFIELD, b"\xff\x80")], 10))

    def test_spare_bits_set_is_rejected(self):
        self.assertFalse(self.probe([(bt_probe.MSG_BITFIELD, b"\xff\xe0")], 10))

    def test_have_all_after_extended_handshake(self):
        self.assertTrue(self.probe([(20, b"\0d1:md1:ei0eee"), (bt_probe.MSG_HAVE_ALL, b"")], 10))

    def test_have_none(self):
        self.assertFalse(self.probe([(bt_probe.MSG_HAVE_NONE, b"")], 10))

    def test_other_torrent(self):
        self.assertFalse(self.probe([(bt_probe.MSG_HAVE_ALL, b"")], 10, info_hash="cd" * 20))

    def test_nobody_listening(self):
        with socket.create_server(("127.0.0.1", 0)) as s:
            port = s.getsockname()[1]
        self.assertFalse(bt_probe.has_all_pieces("127.0.0.1", port, INFO_HASH, 10, timeout_s=1))


class TrackerTest(unittest.TestCase):
    def test_replies_with_compact_peers(self):
        tracker = StaticTracker()
        try:
            tracker.peers = [("127.0.0.2", 6881)]
            with urllib.request.urlopen(tracker.url + "?info_hash=x&port=1", timeout=5) as r:
                body = r.read()
        finally:
            tracker.close()
        self.assertIn(b"5:peers6:\x7f\x00\x00\x02\x1a\xe1e", body)


class SizeTest(unittest.TestCase):
    def test_units(self):
        self.assertEqual(parse_size("200M"), 200 << 20)
        self.assertEqual(parse_size("1g"), 1 << 30)
        self.assertEqual(parse_size("1GiB"), 1 << 30)
        self.assertEqual(parse_size("4096"), 4096)
        self.assertEqual(canonical_label("1024m"), "1G")
        self.assertEqual(canonical_label("200MiB"), "200M")
        for bad in ("", "0", "1T", "-1M", "M", "1Gi"):
            with self.assertRaises(ValueError):
                parse_size(bad)


class ReportTest(unittest.TestCase):
    def row(self, client, wall, rss, ok=True, scenario="libtorrent -> CLIENT"):
        return {"scenario": scenario, "client": client, "size_label": "200M", "size_bytes": 200 << 20,
                "ok": ok, "wall_s": wall, "peak_rss_mib": rss}

    def test_medians_and_ratios_against_rqbit(self):
        rows = [self.row("rqbit", w, 20) for w in (1.0, 2.0, 9.0)]
        rows += [self.row("shoal", w, 10) for w in (0.5, 1.0, 1.5)]
        rows.append(self.row("shoal", 0.1, 1, ok=False))  # a failed run does not count
        by_client = {s["client"]: s for s in report.summarize(rows)}
        self.assertEqual(by_client["rqbit"]["wall_s"], 2.0)
        self.assertEqual(by_client["shoal"]["wall_s"], 1.0)
        self.assertEqual(by_client["shoal"]["ok_runs"], 3)
        self.assertEqual(by_client["shoal"]["runs"], 4)
        self.assertAlmostEqual(by_client["shoal"]["wall_vs_rqbit"], 0.5)
        self.assertAlmostEqual(by_client["shoal"]["rss_vs_rqbit"], 0.5)

    def test_no_baseline_in_other_scenario(self):
        rows = [self.row("rqbit", 1.0, 20), self.row("shoal", 1.0, 10, scenario="CLIENT -> CLIENT")]
        shoal = next(s for s in report.summarize(rows) if s["client"] == "shoal")
        self.assertIsNone(shoal["wall_vs_rqbit"])
        self.assertIn("| shoal -> shoal | 200M | 1/1 |", report.table([shoal]))


if __name__ == "__main__":
    unittest.main()
