#!/usr/bin/env node
// The Shoal web app (web/index.html) in headless Chromium, driven like a person would, one
// scripted scenario per run. Prints JSON lines: what each step saw (`step` events with the
// page's messages, notices, hashes of saved files), then `done`, or `error` and exit 2.
//
//   node shoal_app_ui.mjs share FILE --tracker WS_URL
//       Tab A shares FILE (the share file picker) and shows its magnet and link; tab B opens
//       the link, plays the file, seeks near the end and saves it; A closes; tab C opens the
//       same link and completes from B alone, and saves it.
//   node shoal_app_ui.mjs bad-input BIN FAKE_MEDIA NOT_TORRENT --tracker WS_URL
//       Tab S shares BIN and FAKE_MEDIA (media by name, noise inside). Tab U: an invalid
//       magnet, plain text, NOT_TORRENT picked and dropped as a .torrent, an info hash nobody
//       has, then S's two torrents: BIN cannot play (and is saved), FAKE_MEDIA fails in the
//       player. Every step's message is reported; the page must keep working throughout.
//   node shoal_app_ui.mjs screenshot FILE PNG --tracker WS_URL
//       Tab A shares FILE; tab B opens its link and plays it; a screenshot of B mid-playback
//       goes to PNG.
//   node shoal_app_ui.mjs server-library APP_URL MAGNET
//       One tab opens `shoal serve`'s app (whose server offers its library), adds MAGNET on the
//       server through the Open form, plays the file from the server while it downloads and
//       seeks near the end; after a reload the server's list still has it.
//   node shoal_app_ui.mjs server-list APP_URL INFO_HASH
//       One tab opens the app and finds INFO_HASH in the server's list (after the server
//       restarted, say), selects it and plays it.
//   node shoal_app_ui.mjs open-link URL [--ignore-https-errors]
//       One tab opens an app link served elsewhere (`shoal serve`'s, over https with a
//       self-signed certificate given the flag), plays it, seeks near the end, waits for the
//       download and saves the file. --tracker is not needed: the served page names its own.
//
// Options: --tracker URL (repeatable, put in the app's address as ?tracker=)  --step-timeout S
// (60)  --max-seconds S (400)  --chromium PATH ($CHROMIUM or /usr/bin/chromium)  --no-stdin
// WebRTC needs a non-loopback interface: run it in a network namespace (shoal_testkit::netns).
import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { emit, fail, finish, installLifecycle, launchBrowser, log, openTab, serveWeb } from './lib/app_browser.mjs'

let opts, positionals
try {
  ({ values: opts, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      tracker: { type: 'string', multiple: true, default: [] },
      'step-timeout': { type: 'string', default: '60' },
      'max-seconds': { type: 'string', default: '400' },
      chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
      'no-stdin': { type: 'boolean', default: false },
      'ignore-https-errors': { type: 'boolean', default: false }
    }
  }))
} catch (e) {
  emit('error', { message: `bad arguments: ${e.message}` })
  process.exit(2)
}
const STEP = Number(opts['step-timeout']) * 1000
if (!(STEP > 0) || !(Number(opts['max-seconds']) > 0)) {
  emit('error', { message: '--step-timeout and --max-seconds must be positive' })
  process.exit(2)
}
installLifecycle({ maxSeconds: Number(opts['max-seconds']), stdin: !opts['no-stdin'] })
const OWN_TRACKER = ['open-link', 'server-library', 'server-list']
if (!opts.tracker.length && !OWN_TRACKER.includes(positionals[0])) await fail('give --tracker ws://...')

const sha1 = bytes => crypto.createHash('sha1').update(bytes).digest('hex')
const step = (name, fields = {}) => emit('step', { step: name, ...fields })

// ---- the app, as seen from outside ----------------------------------------------------------

let base
let browser

async function tab (label, url = null) {
  const t = await openTab(browser, label, { ignoreHTTPSErrors: opts['ignore-https-errors'] })
  const query = opts.tracker.map(tr => `tracker=${encodeURIComponent(tr)}`).join('&')
  await t.page.goto(url ?? new URL(`index.html?${query}`, base).href)
  await t.page.waitForFunction(() => window.shoalAppReady === true, null, { timeout: STEP })
  return t
}

/** Removes the page's messages, so the next one is the next step's. */
const clearMessages = page => page.evaluate(() => document.querySelector('#messages').replaceChildren())

/** The text of the next error message on the page. */
async function nextError (page) {
  const el = await page.waitForSelector('#messages .message.error', { timeout: STEP })
  return (await el.textContent()).replace(/×$/, '').trim()
}

