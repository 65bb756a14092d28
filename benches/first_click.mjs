#!/usr/bin/env node
// The browser side of benches/first_click.py: opens one page at a time in a fresh headless
// Chromium and times it from navigation to the first `playing` of any media element.
// Driven over stdin, one JSON command a line:
//
//   node benches/first_click.mjs [--browser fresh|context] [--chromium /usr/bin/chromium]
//                                [--chromium-arg=...] [--max-seconds 600]
//
//   -> {"event":"launched"}
//   <- {"cmd":"open","label":"shoal-0","url":URL,"timeout":20,"after":3,"marks":true}
//   -> {"event":"result","label":"shoal-0","ok":true,"playing_ms":...,"advanced_ms":...,...}
//
// --browser fresh (the default): every page gets its own Chromium process with a new, empty
// --user-data-dir (Playwright's launchPersistentContext), closed afterwards; nothing survives
// from one page to the next (no HTTP or code cache, Service Worker, renderer process or
// socket). --browser context: one Chromium for the whole run, a new browser context (Playwright's
// incognito-like profile: own cache, storage and Service Workers) per page; quicker, but the
// browser process and its network service are warm.
//
// Times are milliseconds from the page's navigation start (performance.timeOrigin), taken in
// the page: `playing_ms` at the first `playing` event of any <video>/<audio> (a capturing
// listener on the document, installed before the page's own scripts), `advanced_ms` the first
// time currentTime > 0 was seen (10 ms sampling, and at every media event). A page that does not
// play within `timeout` s is a failure (ok false, playing_ms null). With `marks`, the Shoal
// app's milestones are recorded too (see `probe`).
import fsp from 'node:fs/promises'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const WEB_TESTS = path.join(HERE, '..', 'tests', 'web')
const { emit, fail, finish, installLifecycle, log, onFinish } =
  await import(pathToFileURL(path.join(WEB_TESTS, 'lib', 'app_browser.mjs')).href)
const { chromium } = await import(pathToFileURL(path.join(WEB_TESTS, 'node_modules', 'playwright-core', 'index.mjs')).href)

let opts
try {
  ({ values: opts } = parseArgs({
    options: {
      browser: { type: 'string', default: 'fresh' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      'chromium-arg': { type: 'string', multiple: true, default: [] },
      'max-seconds': { type: 'string', default: '600' }
    }
  }))
} catch (e) {
  emit('error', { message: `bad arguments: ${e.message}` })
  process.exit(2)
}
if (!['fresh', 'context'].includes(opts.browser)) {
  emit('error', { message: '--browser is fresh or context' })
  process.exit(2)
}
if (!fs.existsSync(opts.chromium)) {
  emit('error', { message: `no Chromium at ${opts.chromium}` })
  process.exit(2)
}
installLifecycle({ maxSeconds: Number(opts['max-seconds']), stdin: true })

// The flags the project's browser tests use (tests/web/lib/app_browser.mjs).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // host candidates with real addresses, not mDNS names nobody in the namespace resolves
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  ...opts['chromium-arg']
]
const VIEWPORT = { width: 1280, height: 860 }

// Chromium dies with this process even on SIGKILL: launched through setpriv --pdeathsig.
const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'shoal-first-click-'))
onFinish(() => fsp.rm(scratch, { recursive: true, force: true }))
const wrapper = path.join(scratch, 'chromium.sh')
await fsp.writeFile(wrapper, `#!/bin/sh\nexec setpriv --pdeathsig KILL -- ${JSON.stringify(opts.chromium)} "$@"\n`, { mode: 0o755 })
const executablePath = fs.existsSync('/usr/bin/setpriv') ? wrapper : opts.chromium
const LAUNCH = { executablePath, headless: true, args: CHROMIUM_ARGS, handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false }

let shared = null // --browser context: the one Chromium
let live = null // the page being measured, closed on finish
onFinish(async () => { await live?.close().catch(() => {}); await shared?.close().catch(() => {}) })
if (opts.browser === 'context') shared = await chromium.launch(LAUNCH)

let profiles = 0
/** A fresh browser (fresh mode) or context (context mode) with one page. */
async function freshTab () {
  if (shared) {
    const context = await shared.newContext({ viewport: VIEWPORT })
    const page = await context.newPage()
    return { context, page, close: () => context.close() }
  }
  const dir = path.join(scratch, `profile-${profiles++}`)
  const context = await chromium.launchPersistentContext(dir, { ...LAUNCH, viewport: VIEWPORT })
  const page = context.pages()[0] ?? await context.newPage()
  return {
    context,
    page,
    close: async () => {
      await context.close()
      await fsp.rm(dir, { recursive: true, force: true })
    }
  }
}

