#!/usr/bin/env node
// WebTorrent 3 in headless Chromium as a reference peer, driven by playwright-core.
//
//   node browser_peer.mjs seed  FILE           --announce WS_URL [options]
//   node browser_peer.mjs leech SOURCE OUT_DIR --announce WS_URL [options]
//
// SOURCE is a magnet URI or a .torrent file. It keeps the contract of the drivers in
// tests/peers (see tests/peers/README.md): JSON events one a line on stdout ("ready",
// "metadata", "peer_connected", "progress", "done", "timeout" exit 3, "error" exit 2, "exit"),
// logs on stderr, end-of-file on stdin stops it, --max-seconds bounds its whole life.
//
// * A browser peer has no listening port: "ready" carries the magnet and info hash instead
//   (seed: after a tracker took its announce, so a leecher starting next gets offered to it;
//   leech: once the torrent is added).
// * WebRTC in Chromium gathers no candidates when the only interface is loopback: run it in a
//   network namespace with a non-loopback address (shoal_testkit::netns does that).
// * The page and WebTorrent's bundle come from a static server of this driver on 127.0.0.1; a
//   seed's file is fetched from it too, and a leech PUTs every finished file back to it, which
//   writes OUT_DIR/<path in torrent> (paths checked: relative, no "..").
// * Chromium gets a fresh --user-data-dir (deleted on exit) and dies with this process
//   (setpriv --pdeathsig), so nothing outlives a killed test.
import fs from 'node:fs'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { runPeerDriver } from './lib/peer_driver.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const DIST = path.join(HERE, 'node_modules/webtorrent/dist')

/** WebTorrent's bundle and its Service Worker, next to the page. */
async function routes (req, res, url) {
  const file = { '/webtorrent.min.js': 'webtorrent.min.js', '/sw.min.js': 'sw.min.js' }[url.pathname]
  if (req.method !== 'GET' || !file) return false
  res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' })
  await pipeline(fs.createReadStream(path.join(DIST, file)), res)
  return true
}

await runPeerDriver({
  usage: `usage: browser_peer.mjs seed FILE --announce URL [options]
       browser_peer.mjs leech SOURCE OUT_DIR --announce URL [options]`,
  page: path.join(HERE, 'browser_peer.html'),
  pageUrl: '/',
  routes,
  leechNeedsOutDir: true,
  warningLabel: 'webtorrent',
  seedOptions: ({ pieceLength, readyTimeout }) => ({ pieceLength, announceTimeoutMs: readyTimeout * 1000 })
})
