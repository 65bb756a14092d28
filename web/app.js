// The Shoal web app: open a magnet or a .torrent, share local files, watch while it downloads.
// Plain ES modules over the public API of shoal.js; no build step, nothing from the network
// but the torrent itself.

import { createClient, registerServiceWorker } from './shoal.js'
import { h } from './ui/dom.js'
import { formatPercent } from './ui/format.js'
import { libraryAccess, ServerLibrary } from './ui/library.js'
import { appLink, chooseTrackers, readParams } from './ui/params.js'
import { TorrentView } from './ui/view.js'

const MAX_TORRENT_FILE = 16 * 1024 * 1024
const MAX_MESSAGES = 4
const $ = sel => document.querySelector(sel)

const params = readParams()
const allTrackers = chooseTrackers(params)
const trackers = allTrackers.filter(t => /^wss?:\/\//i.test(t))

/** The app's state; tests and curious people can look at it from the console. */
const app = {
  client: null,
  trackers,
  entries: new Map(), // info hash -> { torrent, kind, addedAt, view, item }
  current: null,
  mode: 'open',
  lastOpened: null,
  /** The library of the server this page came from, when it lets the page manage it. */
  server: null,
  open: source => openSource(source),
  share: files => shareFiles(files)
}
window.shoalApp = app

// ---- messages --------------------------------------------------------------------------------

/** Posts a message for the person: kind is 'error', 'warn' or 'info'. */
function say (kind, text) {
  const box = $('#messages')
  const item = h('div', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, text),
    h('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '\u00d7'))
  box.append(item)
  while (box.children.length > MAX_MESSAGES) box.firstElementChild.remove()
  if (kind === 'info') setTimeout(() => item.remove(), 5000)
  return item
}

function environmentNotice (key, text) {
  if (document.querySelector(`#env [data-env="${key}"]`)) return
  $('#env').append(h('p', { class: 'notice warn', dataset: { env: key } }, text))
}

function checkEnvironment () {
  if (typeof RTCPeerConnection === 'undefined') {
    environmentNotice('webrtc', 'WebRTC is unavailable in this browser (or turned off), so this page cannot reach any peer. Try a current Chrome, Firefox or Safari.')
  }
  if (!('serviceWorker' in navigator)) {
    environmentNotice('sw', 'Streaming is unavailable: Service Workers need https:// or http://localhost. Files can still be downloaded once complete.')
  } else {
    registerServiceWorker().catch(e => environmentNotice('sw', `Streaming is unavailable: the Service Worker did not start (${e.message}).`))
  }
  const dropped = allTrackers.filter(t => !trackers.includes(t))
  if (dropped.length) environmentNotice('trackers', `Ignored tracker(s) a browser cannot use (only ws:// and wss://): ${dropped.join(', ')}`)
}

// ---- the client ------------------------------------------------------------------------------

let clientPromise = null
function getClient () {
  clientPromise ??= createClient({ trackers }).then(client => {
    app.client = client
    return client
  }, e => {
    clientPromise = null // the next attempt tries again
    throw e
  })
  return clientPromise
}

// ---- opening and sharing ---------------------------------------------------------------------

/** Opens a magnet link, an info hash, or a .torrent (File or bytes): on the page's server
 * when it has a library and the person left "on this server" checked, else in this tab. */
async function openSource (source, label = null, { inTab = false } = {}) {
  if (typeof source === 'string') {
    source = source.trim()
    if (!source) return say('error', 'Paste a magnet link (magnet:?xt=urn:btih:\u2026) or a 40-character info hash first.')
  }
  if (!inTab && app.server && $('#on-server').checked) return openOnServer(source, label)
  try {
    const client = await getClient()
    let input = source
    if (source instanceof Blob) {
      if (source.size > MAX_TORRENT_FILE) throw new Error(`not a .torrent file: ${formatSize(source.size)} is far too big for one`)
      input = new Uint8Array(await source.arrayBuffer())
    }
    const torrent = await client.add(input)
    const entry = track(torrent, 'opened')
    select(entry)
    return torrent
  } catch (e) {
    const what = label ?? (typeof source === 'string' ? 'That link' : 'That file')
    say('error', `${what} could not be opened: ${e.message}`)
    return null
  }
}

const formatSize = n => `${(n / 1048576).toFixed(1)} MiB`

async function openOnServer (source, label) {
  try {
    if (source instanceof Blob) {
      if (source.size > MAX_TORRENT_FILE) throw new Error(`not a .torrent file: ${formatSize(source.size)} is far too big for one`)
      source = new Uint8Array(await source.arrayBuffer())
    }
    return await app.server.add(source)
  } catch (e) {
    const what = label ?? (typeof source === 'string' ? 'That link' : 'That file')
    say('error', `${what} could not be added on the server: ${e.message}`)
    return null
  }
}

async function openTorrentFiles (files) {
  for (const file of files) {
    const torrent = await openSource(file, file.name)
    if (!torrent && !/\.torrent$/i.test(file.name)) {
      say('info', `To share ${file.name} instead, use \u201cShare files\u201d.`)
    }
  }
}

async function shareFiles (files) {
  files = [...files]
  if (!files.length) return null
  const status = $('#share-status')
  status.textContent = `Making a torrent of ${files.length === 1 ? files[0].name : `${files.length} files`}\u2026`
  try {
    const client = await getClient()
    const torrent = await client.seed(files)
    const entry = track(torrent, 'shared')
    select(entry)
    status.textContent = ''
    return torrent
  } catch (e) {
    status.textContent = ''
    say('error', `Could not share: ${e.message}`)
    return null
  }
}

// ---- torrents in this tab --------------------------------------------------------------------

function track (torrent, kind) {
  const known = app.entries.get(torrent.infoHash)
  if (known) return known
  const entry = { torrent, kind, addedAt: Date.now(), view: null, item: null }
  entry.item = h('li', {},
    h('button', { type: 'button', class: 'item', onclick: () => select(entry) },
      h('span', { class: 'item-name' }, torrent.name || 'Fetching details\u2026'),
      h('span', { class: 'item-state' })))
  $('#torrent-list').append(entry.item)
  $('#list-empty').hidden = true
  app.entries.set(torrent.infoHash, entry)
  // The engine emits 'metadata' and 'done' from inside its event loop, where calling back
  // into the torrent (status(), files) is not allowed: handle them on the next turn.
  const later = fn => () => setTimeout(fn, 0)
  torrent.on('progress', () => refreshItem(entry))
  torrent.on('metadata', later(() => refreshItem(entry)))
  torrent.on('done', later(() => {
    refreshItem(entry)
    if (kind === 'opened' && app.entries.has(torrent.infoHash)) say('info', `${torrent.name}: complete. This tab now shares it too.`)
  }))
  return entry
}

function refreshItem (entry) {
  let s
  try { s = entry.torrent.status() } catch { return }
  entry.item.querySelector('.item-name').textContent = s.name || 'Fetching details\u2026'
  entry.item.querySelector('.item-state').textContent = s.done
    ? (entry.kind === 'shared' ? 'sharing' : 'seeding')
    : formatPercent(s.progress)
  if (app.current === entry) entry.view.update()
}

function select (entry) {
  app.server?.hide()
  if (app.current && app.current !== entry) app.current.view.root.hidden = true
  app.current = entry
  if (!entry.view) {
    entry.view = new TorrentView(entry, say)
    entry.view.onRemove = () => remove(entry)
    $('#view').append(entry.view.root)
  }
  $('#welcome').hidden = true
  entry.view.root.hidden = false
  for (const e of app.entries.values()) e.item.classList.toggle('selected', e === entry)
  entry.view.update()
}

function remove (entry) {
  entry.view?.destroy()
  entry.item.remove()
  entry.torrent.destroy()
  app.entries.delete(entry.torrent.infoHash)
  if (app.current === entry) {
    app.current = null
    const next = [...app.entries.values()].at(-1)
    if (next) select(next)
    else $('#welcome').hidden = false
  }
  $('#list-empty').hidden = app.entries.size > 0
}

// ---- the address -----------------------------------------------------------------------------

function openFromAddress () {
  const { magnet } = readParams()
  if (magnet && magnet !== app.lastOpened) {
    app.lastOpened = magnet
    $('#magnet-input').value = magnet
    // A link plays in the tab, from the other viewers: that is what makes the audience carry
    // the load.
    openSource(magnet, 'The link in this address', { inTab: true })
  }
}

// ---- wiring ----------------------------------------------------------------------------------

function setMode (mode) {
  app.mode = mode
  for (const m of ['open', 'share']) {
    $(`#mode-${m}`).setAttribute('aria-selected', String(m === mode))
    $(`#panel-${m}`).hidden = m !== mode
  }
  $('#drop-text').textContent = mode === 'share' ? 'Drop files to share them' : 'Drop a .torrent file to open it'
}

function wire () {
  $('#open-form').addEventListener('submit', e => {
    e.preventDefault()
    openSource($('#magnet-input').value)
  })
  $('#torrent-button').addEventListener('click', () => $('#torrent-input').click())
  $('#torrent-input').addEventListener('change', e => {
    openTorrentFiles([...e.target.files])
    e.target.value = ''
  })
  $('#share-button').addEventListener('click', () => $('#share-input').click())
  $('#share-input').addEventListener('change', e => {
    shareFiles([...e.target.files])
    e.target.value = ''
  })
  $('#mode-open').addEventListener('click', () => setMode('open'))
  $('#mode-share').addEventListener('click', () => setMode('share'))

  // Drag and drop anywhere on the page.
  const overlay = $('#drop-overlay')
  let depth = 0
  const hasFiles = e => [...(e.dataTransfer?.types ?? [])].includes('Files')
  document.addEventListener('dragenter', e => { if (hasFiles(e)) { depth++; overlay.hidden = false } })
  document.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; overlay.hidden = true } })
  document.addEventListener('dragover', e => { if (hasFiles(e)) e.preventDefault() })
  document.addEventListener('drop', e => {
    e.preventDefault()
    depth = 0
    overlay.hidden = true
    const files = [...(e.dataTransfer?.files ?? [])]
    if (!files.length) return
    if (app.mode === 'share') shareFiles(files)
    else openTorrentFiles(files)
  })
  window.addEventListener('hashchange', openFromAddress)
  // The link for the app with a magnet: what the page's own address would be.
  app.linkFor = magnet => appLink(magnet)
}

