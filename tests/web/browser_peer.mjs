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
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { chromium } from 'playwright-core'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const BUNDLE = path.join(HERE, 'node_modules/webtorrent/dist/webtorrent.min.js')
const PAGE = path.join(HERE, 'browser_peer.html')
const USAGE = `usage: browser_peer.mjs seed FILE --announce URL [options]
       browser_peer.mjs leech SOURCE OUT_DIR --announce URL [options]
options: --announce URL (repeatable)  --max-seconds S (600)  --timeout S (leech, 120)
         --keep-seeding (leech)  --play (leech: stream into a <video>, report canplay)  --piece-length BYTES (seed)  --ready-timeout S (60)
         --chromium PATH ($CHROMIUM or /usr/bin/chromium)  --chromium-arg ARG (repeatable)
         --no-stdin  --help`

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
const log = (...parts) => process.stderr.write(parts.join(' ') + '\n')

// ---- lifecycle: everything this driver started is undone in `stop`, exactly once -------------

let stopping = null
const cleanups = [] // run in reverse order on stop

function stop (reason, code) {
  if (!stopping) {
    stopping = (async () => {
      for (const undo of cleanups.reverse()) {
        try { await Promise.race([undo(), sleep(5000)]) } catch (e) { log('cleanup:', e.message) }
      }
      emit('exit', { reason, code })
      process.exit(code)
    })()
  }
  return stopping
}

function fatal (message) {
  emit('error', { message })
  return stop(`error: ${message}`, 2)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

let opts, positionals
try {
  ({ values: opts, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      announce: { type: 'string', multiple: true, default: [] },
      'max-seconds': { type: 'string', default: '600' },
      timeout: { type: 'string', default: '120' },
      'ready-timeout': { type: 'string', default: '60' },
      'keep-seeding': { type: 'boolean', default: false },
      play: { type: 'boolean', default: false },
      'piece-length': { type: 'string' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      'chromium-arg': { type: 'string', multiple: true, default: [] },
      'no-stdin': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  }))
} catch (e) {
  log(USAGE)
  emit('error', { message: `bad arguments: ${e.message}` })
  process.exit(2)
}
if (opts.help) { console.log(USAGE); process.exit(0) }

const role = positionals[0]
const seconds = (name) => {
  const v = Number(opts[name])
  if (!Number.isFinite(v) || v <= 0) {
    emit('error', { message: `--${name} must be a positive number of seconds` })
    process.exit(2)
  }
  return v
}
const maxSeconds = seconds('max-seconds')
const leechTimeout = seconds('timeout')
const readyTimeout = seconds('ready-timeout')
const t0 = Date.now()
const elapsed = () => Math.round(Date.now() - t0) / 1000

setTimeout(() => stop('max-seconds reached', 0), maxSeconds * 1000).unref()
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => stop(`signal ${sig}`, 0))
if (!opts['no-stdin']) {
  process.stdin.on('data', chunk => {
    for (const line of String(chunk).split('\n').filter(l => l.trim())) log('browser driver: unsupported command', line)
  })
  process.stdin.on('end', () => stop('stdin closed', 0))
  process.stdin.on('error', () => stop('stdin closed', 0))
  process.stdin.resume()
}
process.on('unhandledRejection', e => fatal(String(e?.stack || e)))

// ---- the static server: page, bundle, the seed's file, and the leech's uploads ---------------

/** OUT_DIR/<p> for a path from the torrent (peer-controlled for a magnet), or null if unsafe. */
function outPath (outDir, p) {
  if (typeof p !== 'string' || p.length === 0 || p.length > 4096 || p.includes('\0') || p.includes('\\')) return null
  const parts = p.split('/')
  if (parts.some(c => c === '' || c === '.' || c === '..')) return null
  const full = path.resolve(outDir, ...parts)
  return full.startsWith(path.resolve(outDir) + path.sep) ? full : null
}

function serve ({ seedFile, outDir }) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://peer')
    const send = (status, body, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
      res.end(body)
    }
    try {
      if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/index.html')) {
        return send(200, await fsp.readFile(PAGE), 'text/html')
      }
      if (req.method === 'GET' && url.pathname === '/webtorrent.min.js') {
        res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' })
        return await pipeline(fs.createReadStream(BUNDLE), res)
      }
      if (req.method === 'GET' && url.pathname === '/sw.min.js') {
        res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' })
        return await pipeline(fs.createReadStream(path.join(HERE, 'node_modules/webtorrent/dist/sw.min.js')), res)
      }
      if (req.method === 'GET' && url.pathname === '/seed' && seedFile) {
        const { size } = await fsp.stat(seedFile)
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
        return await pipeline(fs.createReadStream(seedFile), res)
      }
      if (req.method === 'PUT' && url.pathname === '/out' && outDir) {
        const file = outPath(outDir, url.searchParams.get('path'))
        const size = Number(url.searchParams.get('size'))
        if (!file || !Number.isSafeInteger(size) || size < 0) return send(400, 'bad path or size')
        await fsp.mkdir(path.dirname(file), { recursive: true })
        let got = 0
        req.on('data', chunk => {
          got += chunk.length
          if (got > size) req.destroy(new Error('body longer than announced'))
        })
        await pipeline(req, fs.createWriteStream(file))
        return got === size ? send(204, '') : send(400, `got ${got} of ${size} bytes`)
      }
      send(404, 'not found')
    } catch (e) {
      log('static server:', e.message)
      if (!res.headersSent) send(500, String(e.message))
      else res.destroy()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      cleanups.push(() => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
      resolve(`http://127.0.0.1:${server.address().port}/`)
    })
  })
}