/** Shares `file` through the share picker; returns `{ infoHash, magnet, link }`. */
async function share (page, file) {
  await page.click('#mode-share')
  const before = await page.evaluate(() => window.shoalApp.entries.size)
  await page.setInputFiles('#share-input', file)
  await page.waitForFunction(n => window.shoalApp.entries.size > n, before, { timeout: STEP })
  const infoHash = await page.evaluate(() => window.shoalApp.current.torrent.infoHash)
  const article = view(page, infoHash)
  await article.and(page.locator('[data-kind="shared"]:visible')).waitFor({ timeout: STEP })
  const magnet = await article.locator('input.magnet').inputValue({ timeout: STEP })
  const link = await article.locator('a.app-link').getAttribute('href', { timeout: STEP })
  return { infoHash, magnet, link }
}

/** The article of the torrent `infoHash`, once it is shown. */
function view (page, infoHash) {
  return page.locator(`article.torrent[data-infohash="${infoHash}"]`)
}

/** Clicks the Save button of file `index` and hashes what the browser downloads. */
async function save (page, infoHash, index = 0, selector = `.file[data-index="${index}"] button.save`) {
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: STEP }),
    view(page, infoHash).locator(selector).first().click({ timeout: STEP })
  ])
  const file = await download.path()
  return { name: download.suggestedFilename(), sha1: sha1(await fsp.readFile(file)) }
}

/** Waits for the app's player to play, then seeks near the end and waits for it again. */
async function playback (page, infoHash, { seek = true } = {}) {
  const video = `article.torrent[data-infohash="${infoHash}"] .stage video`
  await page.waitForSelector(video, { timeout: STEP })
  const advancedPast = (t) => page.waitForFunction(([sel, t]) => {
    const v = document.querySelector(sel)
    if (v?.error) throw new Error(`video error ${v.error.code}: ${v.error.message}`)
    return v && v.currentTime > t
  }, [video, t], { timeout: STEP, polling: 100 })
  await advancedPast(0.5)
  const first = await page.$eval(video, v => ({ currentTime: v.currentTime, duration: v.duration, muted: v.muted }))
  if (!seek) return { ...first }
  const target = Math.max(0, first.duration - 2)
  await page.$eval(video, (v, t) => { v.currentTime = t }, target)
  await advancedPast(target + 0.3)
  const after = await page.$eval(video, v => v.currentTime)
  return { ...first, seekTarget: target, afterSeek: after }
}

const status = (page, infoHash) => page.evaluate(h => window.shoalApp.entries.get(h).torrent.status(), infoHash)
const waitDone = (page, infoHash) => page.locator(`article.torrent[data-infohash="${infoHash}"][data-done="true"]`).waitFor({ timeout: STEP })

// ---- scenarios ------------------------------------------------------------------------------

async function shareScenario ([file]) {
  const a = await tab('A')
  const shared = await share(a.page, file)
  step('shared', shared)

  const b = await tab('B', shared.link)
  const played = await playback(b.page, shared.infoHash)
  step('b_played', played)
  await waitDone(b.page, shared.infoHash)
  const bSaved = await save(b.page, shared.infoHash)
  step('b_saved', { ...bSaved, status: await status(b.page, shared.infoHash) })

  await a.close()
  step('a_closed')

  const c = await tab('C', shared.link)
  await waitDone(c.page, shared.infoHash)
  const cSaved = await save(c.page, shared.infoHash)
  step('c_saved', { ...cSaved, status: await status(c.page, shared.infoHash), b: await status(b.page, shared.infoHash) })
}

async function badInputScenario ([bin, fakeMedia, notTorrent]) {
  const s = await tab('S')
  const unplayable = await share(s.page, bin)
  const broken = await share(s.page, fakeMedia)
  step('shared', { unplayable, broken })

  const u = await tab('U')
  const page = u.page
  const openText = async (text) => {
    await clearMessages(page)
    await page.fill('#magnet-input', text)
    await page.click('#open-button')
  }

  await openText('magnet:?xt=urn:btih:not-a-hash')
  step('invalid_magnet', { message: await nextError(page) })
  await openText('hello, this is not a link')
  step('not_a_link', { message: await nextError(page) })

  await clearMessages(page)
  await page.setInputFiles('#torrent-input', notTorrent)
  step('picked_not_torrent', { message: await nextError(page) })

  await clearMessages(page)
  const bytes = (await fsp.readFile(notTorrent)).toString('base64')
  await page.evaluate(([name, b64]) => {
    const data = Uint8Array.from(atob(b64), c => c.charCodeAt(0))
    const dt = new DataTransfer()
    dt.items.add(new File([data], name))
    for (const type of ['dragenter', 'dragover', 'drop']) {
      document.body.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }))
    }
  }, [path.basename(notTorrent), bytes])
  step('dropped_not_torrent', { message: await nextError(page) })

  const nobody = crypto.randomBytes(20).toString('hex')
  await openText(nobody)
  const lonely = await view(page, nobody).locator('[data-notice="no-peers"]').textContent({ timeout: STEP })
  step('nobody_has_it', { notice: lonely })

  await openText(unplayable.magnet)
  const cannot = view(page, unplayable.infoHash).locator('[data-notice="cannot-play"]')
  const notice = await cannot.textContent({ timeout: STEP })
  const saved = await save(page, unplayable.infoHash, 0, '[data-notice="cannot-play"] button.save')
  step('unplayable', { notice, ...saved })

  await openText(broken.magnet)
  const failed = await view(page, broken.infoHash).locator('[data-notice="cannot-play"]').textContent({ timeout: STEP })
  const playerError = await page.$eval(`article.torrent[data-infohash="${broken.infoHash}"] .stage video`, v => v.error?.code ?? null).catch(() => null)
  step('broken_media', { notice: failed, playerError })
}