// ---- the server's library -------------------------------------------------------------------

/** Shows the server's library when the page's server offers one. */
async function startServerLibrary () {
  const access = libraryAccess()
  if (!access) return
  $('#server-card').hidden = false
  const library = new ServerLibrary({
    listEl: $('#server-list'),
    emptyEl: $('#server-empty'),
    viewEl: $('#view'),
    say,
    onSelect: () => {
      if (app.current) app.current.view.root.hidden = true
      app.current = null
      for (const e of app.entries.values()) e.item.classList.remove('selected')
      $('#welcome').hidden = true
    }
  })
  const connect = async () => {
    await library.start()
    app.server = library
    $('#on-server-label').hidden = false
    $('#server-sign-in').hidden = true
  }
  if (access === 'open') {
    return connect().catch(e => say('error', `The server's library is unavailable: ${e.message}`))
  }
  // A password: asked for by the browser when the person chooses to, not on every visit.
  const button = $('#server-sign-in')
  button.hidden = false
  button.onclick = () => connect().catch(e => say('error', `Not signed in: ${e.message}`))
}

wire()
setMode('open')
startServerLibrary()
checkEnvironment()
getClient().catch(e => environmentNotice('client', `Shoal could not start here: ${e.message}`))
openFromAddress()
window.shoalAppReady = true