// Installed in every page before its scripts run.
function probe ({ marks }) {
  const now = () => performance.now()
  const s = window.__fc = { playing: null, advanced: null, media: {}, marks: {}, errors: [], events: [], pieceTimeline: [] }
  const mark = (k, t = now()) => { if (s.marks[k] === undefined) s.marks[k] = t }
  s.mark = mark
  const seen = v => {
    if (v.currentTime > 0 && s.advanced === null) s.advanced = now()
  }
  for (const name of ['loadstart', 'loadedmetadata', 'loadeddata', 'canplay', 'play', 'playing', 'waiting', 'stalled', 'error', 'timeupdate']) {
    document.addEventListener(name, e => {
      const v = e.target
      if (!(v instanceof HTMLMediaElement)) return
      const t = now()
      if (s.media[name] === undefined) s.media[name] = t
      if (name === 'playing' && s.playing === null) s.playing = t
      if (name === 'error') s.errors.push(`media error ${v.error?.code}: ${v.error?.message}`)
      if (s.events.length < 60 && name !== 'timeupdate') s.events.push([name, Math.round(t), Number(v.currentTime.toFixed(3)), v.muted])
      seen(v)
    }, true)
  }
  // Also a liveness probe of the page's main thread: gaps over 100 ms between two 10 ms ticks
  // before `playing` ([ms at the end of the gap, gap ms]).
  s.longTicks = []
  let tick = now()
  setInterval(() => {
    const t = now()
    if (t - tick > 100 && s.playing === null && s.longTicks.length < 20) s.longTicks.push([Math.round(t), Math.round(t - tick)])
    tick = t
    for (const v of document.querySelectorAll('video, audio')) seen(v)
  }, 10)
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.addEventListener('controllerchange', () => mark('sw_controls'))
    // The first request a Service Worker hands to the page (a stream of the video).
    navigator.serviceWorker.addEventListener('message', e => {
      if (e.data?.type === 'shoal-stream' || e.data?.type === 'webtorrent') mark('sw_first_request')
    })
  }
  if (!marks) return
  // The Shoal app (web/app.js) sets window.shoalApp to its state object, whose `client` is set
  // once the wasm engine is up and `current` once the magnet is added: watch both, then the
  // torrent's events, and poll its status for the first bytes. Nothing in the app changes.
  let app
  Object.defineProperty(window, 'shoalApp', {
    configurable: true,
    enumerable: true,
    get: () => app,
    set: value => {
      app = value
      mark('app_state')
      if (!value || typeof value !== 'object') return
      let client = value.client
      let current = value.current
      Object.defineProperty(value, 'client', {
        configurable: true,
        enumerable: true,
        get: () => client,
        set: c => { client = c; if (c) mark('engine_ready') }
      })
      Object.defineProperty(value, 'current', {
        configurable: true,
        enumerable: true,
        get: () => current,
        set: entry => {
          current = entry
          if (!entry?.torrent || s.marks.torrent_added !== undefined) return
          mark('torrent_added')
          const torrent = entry.torrent
          torrent.on('wire', () => mark('first_peer'))
          torrent.on('metadata', () => mark('metadata'))
          const poll = setInterval(() => {
            let st
            try { st = torrent.status() } catch { return }
            s.status = st
            if (st.downloaded > 0) mark('first_byte')
            if (st.webSeedDownloaded > 0) mark('first_byte_webseed')
            if (st.downloaded > st.webSeedDownloaded) mark('first_byte_peer')
            if (st.peers > 0) mark('peers_gt0')
            if (st.readers > 0) mark('first_reader')
            // The file's start (where the player reads first): piece 0, and the first MiB.
            if (st.piecesTotal && st.length) {
              let bits
              try { bits = torrent.pieces() } catch { bits = null }
              if (bits) {
                const pieceLength = 2 ** Math.ceil(Math.log2(st.length / st.piecesTotal))
                const has = i => (bits[i >> 3] >> (7 - (i & 7))) & 1
                if (has(0)) mark('piece0')
                const head = Math.min(st.piecesTotal, Math.ceil(1048576 / pieceLength))
                let headHave = 0
                for (let i = 0; i < head; i++) headHave += has(i)
                if (headHave === head) mark('head_1mib')
                // [ms, pieces verified, of them in the first MiB, bytes downloaded], on change
                const last = s.pieceTimeline.at(-1)
                if (!last || last[1] !== st.piecesHave || last[2] !== headHave) {
                  if (s.pieceTimeline.length < 400) s.pieceTimeline.push([Math.round(now()), st.piecesHave, headHave, st.downloaded])
                }
                s.pieceInfo = { pieceLength, pieces: st.piecesTotal, headPieces: head }
              }
            }
            if (s.playing !== null) clearInterval(poll)
          }, 20)
        }
      })
    }
  })
}