async function screenshotScenario ([file, png]) {
  const a = await tab('A')
  const shared = await share(a.page, file)
  step('shared', shared)
  const b = await tab('B', shared.link)
  const played = await playback(b.page, shared.infoHash, { seek: false })
  await b.page.waitForFunction(() => document.querySelector('.stage video').currentTime > 2, null, { timeout: STEP })
  await clearMessages(b.page)
  await b.page.screenshot({ path: png })
  const currentTime = await b.page.$eval('.stage video', v => v.currentTime)
  step('screenshot', { path: png, ...played, currentTime, paused: await b.page.$eval('.stage video', v => v.paused) })
}

async function openLinkScenario ([link]) {
  const t = await tab('T', link)
  step('opened', { secureContext: await t.page.evaluate(() => window.isSecureContext), origin: await t.page.evaluate(() => location.origin) })
  const infoHash = await t.page.waitForFunction(() => window.shoalApp.current?.torrent?.infoHash, null, { timeout: STEP }).then(h => h.jsonValue())
  const played = await playback(t.page, infoHash).catch(async e => {
    // What the page knew when it gave up, for the test's output.
    const seen = await t.page.evaluate(h => ({
      status: window.shoalApp.entries.get(h)?.torrent?.status(),
      messages: [...document.querySelectorAll('#messages .message, [data-notice]')].map(m => m.textContent)
    }), infoHash).catch(() => null)
    log('open-link: the page at the timeout:', JSON.stringify(seen))
    throw e
  })
  step('played', played)
  await waitDone(t.page, infoHash)
  const saved = await save(t.page, infoHash)
  step('saved', { ...saved, status: await status(t.page, infoHash) })
}

/** The server's list item of torrent `infoHash`, once listed. */
const serverItem = (page, infoHash) => page.locator(`#server-list button[data-id="${infoHash}"]`)

async function serverLibraryScenario ([url, magnet]) {
  const t = await tab('T', url)
  await t.page.locator('#on-server-label').waitFor({ state: 'visible', timeout: STEP })
  const infoHash = magnet.match(/btih:([0-9a-f]{40})/i)[1].toLowerCase()
  await t.page.fill('#magnet-input', magnet)
  await t.page.click('#open-button')
  await serverItem(t.page, infoHash).waitFor({ timeout: STEP })
  step('added', { tabTorrents: await t.page.evaluate(() => window.shoalApp.entries.size) })
  step('played', await playback(t.page, infoHash))
  await t.page.reload()
  await t.page.waitForFunction(() => window.shoalAppReady === true, null, { timeout: STEP })
  await serverItem(t.page, infoHash).waitFor({ timeout: STEP })
  step('listed-after-reload', { name: await serverItem(t.page, infoHash).locator('.item-name').textContent() })
}

async function serverListScenario ([url, infoHash]) {
  const t = await tab('T', url)
  await serverItem(t.page, infoHash).click({ timeout: STEP })
  step('listed', { state: await serverItem(t.page, infoHash).locator('.item-state').textContent() })
  step('played', await playback(t.page, infoHash, { seek: false }))
}

const SCENARIOS = {
  share: [shareScenario, 1],
  'bad-input': [badInputScenario, 3],
  screenshot: [screenshotScenario, 2],
  'open-link': [openLinkScenario, 1, { link: true }],
  'server-library': [serverLibraryScenario, 2, { link: true }],
  'server-list': [serverListScenario, 2, { link: true }]
}

try {
  const [name, ...args] = positionals
  const scenario = SCENARIOS[name]
  if (!scenario) throw new Error(`unknown scenario ${JSON.stringify(name)}: one of ${Object.keys(SCENARIOS).join(', ')}`)
  if (args.length !== scenario[1]) throw new Error(`${name} takes ${scenario[1]} file argument(s)`)
  base = await serveWeb()
  // The context's ignoreHTTPSErrors does not cover Service Worker scripts: the switch does.
  browser = await launchBrowser(opts.chromium, opts['ignore-https-errors'] ? ['--ignore-certificate-errors'] : [])
  emit('ready', { base, chromium: browser.version() })
  await scenario[0](scenario[2]?.link ? args : args.map(a => path.resolve(a)))
  emit('done', { scenario: name })
  await finish('done', 0)
} catch (e) {
  log(e?.stack || e)
  await fail(String(e?.message || e).split('\n')[0])
}
