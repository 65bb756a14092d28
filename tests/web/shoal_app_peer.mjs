#!/usr/bin/env node
// The Shoal web engine (web/shoal.js + crates/shoal-web as wasm) in headless Chromium as a
// peer, driven by playwright-core. Same JSON-lines contract as browser_peer.mjs:
//
//   node shoal_app_peer.mjs seed  FILE             --announce WS_URL [options]
//   node shoal_app_peer.mjs leech SOURCE [OUT_DIR] --announce WS_URL [--play] [options]
//
// * The driver's static server on 127.0.0.1 serves the repo's web/ (web/pkg must be built:
//   scripts/build-web.sh) and a harness page (shoal_harness.html) that uses only the public
//   API of shoal.js; a seed's file is fetched from it, a leech's bytes are hashed in the page
//   and, given OUT_DIR, PUT back and written there.
// * --play: the file is also streamed into a <video> through the Service Worker while it
//   downloads; "playing" reports currentTime advancing, "seeked" playback near the end.
// * WebRTC needs a non-loopback interface: run it in a network namespace (shoal_testkit::netns).
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { outPath, runPeerDriver } from './lib/peer_driver.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const WEB = path.resolve(HERE, '../../web')
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.svg': 'image/svg+xml' }

/** The repo's web/ (shoal.js, sw.js, pkg/) at the server's root. */
async function routes (req, res, url) {
  if (req.method !== 'GET') return false
  const file = outPath(WEB, decodeURIComponent(url.pathname.slice(1)) || 'index.html')
  const st = file && await fsp.stat(file).catch(() => null)
  if (!st?.isFile()) return false
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'content-length': st.size, 'cache-control': 'no-store' })
  await pipeline(fs.createReadStream(file), res)
  return true
}

await runPeerDriver({
  usage: `usage: shoal_app_peer.mjs seed FILE --announce URL [options]
       shoal_app_peer.mjs leech SOURCE [OUT_DIR] --announce URL [--play] [options]`,
  page: path.join(HERE, 'shoal_harness.html'),
  pageUrl: '/harness.html',
  routes,
  leechNeedsOutDir: false,
  warningLabel: 'shoal',
  seedOptions: ({ pieceLength }) => ({ pieceLength })
})