// ---- Chromium --------------------------------------------------------------------------------

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // host candidates with real addresses, not mDNS names nobody in the namespace resolves
  '--disable-features=WebRtcHideLocalIpsWithMdns'
]

async function launch (base) {
  if (!fs.existsSync(opts.chromium)) throw new Error(`no Chromium at ${opts.chromium} (scripts/install-test-deps.sh)`)
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'shoal-chromium-'))
  cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }))
  // Chromium dies with this driver even if it is SIGKILLed: PR_SET_PDEATHSIG through setpriv.
  const wrapper = path.join(dir, 'chromium.sh')
  await fsp.writeFile(wrapper, `#!/bin/sh\nexec setpriv --pdeathsig KILL -- ${JSON.stringify(opts.chromium)} "$@"\n`, { mode: 0o755 })
  const profile = path.join(dir, 'profile')
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: fs.existsSync('/usr/bin/setpriv') ? wrapper : opts.chromium,
    headless: true,
    args: [...CHROMIUM_ARGS, ...opts['chromium-arg']],
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false
  })
  cleanups.push(() => ctx.close())
  const page = ctx.pages()[0] || await ctx.newPage()
  page.on('console', m => log(`[page ${m.type()}]`, m.text()))
  page.on('pageerror', e => log('[page error]', e.message))
  page.on('crash', () => fatal('the Chromium page crashed'))
  ctx.on('close', () => { if (!stopping) fatal('Chromium exited') })
  await page.exposeFunction('shoalEmit', ev => {
    if (ev?.event === 'error') return fatal(ev.message)
    if (ev?.event === 'warning') return log('webtorrent warning:', ev.message)
    emit(ev.event, Object.fromEntries(Object.entries(ev).filter(([k]) => k !== 'event')))
  })
  await page.goto(base)
  await page.waitForFunction(() => window.peerReady === true, null, { timeout: readyTimeout * 1000 })
  return { ctx, page, version: ctx.browser()?.version() ?? null }
}

// ---- roles -----------------------------------------------------------------------------------

async function seed () {
  const file = positionals[1]
  if (!file || positionals.length !== 2) return fatal(`seed takes one FILE\n${USAGE}`)
  const st = await fsp.stat(file).catch(() => null)
  if (!st?.isFile()) return fatal(`no such file: ${file}`)
  const base = await serve({ seedFile: path.resolve(file) })
  const { page } = await launch(base)
  const pieceLength = opts['piece-length'] ? Number(opts['piece-length']) : undefined
  const info = await page.evaluate(([name, announce, o]) => window.peerSeed('/seed', name, announce, o),
    [path.basename(file), opts.announce, { pieceLength, announceTimeoutMs: readyTimeout * 1000 }])
  emit('ready', { ...info, port: null })
  await new Promise(() => {}) // seed until stopped
}

async function leech () {
  const [, source, outDir] = positionals
  if (!source || !outDir || positionals.length !== 3) return fatal(`leech takes SOURCE OUT_DIR\n${USAGE}`)
  let input
  if (source.startsWith('magnet:')) {
    input = { magnet: source }
  } else {
    const bytes = await fsp.readFile(source).catch(() => null)
    if (!bytes) return fatal(`no such torrent file: ${source}`)
    input = { torrent: bytes.toString('base64') }
  }
  await fsp.mkdir(outDir, { recursive: true })
  const base = await serve({ outDir: path.resolve(outDir) })
  const { page } = await launch(base)
  const started = Date.now()
  const download = page.evaluate(([src, announce, o]) => window.peerLeech(src, announce, o), [input, opts.announce, { play: opts.play }])
  emit('ready', { port: null, source })
  const progress = setInterval(async () => {
    const p = await page.evaluate(() => window.progress?.()).catch(() => null)
    if (p && !stopping) emit('progress', p)
  }, 1000)
  cleanups.push(() => clearInterval(progress))
  const timedOut = sleep(leechTimeout * 1000).then(() => null)
  const result = await Promise.race([download, timedOut])
  clearInterval(progress)
  if (!result) {
    emit('timeout', { seconds: (Date.now() - started) / 1000 })
    return stop('timeout', 3)
  }
  // The page's SHA-1 is of what WebTorrent verified; check that the file written is the same.
  for (const f of result.files) {
    const disk = crypto.createHash('sha1').update(await fsp.readFile(outPath(path.resolve(outDir), f.path))).digest('hex')
    if (disk !== f.sha1) return fatal(`${f.path}: written ${disk}, downloaded ${f.sha1}`)
  }
  emit('done', result)
  if (!opts['keep-seeding']) return stop('complete', 0)
  await new Promise(() => {})
}

try {
  if (role === 'seed') await seed()
  else if (role === 'leech') await leech()
  else { log(USAGE); await fatal(`unknown role ${JSON.stringify(role)}`) }
} catch (e) {
  await fatal(String(e?.message || e))
}
