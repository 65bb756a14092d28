#!/usr/bin/env node
// Sharing files from a tab: how long the page takes to turn bytes it holds into a seeded
// torrent, and how long its main thread stays blocked meanwhile (the longest gap between
// the ticks of a 5 ms interval: input and rendering wait as long). Shoal's web engine
// (web/shoal.js) against WebTorrent 3's browser bundle, one after the other in one headless
// Chromium page, on the same random bytes, no trackers.
//
//   scripts/build-web.sh && (cd tests/web && npm ci)      # once
//   node benches/web_share.mjs [--sizes 64,256] [--runs 3] [--json-out FILE]
//
// Prints one line per run and the medians; --json-out writes every run.
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createRequire } from 'node:module'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..')
const WEB = path.join(ROOT, 'web')
const NODE_MODULES = path.join(ROOT, 'tests/web/node_modules')
const require = createRequire(path.join(NODE_MODULES, 'x.js'))
const { chromium } = require('playwright-core')

const { values: opts } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64,256' },
    runs: { type: 'string', default: '3' },
    'json-out': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
})
const sizes = opts.sizes.split(',').map(Number).filter(n => n > 0 && n <= 1024)
const runs = Math.max(1, Math.min(20, Number(opts.runs)))
if (!fs.existsSync(path.join(WEB, 'pkg/shoal_web_bg.wasm'))) throw new Error('web/pkg is not built: scripts/build-web.sh')

const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' }
const PAGE = `<!doctype html><meta charset="utf-8"><title>share benchmark</title>
<script type="module">
import WebTorrent from '/wt/webtorrent.min.js'
import { createClient } from '/shoal.js'
const shoal = await createClient({ serviceWorker: false })
const wt = new WebTorrent({ dht: false, lsd: false, utp: false, tracker: false })
// Times fn() and the longest gap between ticks of a 5 ms interval while it runs.
async function timed (fn) {
  let last = performance.now()
  let maxGap = 0
  const beat = setInterval(() => { const now = performance.now(); maxGap = Math.max(maxGap, now - last); last = now }, 5)
  const t0 = performance.now()
  const infoHash = await fn()
  const seconds = (performance.now() - t0) / 1000
  await new Promise(resolve => setTimeout(resolve, 10))
  maxGap = Math.max(maxGap, performance.now() - last)
  clearInterval(beat)
  return { seconds, max_gap_ms: Math.round(maxGap), info_hash: infoHash }
}
window.share = async (who, mib, name) => {
  const data = new Uint8Array(mib << 20)
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536))
  await new Promise(resolve => setTimeout(resolve, 50))
  if (who === 'shoal') {
    return timed(async () => { const t = await shoal.seed([{ name, data }]); const h = t.infoHash; t.destroy(); return h })
  }
  return timed(() => new Promise((resolve, reject) => {
    wt.seed(new File([data], name), { announce: [] }, t => { const h = t.infoHash; t.destroy(); resolve(h) })
    wt.once('error', reject)
  }))
}
window.ready = true
</script>`

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x')
  if (url.pathname === '/') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(PAGE) }
  const file = url.pathname.startsWith('/wt/')
    ? path.join(NODE_MODULES, 'webtorrent/dist', path.basename(url.pathname))
    : path.join(WEB, path.normalize(url.pathname).replace(/^(\.\.[/\\])+/, ''))
  const body = await fsp.readFile(file).catch(() => null)
  if (!body) { res.writeHead(404); return res.end() }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' })
  res.end(body)
})
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
const profile = await fsp.mkdtemp(path.join(os.tmpdir(), 'shoal-share-bench-'))
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync']
})
const rows = []
try {
  const page = ctx.pages()[0] || await ctx.newPage()
  page.on('pageerror', e => console.error('[page error]', e.message))
  await page.goto(`http://127.0.0.1:${server.address().port}/`)
  await page.waitForFunction(() => window.ready === true, null, { timeout: 30000 })
  for (const mib of sizes) {
    // One untimed share each first: the first allocation of a size grows the page's memory.
    for (const who of ['shoal', 'webtorrent']) await page.evaluate(([w, m]) => window.share(w, m, 'warmup.bin'), [who, mib])
    for (let run = 0; run < runs; run++) {
      for (const who of run % 2 ? ['webtorrent', 'shoal'] : ['shoal', 'webtorrent']) {
        const r = await page.evaluate(([w, m, n]) => window.share(w, m, n), [who, mib, `r${run}.bin`])
        rows.push({ who, mib, run, ...r })
        console.log(`${who.padEnd(10)} ${String(mib).padStart(5)} MiB  ${r.seconds.toFixed(3)} s  ${(mib / r.seconds).toFixed(0).padStart(5)} MiB/s  main thread blocked up to ${r.max_gap_ms} ms`)
      }
    }
  }
} finally {
  await ctx.close()
  server.close()
  await fsp.rm(profile, { recursive: true, force: true })
}

const median = xs => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const summary = []
console.log('\nsize      shoal s  webtorrent s  ratio   shoal max gap  webtorrent max gap')
for (const mib of sizes) {
  const of = who => rows.filter(r => r.mib === mib && r.who === who)
  const s = { mib, shoal_s: median(of('shoal').map(r => r.seconds)), webtorrent_s: median(of('webtorrent').map(r => r.seconds)), shoal_gap_ms: median(of('shoal').map(r => r.max_gap_ms)), webtorrent_gap_ms: median(of('webtorrent').map(r => r.max_gap_ms)) }
  s.ratio = s.shoal_s / s.webtorrent_s
  summary.push(s)
  console.log(`${String(mib).padStart(4)} MiB  ${s.shoal_s.toFixed(3).padStart(7)}  ${s.webtorrent_s.toFixed(3).padStart(12)}  ${s.ratio.toFixed(2).padStart(5)}   ${String(s.shoal_gap_ms).padStart(10)} ms  ${String(s.webtorrent_gap_ms).padStart(15)} ms`)
}
if (opts['json-out']) {
  await fsp.writeFile(opts['json-out'], JSON.stringify({ date: new Date().toISOString(), chromium: ctx.browser()?.version() ?? null, runs, summary, rows }, null, 1))
  console.log(`results in ${opts['json-out']}`)
}
