#!/usr/bin/env node
// WebTorrent 3 in node, with WebRTC from @roamhq/wrtc, as a reference peer.
//
//   node node_peer.mjs seed  FILE           --announce WS_URL [options]
//   node node_peer.mjs leech SOURCE OUT_DIR --announce WS_URL [options]
//
// SOURCE is a magnet URI or a .torrent file. The contract is that of the drivers in tests/peers
// and of browser_peer.mjs: JSON events one a line on stdout ("ready", "metadata",
// "peer_connected", "progress", "done", "timeout" exit 3, "error" exit 2, "exit"), logs on
// stderr, end-of-file on stdin stops it, --max-seconds bounds its whole life.
//
// * Like a browser, it is found through WebSocket trackers only (DHT, LSD, uTP, UPnP, NAT-PMP
//   and web seeds off), so its peers are WebRTC ones. No STUN: host candidates only, which
//   need an interface other than loopback (run it in shoal_testkit::netns).
// * "ready" for a seed comes once a tracker answered its announce and carries the magnet,
//   info hash, piece length and files; a leech's "done" carries each file's size and SHA-1,
//   read back from what it wrote under OUT_DIR and checked against WebTorrent's own store.
// * `webrtc-polyfill` is mapped to @roamhq/wrtc by a resolve hook (node-wrtc/), registered
//   here before WebTorrent is imported.
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import { register } from 'node:module'
import path from 'node:path'
import { parseArgs } from 'node:util'

const USAGE = `usage: node_peer.mjs seed FILE --announce URL [options]
       node_peer.mjs leech SOURCE OUT_DIR --announce URL [options]
options: --announce URL (repeatable)  --max-seconds S (600)  --timeout S (leech, 120)
         --ready-timeout S (60)  --keep-seeding (leech)  --piece-length BYTES (seed)
         --no-stdin  --help`

const out = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
const log = (...parts) => process.stderr.write(parts.join(' ') + '\n')
const started = performance.now()
const seconds = () => Math.round(performance.now() - started) / 1000

let client = null
let exiting = false

// Every way out goes through here once: the client is destroyed (sockets, peer connections,
// files closed), bounded so that a wedged libwebrtc cannot keep the process alive.
function finish (reason, code) {
  if (exiting) return
  exiting = true
  const exit = () => { out('exit', { reason, code }); process.exit(code) }
  setTimeout(exit, 5000).unref()
  if (client) client.destroy(exit)
  else exit()
}

function die (message) {
  if (!exiting) out('error', { message })
  finish(`error: ${message}`, 2)
}

let opts, args
try {
  ({ values: opts, positionals: args } = parseArgs({
    allowPositionals: true,
    options: {
      announce: { type: 'string', multiple: true, default: [] },
      'max-seconds': { type: 'string', default: '600' },
      timeout: { type: 'string', default: '120' },
      'ready-timeout': { type: 'string', default: '60' },
      'keep-seeding': { type: 'boolean', default: false },
      'piece-length': { type: 'string' },
      'no-stdin': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  }))
} catch (e) {
  log(USAGE)
  out('error', { message: `bad arguments: ${e.message}` })
  process.exit(2)
}
if (opts.help) {
  console.log(USAGE)
  process.exit(0)
}
const positiveSeconds = name => {
  const v = Number(opts[name])
  if (!Number.isFinite(v) || v <= 0) {
    out('error', { message: `--${name} must be a positive number of seconds` })
    process.exit(2)
  }
  return v * 1000
}
const lifetimeMs = positiveSeconds('max-seconds')
const leechTimeoutMs = positiveSeconds('timeout')
const readyTimeoutMs = positiveSeconds('ready-timeout')
if (opts.announce.length === 0) {
  out('error', { message: 'a WebTorrent peer needs --announce ws://... (it has no other way to meet peers)' })
  process.exit(2)
}

setTimeout(() => finish('max-seconds reached', 0), lifetimeMs).unref()
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(`signal ${sig}`, 0))
process.on('unhandledRejection', e => die(String(e?.stack || e)))
process.on('uncaughtException', e => die(String(e?.stack || e)))
if (!opts['no-stdin']) {
  process.stdin.on('data', d => log('node peer: ignoring command', String(d).trim()))
  process.stdin.on('end', () => finish('stdin closed', 0))
  process.stdin.on('error', () => finish('stdin closed', 0))
  process.stdin.resume()
}

register('./node-wrtc/hooks.mjs', import.meta.url)
const { default: WebTorrent } = await import('webtorrent')

