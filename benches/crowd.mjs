#!/usr/bin/env node
// The browser side of benches/crowd.py: one headless Chromium, a crowd of viewers (one
// browser context each: own storage, own Service Worker, nothing cached, like different
// people) opening one app link a fixed interval apart and watching it. Driven over stdin so
// the harness can read its byte counters between the phases:
//
//   node benches/crowd.mjs --url APP_LINK --base APP_URL [--viewers 6] [--stagger 0.5]
//                          [--watch 25] [--chromium /usr/bin/chromium] [--max-seconds 300]
//
//   -> {"event":"launched"}                 Chromium is up; send "prime" or "crowd"
//   <- prime   one fresh context loads APP_URL (no magnet: the page, its engine and its Service
//              Worker, no video) and closes  -> {"event":"primed", ...}
//   <- crowd   the viewers open APP_LINK, viewer i at i * stagger s, each closed watch s after
//              its navigation started  -> {"event":"viewer", ...} per viewer, {"event":"crowd_done"}
//
// End of stdin, a signal or --max-seconds stops everything (lib/app_browser.mjs lifecycle).
// Times in a viewer's record are seconds from its navigation start (the page's timeOrigin).
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const { emit, fail, finish, installLifecycle, launchBrowser, log, openTab, sleep } =
  await import(path.join(HERE, '..', 'tests', 'web', 'lib', 'app_browser.mjs'))