/** What the page recorded, plus its navigation and script timings. */
function snapshot () {
  const s = window.__fc
  const nav = performance.getEntriesByType('navigation')[0]
  const resources = performance.getEntriesByType('resource')
    .filter(e => /\.(m?js|wasm|html)(\?|$)/.test(new URL(e.name).pathname))
    .map(e => ({ path: new URL(e.name).pathname, start: Math.round(e.startTime), end: Math.round(e.responseEnd), bytes: e.transferSize }))
  // Requests to a web seed the page made itself (fetch/XHR: a torrent engine's web seed; a
  // <video>'s own requests are not listed): how many and with what status.
  const webseed = performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname.includes('/webseed/'))
  const statuses = {}
  for (const e of webseed) statuses[e.responseStatus] = (statuses[e.responseStatus] ?? 0) + 1
  const v = document.querySelector('video, audio')
  let status = s.status ?? null
  try { status = window.shoalApp?.current?.torrent?.status() ?? status } catch {}
  return {
    time_origin: performance.timeOrigin,
    playing: s.playing,
    advanced: s.advanced,
    media: s.media,
    marks: s.marks,
    events: s.events,
    errors: s.errors,
    extra: s.extra ?? null, // set by the WebTorrent page
    piece_timeline: s.pieceTimeline,
    long_ticks: s.longTicks,
    piece_info: s.pieceInfo ?? null,
    nav: nav && {
      response_start: Math.round(nav.responseStart),
      response_end: Math.round(nav.responseEnd),
      dom_interactive: Math.round(nav.domInteractive),
      dom_content_loaded: Math.round(nav.domContentLoadedEventEnd),
      load: Math.round(nav.loadEventEnd)
    },
    resources,
    webseed_requests: { count: webseed.length, statuses, first: webseed[0] && { path: new URL(webseed[0].name).pathname, at: Math.round(webseed[0].startTime) } },
    video: v && { currentTime: v.currentTime, paused: v.paused, muted: v.muted, readyState: v.readyState, src: v.currentSrc.slice(0, 200) },
    status: status && {
      peers: status.peers, downloaded: status.downloaded, webSeedDownloaded: status.webSeedDownloaded,
      webSeeds: status.webSeeds, progress: status.progress, connecting: status.connecting, error: status.error,
      length: status.length, piecesTotal: status.piecesTotal
    },
    notices: [...document.querySelectorAll('.notice, #messages .message')].map(e => e.textContent.trim()).slice(0, 6),
    user_agent: navigator.userAgent
  }
}

async function open (cmd) {
  const timeoutMs = Number(cmd.timeout ?? 20) * 1000
  const afterMs = Number(cmd.after ?? 3) * 1000
  const row = { label: cmd.label, ok: false, playing_ms: null, advanced_ms: null }
  const t0 = Date.now()
  const tab = live = await freshTab()
  row.browser_start_s = (Date.now() - t0) / 1000
  const { page } = tab
  page.on('console', m => log(`[${cmd.label} ${m.type()}]`, m.text()))
  page.on('pageerror', e => log(`[${cmd.label} page error]`, e.message))
  try {
    await page.addInitScript(probe, { marks: !!cmd.marks })
    const navAt = Date.now()
    await page.goto(cmd.url, { waitUntil: 'commit', timeout: timeoutMs })
    const origin = await page.evaluate(() => performance.timeOrigin)
    row.nav_gap_ms = Math.round(origin - navAt) // timeOrigin vs the goto call (sanity)
    const deadline = origin + timeoutMs
    await page.waitForFunction(() => window.__fc.playing !== null, null, { polling: 50, timeout: Math.max(1, deadline - Date.now()) })
      .catch(() => {})
    // currentTime > 0 comes a frame or so later; give it `after` s more.
    const stop = Math.min(deadline, Date.now() + afterMs)
    await page.waitForFunction(() => window.__fc.advanced !== null, null, { polling: 50, timeout: Math.max(1, stop - Date.now()) })
      .catch(() => {})
    const got = await page.evaluate(snapshot)
    Object.assign(row, got)
    row.playing_ms = got.playing
    row.advanced_ms = got.advanced
    row.ok = got.playing !== null && got.playing <= timeoutMs
    if (!row.ok) row.error = got.playing === null ? `no playing within ${timeoutMs / 1000} s` : `playing after the timeout (${Math.round(got.playing)} ms)`
  } catch (e) {
    row.error = e.message.split('\n')[0]
  }
  live = null
  // Leave the page first, as a person closing the tab does: its RTCPeerConnections close and
  // tell the seeder (an SCTP abort). Closing the browser at once can kill them before that is
  // sent, and the origin would then hold a dead peer for a while and refuse the next page's
  // first requests for pieces that peer "has" (spreading).
  await page.goto('about:blank', { timeout: 5000 }).catch(() => {})
  await new Promise(resolve => setTimeout(resolve, 250))
  await tab.close().catch(e => log('closing:', e.message))
  emit('result', row)
}

if (shared) emit('launched', { chromium: shared.version(), mode: opts.browser })
else emit('launched', { mode: opts.browser })

let queue = Promise.resolve()
const lines = readline.createInterface({ input: process.stdin })
lines.on('line', line => {
  if (!line.trim()) return
  let cmd
  try { cmd = JSON.parse(line) } catch { return log('not JSON:', line) }
  queue = queue.then(async () => {
    try {
      if (cmd.cmd === 'open') await open(cmd)
      else if (cmd.cmd === 'quit') await finish('quit', 0)
      else log('unknown command', line)
    } catch (e) {
      await fail(`${cmd.cmd}: ${e.message}`)
    }
  })
})
