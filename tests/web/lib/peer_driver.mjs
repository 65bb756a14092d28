// The Chromium peer drivers' common part (browser_peer.mjs runs WebTorrent in it,
// shoal_app_peer.mjs runs Shoal's web engine): arguments, the JSON-lines contract of
// tests/peers/README.md, a lifecycle that undoes everything exactly once, a static server on
// 127.0.0.1 (the page, the seed's file, the leech's uploads, plus the driver's own routes),
// Chromium with a fresh profile that dies with the driver, and the seed and leech roles.
//
// A driver calls runPeerDriver({ usage, page, pageUrl, routes, leechNeedsOutDir,
// warningLabel, seedOptions }); the page must define window.peerReady, peerSeed(url, name,
// announce, options), peerLeech(source, announce, options) and progress().
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { chromium } from 'playwright-core'

const OPTIONS_USAGE = `options: --announce URL (repeatable)  --max-seconds S (600)  --timeout S (leech, 120)
         --keep-seeding (leech)  --play (leech: stream into a <video>, report canplay)  --piece-length BYTES (seed)  --ready-timeout S (60)
         --idle-ms MS (leech: the client exists this long before the torrent is added, as in a page
         where someone pastes a magnet; default 0)
         --client-options JSON (Shoal: merged into createClient's options)
         --chromium PATH ($CHROMIUM or /usr/bin/chromium)  --chromium-arg ARG (repeatable)
         --mdns (keep Chromium's default of hiding host addresses behind mDNS names)
         --stun HOST:PORT (every RTCPeerConnection of the page asks this STUN server for its
         public address: a server-reflexive candidate, for a peer behind a NAT)
         --no-stdin  --help`

export const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
export const log = (...parts) => process.stderr.write(parts.join(' ') + '\n')

// ---- lifecycle: everything this driver started is undone in `stop`, exactly once -------------

let stopping = null
let opts, positionals, USAGE, readyTimeout, leechTimeout, clientOpts
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

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// ---- the static server: the page, the seed's file, the leech's uploads, the driver's routes ---

/** OUT_DIR/<p> for a path from the torrent (peer-controlled for a magnet), or null if unsafe. */
export function outPath (outDir, p) {
  if (typeof p !== 'string' || p.length === 0 || p.length > 4096 || p.includes('\0') || p.includes('\\')) return null
  const parts = p.split('/')
  if (parts.some(c => c === '' || c === '.' || c === '..')) return null
  const full = path.resolve(outDir, ...parts)
  return full.startsWith(path.resolve(outDir) + path.sep) ? full : null
}

function serve ({ seedFile, outDir, page, pageUrl, routes }) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://peer')
    const send = (status, body, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
      res.end(body)
    }
    try {
      if (req.method === 'GET' && url.pathname === new URL(pageUrl, 'http://peer/').pathname) {
        return send(200, await fsp.readFile(page), 'text/html')
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
      if (routes && await routes(req, res, url)) return
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
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]
// Host candidates with real addresses, not mDNS names nobody in the namespace resolves. Users'
// browsers do hide them; `--mdns` keeps that, and the peer on the other side then learns the
// browser's address from its connectivity checks (a peer-reflexive candidate).
const NO_MDNS_ARGS = ['--disable-features=WebRtcHideLocalIpsWithMdns']

async function launch (base, { pageUrl, warningLabel }) {
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
    args: [...CHROMIUM_ARGS, ...(opts.mdns ? [] : NO_MDNS_ARGS), ...opts['chromium-arg']],
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
    if (ev?.event === 'warning') return log(`${warningLabel} warning:`, ev.message)
    emit(ev.event, Object.fromEntries(Object.entries(ev).filter(([k]) => k !== 'event')))
  })
  // Report what the page's own candidates look like (a host candidate's mDNS name or address,
  // a server-reflexive one's address), so a test can tell which kind the other peer had to deal
  // with. The first few only. With --stun, every connection the page makes (whichever engine
  // runs in it) gets that server, as a site would configure it.
  await ctx.addInitScript(({ stun }) => {
    const Native = window.RTCPeerConnection
    if (!Native) return
    // Counted apart: a page's first connections gather many host candidates (UDP and TCP,
    // several connections at once) before any server-reflexive one.
    const reported = { host: 0, srflx: 0 }
    window.RTCPeerConnection = class extends Native {
      constructor (config, ...rest) {
        super(stun ? { ...config, iceServers: [{ urls: `stun:${stun}` }] } : config, ...rest)
        this.addEventListener('icecandidate', e => {
          const c = e.candidate
          if (!c || !(c.type in reported) || reported[c.type] >= 8) return
          reported[c.type]++
          const kind = c.type === 'srflx' ? 'srflx' : c.address?.endsWith('.local') ? 'mdns' : 'address'
          window.shoalEmit?.({ event: 'local_candidate', kind, ...(c.type === 'srflx' ? { address: c.address } : {}) })
        })
      }
    }
  }, { stun: opts.stun ?? null })
  await page.goto(new URL(pageUrl, base).href)
  await page.waitForFunction(() => window.peerReady === true, null, { timeout: readyTimeout * 1000 })
  return { ctx, page, version: ctx.browser()?.version() ?? null }
}

