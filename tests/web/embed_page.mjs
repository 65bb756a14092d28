#!/usr/bin/env node
// A page of someone else's site that carries a Shoal player, in headless Chromium: a page
// built from the packed npm package, or the snippet `shoal serve` prints pasted into a page;
// and the weight of one page load.
//
//   node embed_page.mjs DIR [--host 127.0.0.2] [--no-webrtc] [--max-seconds 90] [--chromium PATH]
//   node embed_page.mjs --url URL --weigh [--max-seconds 90] [--chromium PATH]
//
// DIR: serves DIR on HOST (by default 127.0.0.2: another site than a server on 127.0.0.1, so
// an <iframe> of that server is a third-party frame), opens DIR/index.html in a fresh context
// and, as a viewer would, presses play on the first <video> (in the page or in any of its
// frames) once it has a source, then waits until its currentTime passes 1 s. `--no-webrtc`
// removes RTCPeerConnection from every frame before its scripts run, as in a browser where
// WebRTC is off. Events on stdout: `played` { frame (its address), via (its <html data-via>, if
// any), src (the video's currentSrc), seconds }, then `exit`; `error` (exit 2) on failure.
//
// --weigh: opens URL in a fresh context and emits `loaded` once the page has loaded and
// fetched the engine (web/pkg's wasm) and a second has passed; then reloads it and emits
// `reloaded` the same way. Whoever counts the server's bytes reads its counter at each event.
import { parseArgs } from 'node:util'
import { emit, finish, installLifecycle, launchBrowser, log, openTab, serveDir, sleep } from './lib/app_browser.mjs'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: '127.0.0.2' },
    url: { type: 'string' },
    weigh: { type: 'boolean', default: false },
    'no-webrtc': { type: 'boolean', default: false },
    'max-seconds': { type: 'string', default: '90' },
    chromium: { type: 'string', default: '/usr/bin/chromium' }
  }
})
if (values.weigh ? !values.url || positionals.length : positionals.length !== 1) {
  process.stderr.write('usage: embed_page.mjs DIR [--host H] [--no-webrtc] [--max-seconds N] [--chromium PATH]\n' +
    '       embed_page.mjs --url URL --weigh [--max-seconds N] [--chromium PATH]\n')
  process.exit(64)
}
installLifecycle({ maxSeconds: Number(values['max-seconds']), stdin: false })

// The viewer pressing play: allowed without a gesture, as the click would allow it.
const browser = await launchBrowser(values.chromium, ['--autoplay-policy=no-user-gesture-required'])
const tab = await openTab(browser, 'page')
if (values['no-webrtc']) {
  await tab.context.addInitScript(() => {
    for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCDataChannel', 'RTCSessionDescription', 'RTCIceCandidate']) {
      delete globalThis[name]
    }
  })
}

// Once the page has loaded and fetched the engine, and a second more has passed.
async function settled () {
  await tab.page.waitForFunction(() => performance.getEntriesByType('resource')
    .some(r => r.name.endsWith('/shoal_web_bg.wasm') && r.responseEnd > 0), null, { polling: 100 })
  await sleep(1000)
}

if (values.weigh) {
  await tab.page.goto(values.url, { waitUntil: 'load' })
  await settled()
  emit('loaded')
  await tab.page.reload({ waitUntil: 'load' })
  await settled()
  emit('reloaded')
  await finish('weighed', 0)
}

const base = await serveDir(positionals[0], values.host)
await tab.page.goto(new URL('index.html', base).href)

// What a frame's first <video> is doing; a frame that is navigating or gone says nothing.
const look = frame => frame.evaluate(() => {
  const video = document.querySelector('video')
  if (!video) return null
  if (video.currentSrc && video.paused && !video.ended && !video.dataset.pressed) {
    video.dataset.pressed = '1'
    video.muted = true
    video.play().catch(e => console.warn('play():', e.message))
  }
  return { via: document.documentElement.dataset.via ?? null, src: video.currentSrc, seconds: video.currentTime, error: video.error?.message ?? null }
}).catch(() => null)

// Until a video plays; installLifecycle fails the run at --max-seconds.
for (;;) {
  for (const frame of tab.page.frames()) {
    const seen = await look(frame)
    if (seen?.error) log(`video error in ${frame.url()}: ${seen.error}`)
    if (seen && seen.seconds > 1) {
      emit('played', { frame: frame.url(), ...seen })
      await finish('played', 0)
    }
  }
  await sleep(200)
}