client = new WebTorrent({
  tracker: { rtcConfig: { iceServers: [] } },
  dht: false,
  lsd: false,
  utp: false,
  natUpnp: false,
  natPmp: false,
  webSeeds: false
})
client.on('error', e => die(`webtorrent: ${e?.message || e}`))

const describe = t => ({
  magnet: t.magnetURI,
  info_hash: t.infoHash,
  name: t.name,
  length: t.length,
  piece_length: t.pieceLength,
  files: t.files.map(f => ({ path: f.path, size: f.length }))
})

function watch (torrent) {
  torrent.on('warning', w => log('webtorrent warning:', w?.message || w))
  torrent.on('wire', (wire, addr) => out('peer_connected', { peer: addr || wire.remoteAddress || null, type: wire.type, seconds: seconds() }))
}

async function sha1 (stream) {
  const hash = crypto.createHash('sha1')
  for await (const chunk of stream) hash.update(chunk)
  return hash.digest('hex')
}

/** OUT_DIR/<p> for a path from the torrent (a magnet's peer chose it), or null if unsafe. */
function inside (dir, p) {
  const root = path.resolve(dir)
  const full = path.resolve(root, p)
  return full.startsWith(root + path.sep) ? full : null
}

function seed () {
  if (args.length !== 2) return die(`seed takes one FILE\n${USAGE}`)
  const file = path.resolve(args[1])
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) return die(`no such file: ${file}`)
  const seedOpts = { announce: opts.announce }
  if (opts['piece-length']) seedOpts.pieceLength = Number(opts['piece-length'])
  const timer = setTimeout(() => die(`no tracker answered the announce within ${readyTimeoutMs / 1000} s`), readyTimeoutMs)
  let announced = false
  let hashed = null
  const ready = () => {
    if (!announced || !hashed || exiting) return
    clearTimeout(timer)
    out('ready', { ...describe(hashed), port: null, seconds: seconds() })
  }
  // Listen before the torrent is ready: the tracker can answer the first announce before that.
  const torrent = client.seed(file, seedOpts, t => { hashed = t; ready() })
  watch(torrent)
  torrent.once('trackerAnnounce', () => { announced = true; ready() })
}

async function leech () {
  if (args.length !== 3) return die(`leech takes SOURCE OUT_DIR\n${USAGE}`)
  const [, source, outDir] = args
  let input = source
  if (!source.startsWith('magnet:')) {
    input = await fsp.readFile(source).catch(() => null)
    if (!input) return die(`no such torrent file: ${source}`)
  }
  await fsp.mkdir(outDir, { recursive: true })
  const torrent = client.add(input, { path: path.resolve(outDir), announce: opts.announce })
  watch(torrent)
  out('ready', { port: null, source })
  torrent.once('metadata', () => out('metadata', { ...describe(torrent), seconds: seconds() }))
  let firstByte = null
  torrent.once('download', () => { firstByte = seconds() })
  const ticker = setInterval(() => out('progress', { bytes: torrent.downloaded, progress: torrent.progress, peers: torrent.numPeers, seconds: seconds() }), 1000)
  const done = await Promise.race([
    new Promise(resolve => (torrent.done ? resolve(true) : torrent.once('done', () => resolve(true)))),
    new Promise(resolve => setTimeout(() => resolve(false), leechTimeoutMs).unref())
  ])
  clearInterval(ticker)
  if (!done) {
    out('timeout', { seconds: seconds(), bytes: torrent.downloaded, peers: torrent.numPeers })
    return finish('timeout', 3)
  }
  const secs = seconds()
  const files = []
  for (const f of torrent.files) {
    const disk = inside(outDir, f.path)
    if (!disk) return die(`unsafe path in the torrent: ${JSON.stringify(f.path)}`)
    // What WebTorrent verified (its store) must be what landed on disk.
    const stored = await sha1(f.createReadStream())
    const written = await sha1(fs.createReadStream(disk))
    if (stored !== written) return die(`${f.path}: written ${written}, downloaded ${stored}`)
    files.push({ path: f.path, size: f.length, sha1: written })
  }
  out('done', {
    ...describe(torrent),
    seconds: secs,
    first_byte_seconds: firstByte,
    bytes: torrent.length,
    sha1: files.length === 1 ? files[0].sha1 : null,
    files,
    peers: torrent.numPeers
  })
  if (!opts['keep-seeding']) finish('complete', 0)
}

try {
  if (args[0] === 'seed') seed()
  else if (args[0] === 'leech') await leech()
  else {
    log(USAGE)
    die(`unknown role ${JSON.stringify(args[0])}`)
  }
} catch (e) {
  die(String(e?.message || e))
}