// ---- roles -----------------------------------------------------------------------------------

async function seed (cfg) {
  const file = positionals[1]
  if (!file || positionals.length !== 2) return fatal(`seed takes one FILE\n${USAGE}`)
  const st = await fsp.stat(file).catch(() => null)
  if (!st?.isFile()) return fatal(`no such file: ${file}`)
  const base = await serve({ ...cfg, seedFile: path.resolve(file) })
  const { page } = await launch(base, cfg)
  const pieceLength = opts['piece-length'] ? Number(opts['piece-length']) : undefined
  const info = await page.evaluate(([name, announce, o]) => window.peerSeed('/seed', name, announce, o),
    [path.basename(file), opts.announce, { ...cfg.seedOptions({ pieceLength, readyTimeout }), client: clientOpts }])
  emit('ready', { ...info, port: null })
  await new Promise(() => {}) // seed until stopped
}

async function leech (cfg) {
  const [, source, outDir] = positionals
  if (!source || positionals.length > 3 || (cfg.leechNeedsOutDir && !outDir)) {
    return fatal(`leech takes SOURCE ${cfg.leechNeedsOutDir ? 'OUT_DIR' : '[OUT_DIR]'}\n${USAGE}`)
  }
  let input
  if (source.startsWith('magnet:')) {
    input = { magnet: source }
  } else {
    const bytes = await fsp.readFile(source).catch(() => null)
    if (!bytes) return fatal(`no such torrent file: ${source}`)
    input = { torrent: bytes.toString('base64') }
  }
  if (outDir) await fsp.mkdir(outDir, { recursive: true })
  const base = await serve({ ...cfg, outDir: outDir ? path.resolve(outDir) : null })
  const { page } = await launch(base, cfg)
  const started = Date.now()
  const download = page.evaluate(([src, announce, o]) => window.peerLeech(src, announce, o), [input, opts.announce, { play: opts.play, upload: Boolean(outDir), idleMs: Number(opts['idle-ms'] ?? 0), client: clientOpts }])
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
  // The page's SHA-1 is of what the engine verified; check that the file written is the same.
  for (const f of outDir ? result.files : []) {
    const disk = crypto.createHash('sha1').update(await fsp.readFile(outPath(path.resolve(outDir), f.path))).digest('hex')
    if (disk !== f.sha1) return fatal(`${f.path}: written ${disk}, downloaded ${f.sha1}`)
  }
  emit('done', result)
  if (!opts['keep-seeding']) return stop('complete', 0)
  await new Promise(() => {})
}

/** `--client-options` as an object, or undefined when not given; throws on anything else. */
function parseClientOptions (text) {
  if (text === undefined) return undefined
  let value
  try { value = JSON.parse(text) } catch {}
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`--client-options is not a JSON object: ${text}`)
  }
  return value
}

/**
 * Runs a driver: `cfg.usage` (its two usage lines), `cfg.page` the
 * page's file served at `cfg.pageUrl`, `cfg.routes(req, res, url)` more static routes (true when
 * answered), `cfg.leechNeedsOutDir`, `cfg.warningLabel` for the page's warnings and
 * `cfg.seedOptions({ pieceLength, readyTimeout })` the options given to peerSeed.
 */
export async function runPeerDriver (cfg) {
  USAGE = `${cfg.usage}\n${OPTIONS_USAGE}`
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
        'idle-ms': { type: 'string' },
        'piece-length': { type: 'string' },
        'client-options': { type: 'string' },
        chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
        'chromium-arg': { type: 'string', multiple: true, default: [] },
        mdns: { type: 'boolean', default: false },
        stun: { type: 'string' },
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

  const seconds = (name) => {
    const v = Number(opts[name])
    if (!Number.isFinite(v) || v <= 0) {
      emit('error', { message: `--${name} must be a positive number of seconds` })
      process.exit(2)
    }
    return v
  }
  const maxSeconds = seconds('max-seconds')
  leechTimeout = seconds('timeout')
  readyTimeout = seconds('ready-timeout')
  try {
    clientOpts = parseClientOptions(opts['client-options'])
  } catch (e) {
    emit('error', { message: e.message })
    process.exit(2)
  }

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
  const role = positionals[0]
  try {
    if (role === 'seed') await seed(cfg)
    else if (role === 'leech') await leech(cfg)
    else { log(USAGE); await fatal(`unknown role ${JSON.stringify(role)}`) }
  } catch (e) {
    await fatal(String(e?.message || e))
  }
}
