// Shared by UI drivers: a static server for the repo's web/ on 127.0.0.1, one headless
// Chromium with a fresh context per "tab" (separate storage and Service Worker, like separate
// people), JSON-lines output and a lifecycle that undoes everything exactly once.
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web')

export const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
export const log = (...parts) => process.stderr.write(parts.join(' ') + '\n')
export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

const undo = [] // run in reverse order by finish()
let finishing = null

/** Registers `fn` to run (bounded to 5 s) when the driver finishes. */
export const onFinish = fn => undo.push(fn)

/** Undoes everything, emits `exit` and exits with `code`. Idempotent. */
export function finish (reason, code) {
  finishing ??= (async () => {
    for (const fn of undo.reverse()) {
      try { await Promise.race([fn(), sleep(5000)]) } catch (e) { log('cleanup:', e.message) }
    }
    emit('exit', { reason, code })
    process.exit(code)
  })()
  return finishing
}

export function fail (message) {
  emit('error', { message })
  return finish(`error: ${message}`, 2)
}

/** Stops on signals, on stdin's end (unless disabled) and after `maxSeconds`. */
export function installLifecycle ({ maxSeconds, stdin = true }) {
  setTimeout(() => fail(`max-seconds (${maxSeconds}) reached`), maxSeconds * 1000).unref()
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(`signal ${sig}`, 0))
  if (stdin) {
    process.stdin.on('end', () => finish('stdin closed', 0))
    process.stdin.on('error', () => finish('stdin closed', 0))
    process.stdin.resume()
  }
  process.on('unhandledRejection', e => fail(String(e?.stack || e)))
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' }

/** Serves WEB read-only on 127.0.0.1 (a secure context); resolves with the base URL. */
export function serveWeb () {
  return serveDir(WEB)
}

/**
 * Serves `dir` read-only on `host` (any 127.0.0.0/8 address is a secure context; another one
 * than a server's makes a page of another site); resolves with the base URL.
 */
export function serveDir (dir, host = '127.0.0.1') {
  const root = path.resolve(dir)
  const server = http.createServer(async (req, res) => {
    try {
      const rel = decodeURIComponent(new URL(req.url, 'http://app').pathname).replace(/^\/+/, '') || 'index.html'
      const file = path.resolve(root, rel)
      const st = req.method === 'GET' && file.startsWith(root + path.sep) && await fsp.stat(file).catch(() => null)
      if (!st?.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' })
        return res.end('not found')
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'content-length': st.size, 'cache-control': 'no-store' })
      await pipeline(fs.createReadStream(file), res)
    } catch (e) {
      log('static server:', e.message)
      res.destroy()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => {
      onFinish(() => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
      resolve(`http://${host}:${server.address().port}/`)
    })
  })
}

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // host candidates with real addresses, not mDNS names nobody in the namespace resolves
  '--disable-features=WebRtcHideLocalIpsWithMdns'
]

/** Starts headless Chromium; it dies with this process even on SIGKILL (setpriv pdeathsig). */
export async function launchBrowser (executable, extraArgs = []) {
  if (!fs.existsSync(executable)) throw new Error(`no Chromium at ${executable} (scripts/install-test-deps.sh)`)
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'shoal-app-ui-'))
  onFinish(() => fsp.rm(dir, { recursive: true, force: true }))
  const wrapper = path.join(dir, 'chromium.sh')
  await fsp.writeFile(wrapper, `#!/bin/sh\nexec setpriv --pdeathsig KILL -- ${JSON.stringify(executable)} "$@"\n`, { mode: 0o755 })
  const browser = await chromium.launch({
    executablePath: fs.existsSync('/usr/bin/setpriv') ? wrapper : executable,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    downloadsPath: path.join(dir, 'downloads'),
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false
  })
  onFinish(() => browser.close())
  browser.on('disconnected', () => { if (!finishing) fail('Chromium exited') })
  return browser
}

/**
 * A new tab in a context of its own, its console logged with `label`; `ignoreHTTPSErrors`
 * accepts a self-signed certificate (the https test of `shoal serve`).
 */
export async function openTab (browser, label, { viewport = { width: 1280, height: 860 }, ignoreHTTPSErrors = false } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, ignoreHTTPSErrors })
  const page = await context.newPage()
  page.on('console', m => {
    log(`[${label} ${m.type()}]`, m.text())
    // A Rust panic in the engine is a bug even when the page carries on.
    if (/panicked at/.test(m.text())) fail(`tab ${label}: the engine panicked: ${m.text().split('\n')[0]}`)
  })
  page.on('pageerror', e => log(`[${label} page error]`, e.message))
  page.on('crash', () => fail(`tab ${label} crashed`))
  return { label, context, page, close: () => context.close() }
}