let opts
try {
  ({ values: opts } = parseArgs({
    options: {
      url: { type: 'string' },
      base: { type: 'string' },
      viewers: { type: 'string', default: '6' },
      stagger: { type: 'string', default: '0.5' },
      watch: { type: 'string', default: '25' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      'chromium-arg': { type: 'string', multiple: true, default: [] },
      'step-timeout': { type: 'string', default: '60' },
      'max-seconds': { type: 'string', default: '300' }
    }
  }))
} catch (e) {
  emit('error', { message: `bad arguments: ${e.message}` })
  process.exit(2)
}
const VIEWERS = Number(opts.viewers)
const STAGGER = Number(opts.stagger) * 1000
const WATCH = Number(opts.watch) * 1000
const STEP = Number(opts['step-timeout']) * 1000
if (!opts.url || !opts.base || !(VIEWERS >= 1 && VIEWERS <= 64) || !(STAGGER >= 0) || !(WATCH > 0) || !(STEP > 0)) {
  emit('error', { message: 'give --url and --base; --viewers 1..64, --stagger >= 0, --watch > 0' })
  process.exit(2)
}
installLifecycle({ maxSeconds: Number(opts['max-seconds']), stdin: true })

// Installed in every viewer's page before its scripts run. Media events do not bubble, but a
// capturing listener on the document sees them from the <video> the app creates later.
function probe () {
  const s = window.__crowd = {
    playing: null, // first 'playing' (ms since timeOrigin)
    advanced: null, // first time currentTime > 0 was seen
    waits: [], // [start, end|null] of each 'waiting' after the first 'playing'
    frozenMs: 0, // sampled: playing, not ended, currentTime not moving
    maxTime: 0,
    ended: null,
    errors: [],
    events: []
  }
  let waitingAt = null
  const now = () => performance.now()
  const note = (name, v) => { if (s.events.length < 200) s.events.push([name, Math.round(now()), Number(v.currentTime.toFixed(3))]) }
  const on = (name, fn) => document.addEventListener(name, e => {
    if (!(e.target instanceof HTMLMediaElement)) return
    note(name, e.target)
    fn(e.target)
  }, true)
  on('playing', () => {
    const t = now()
    if (s.playing === null) s.playing = t
    if (waitingAt !== null) { s.waits.push([waitingAt, t]); waitingAt = null }
  })
  on('waiting', () => { if (s.playing !== null && waitingAt === null) waitingAt = now() })
  on('ended', () => { s.ended ??= now() })
  on('error', v => s.errors.push(`${v.error?.code}: ${v.error?.message}`))
  on('loadedmetadata', () => {})
  on('canplay', () => {})
  s.finish = () => {
    if (waitingAt !== null) { s.waits.push([waitingAt, null]); waitingAt = null }
  }
  // The engine's view every 200 ms while it changes: [ms, peers, bytes downloaded, of which
  // from the web seed], to line up the web seed's fetches with when peers came.
  s.timeline = []
  let seen = ''
  setInterval(() => {
    let st = null
    try { st = window.shoalApp?.current?.torrent.status() } catch {}
    if (!st || s.timeline.length >= 300) return
    const key = `${st.peers}/${st.webSeedDownloaded}`
    if (key === seen) return
    seen = key
    s.timeline.push([Math.round(now()), st.peers, st.downloaded, st.webSeedDownloaded])
  }, 200)
  let last = null
  setInterval(() => {
    const v = document.querySelector('video')
    if (!v) return
    const t = now()
    if (v.currentTime > 0 && s.advanced === null) s.advanced = t
    s.maxTime = Math.max(s.maxTime, v.currentTime)
    if (last && s.advanced !== null && !v.paused && !v.ended && v.currentTime === last.ct) s.frozenMs += t - last.t
    last = { t, ct: v.currentTime }
  }, 100)
}

/** Bytes the page fetched over HTTP, by kind (Playwright's view; the Service Worker's own
 *  script fetch and the video's requests it answers are not network requests of the page). */
function countRequests (context, fetches = []) {
  const kinds = {}
  context.on('requestfinished', async request => {
    try {
      const response = await request.response()
      if (!response || response.fromServiceWorker()) return
      const url = new URL(request.url())
      if (!/^https?:$/.test(url.protocol)) return
      const kind = url.pathname.startsWith('/webseed/') ? 'webseed' : 'page'
      const sizes = await request.sizes()
      const k = kinds[kind] ??= { requests: 0, body: 0, headers: 0 }
      k.requests++
      if (kind === 'webseed' && fetches.length < 200) {
        // [start (ms since the epoch; the row makes it relative to navigation), Range, body]
        const range = (await request.allHeaders()).range ?? null
        fetches.push([request.timing().startTime, range, Math.max(0, sizes.responseBodySize)])
      }
      k.body += Math.max(0, sizes.responseBodySize)
      k.headers += Math.max(0, sizes.responseHeadersSize)
    } catch {}
  })
  return kinds
}

const browser = await launchBrowser(opts.chromium, opts['chromium-arg'])
emit('launched', { chromium: browser.version() })

async function prime () {
  const t = await openTab(browser, 'prime')
  const kinds = countRequests(t.context)
  const t0 = Date.now()
  await t.page.goto(opts.base, { timeout: STEP })
  await t.page.waitForFunction(() => window.shoalAppReady === true && window.shoalApp.client !== null &&
    navigator.serviceWorker.controller !== null, null, { timeout: STEP })
  await t.page.waitForLoadState('networkidle', { timeout: STEP }).catch(() => {})
  const seconds = (Date.now() - t0) / 1000
  await sleep(500)
  await t.close()
  emit('primed', { seconds, http: kinds })
}

async function newViewer (i) {
  const t = await openTab(browser, `viewer-${i}`)
  t.fetches = []
  t.kinds = countRequests(t.context, t.fetches)
  await t.page.addInitScript(probe)
  return t
}

async function viewer (i, t, t0) {
  const row = { viewer: i, ok: false }
  try {
    const due = t0 + i * STAGGER
    await sleep(Math.max(0, due - Date.now()))
    const navAt = Date.now()
    row.opened_at = (navAt - t0) / 1000
    const nav = t.page.goto(opts.url, { waitUntil: 'commit', timeout: STEP })
    await nav
    const until = navAt + WATCH
    await sleep(Math.max(0, until - Date.now()))
    const got = await t.page.evaluate(() => {
      const s = window.__crowd
      s.finish()
      const v = document.querySelector('video')
      let status = null
      try { status = window.shoalApp?.current?.torrent.status() ?? null } catch {}
      return {
        originDelay: performance.timeOrigin,
        playing: s.playing,
        advanced: s.advanced,
        waits: s.waits,
        frozenMs: s.frozenMs,
        maxTime: s.maxTime,
        ended: s.ended,
        errors: s.errors,
        events: s.events,
        timeline: s.timeline,
        video: v ? { currentTime: v.currentTime, paused: v.paused, readyState: v.readyState, muted: v.muted, duration: v.duration } : null,
        notices: [...document.querySelectorAll('.notice, #messages .message')].map(e => e.textContent.trim()).slice(0, 8),
        status
      }
    })
    const sec = ms => ms === null || ms === undefined ? null : ms / 1000
    row.nav_delay_s = (got.originDelay - navAt) / 1000 // timeOrigin vs the goto call (sanity)
    row.to_playing_s = sec(got.playing)
    row.to_advance_s = sec(got.advanced)
    row.stalls = got.waits.length
    row.stall_s = got.waits.reduce((a, [s, e]) => a + ((e ?? WATCH) - s), 0) / 1000
    row.stall_open = got.waits.some(([, e]) => e === null)
    row.frozen_s = got.frozenMs / 1000
    row.advanced = got.maxTime > 0
    row.media_time_end = got.video?.currentTime ?? null
    row.max_media_time = got.maxTime
    row.ended_s = sec(got.ended)
    row.video = got.video
    row.media_errors = got.errors
    row.notices = got.notices
    row.events = got.events
    row.timeline = got.timeline
    row.webseed_fetches = t.fetches.map(([at, range, body]) => [Math.round(at - got.originDelay), range, body])
    row.status = got.status && {
      peers: got.status.peers, seeds: got.status.seeds, webSeeds: got.status.webSeeds,
      progress: got.status.progress, done: got.status.done, downloaded: got.status.downloaded,
      uploaded: got.status.uploaded, webSeedDownloaded: got.status.webSeedDownloaded,
      error: got.status.error
    }
    row.ok = row.advanced
  } catch (e) {
    row.error = e.message
  }
  row.http = t.kinds
  await t.close().catch(() => {})
  emit('viewer', row)
  return row
}

async function crowd () {
  // Contexts first, so the navigations start on time.
  const tabs = []
  for (let i = 0; i < VIEWERS; i++) tabs.push(await newViewer(i))
  const t0 = Date.now() + 200
  const rows = await Promise.all(tabs.map((t, i) => viewer(i, t, t0)))
  emit('crowd_done', { seconds: (Date.now() - t0) / 1000, ok: rows.filter(r => r.ok).length })
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', async line => {
  const cmd = line.trim()
  try {
    if (cmd === 'prime') await prime()
    else if (cmd === 'crowd') await crowd()
    else if (cmd === 'quit') await finish('quit', 0)
    else if (cmd) log('unknown command', cmd)
  } catch (e) {
    await fail(`${cmd}: ${e.message}`)
  }
})
