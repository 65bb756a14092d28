// Shoal for websites: BitTorrent in the page, over WebRTC, with streaming playback.
//
//   import { createClient } from './shoal.js'
//   const client = await createClient({ trackers: ['wss://tracker.example'] })
//   const torrent = await client.add('magnet:?xt=urn:btih:...')
//   await torrent.ready()
//   await torrent.files[0].streamTo(document.querySelector('video'))
//
// The engine is Rust compiled to wasm (crates/shoal-web); this module wraps it in events and
// promises, and answers the Service Worker (sw.js) that turns a <video>'s Range requests into
// reads of the torrent. Types: shoal.d.ts.

import init, { WasmClient, adoptCertificate } from './pkg/shoal_web.js'

let engine = null
// The page's DTLS certificate (one for all its connections), started now so that it is made
// while the engine downloads and compiles: the first offers would wait for it otherwise.
// A browser that cannot make one here gets null, and each connection then makes its own.
const certificate = startCertificate()
const torrents = new Map() // info hash -> Torrent, for the Service Worker's requests
// Most bytes per Service Worker chunk. A chunk holds what is verified in a row from where the
// response is, so the player gets each piece as soon as it is there (behind a seeder that
// trickles, waiting for whole 256 KiB chunks held the demuxer back).
const STREAM_CHUNK = 256 * 1024
const PROGRESS_MS = 500

function startCertificate () {
  try {
    // The spec rejects on an unsupported algorithm, but a browser that throws instead must
    // not break this module's import.
    return globalThis.RTCPeerConnection?.generateCertificate?.({ name: 'ECDSA', namedCurve: 'P-256' })
      ?.catch(() => null) ?? null
  } catch {
    return null
  }
}

/** Loads the engine (once) and makes a client. */
export async function createClient (options = {}) {
  if (typeof RTCPeerConnection === 'undefined') {
    throw new Error('This browser has no WebRTC: Shoal cannot reach peers here.')
  }
  listenToServiceWorker()
  // Registering the Service Worker takes a while on a fresh profile (~150 ms in a Chromium
  // that has just started): start it first, beside the engine's download and while peers are
  // being found, so a file is ready to stream the moment its data arrives.
  if (options.serviceWorker !== false && 'serviceWorker' in navigator && window.isSecureContext) {
    registerServiceWorker().catch(e => console.warn('Shoal: no Service Worker:', e.message))
  }
  engine ??= init({ module_or_path: new URL('./pkg/shoal_web_bg.wasm', import.meta.url) })
  await engine
  if (certificate) adoptCertificate(certificate)
  return new Client(new WasmClient(options))
}

/** A file's bytes as a Uint8Array, without copying what already is one. */
async function bytesOf (file) {
  if (file instanceof Blob) return new Uint8Array(await file.arrayBuffer())
  const { data } = file
  if (data instanceof Uint8Array) return data
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  throw new Error(`${file.name ?? 'a file'}: data must be a Blob, an ArrayBuffer or a typed array`)
}

// A magnet's .torrent from its `xs`: at most this big, and this long to arrive.
const MAX_TORRENT_FILE = 16 * 1024 * 1024
const EXACT_SOURCE_MS = 3000

/** `{ url, infoHash }` of a magnet's first http(s) `xs` with a hex btih; null otherwise. */
function exactSource (magnet) {
  if (!magnet.startsWith('magnet:?')) return null
  const params = new URLSearchParams(magnet.slice('magnet:?'.length))
  const btih = params.getAll('xt').map(xt => /^urn:btih:([0-9a-f]{40})$/i.exec(xt)?.[1]).find(Boolean)
  const url = params.getAll('xs').find(u => /^https?:\/\//i.test(u))
  return btih && url ? { url, infoHash: btih.toLowerCase() } : null
}

/** The bytes of a .torrent over HTTP, or null (failed, too big, too slow). */
async function fetchTorrentFile (url) {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(EXACT_SOURCE_MS) })
    if (!response.ok) return null
    if (Number(response.headers.get('content-length')) > MAX_TORRENT_FILE) return null
    const bytes = new Uint8Array(await response.arrayBuffer())
    return bytes.length <= MAX_TORRENT_FILE ? bytes : null
  } catch (e) {
    console.warn(`Shoal: no .torrent from ${url}: ${e.message}`)
    return null
  }
}

class Emitter {
  #handlers = new Map()
  on (name, fn) { (this.#handlers.get(name) ?? this.#handlers.set(name, new Set()).get(name)).add(fn); return this }
  off (name, fn) { this.#handlers.get(name)?.delete(fn); return this }
  once (name, fn) { const wrap = (...a) => { this.off(name, wrap); fn(...a) }; return this.on(name, wrap) }
  emit (name, ...args) { for (const fn of this.#handlers.get(name) ?? []) { try { fn(...args) } catch (e) { console.error(e) } } }
}

export class Client extends Emitter {
  #wasm
  constructor (wasm) { super(); this.#wasm = wasm }

  get peerId () { return this.#wasm.peerId }
  get torrents () { return [...torrents.values()].filter(t => t.client === this) }

  /**
   * Adds a magnet link, a .torrent (Uint8Array, ArrayBuffer, Blob/File). A magnet whose `xs`
   * names an http(s) .torrent gets it from there first: its metadata then need not wait for a
   * peer (BEP 9), and its web seeds can start at once.
   */
  async add (source) {
    if (source instanceof Blob) source = new Uint8Array(await source.arrayBuffer())
    else if (source instanceof ArrayBuffer) source = new Uint8Array(source)
    else if (typeof source === 'string' && /^[0-9a-f]{40}$/i.test(source.trim())) source = `magnet:?xt=urn:btih:${source.trim()}`
    // A magnet's .torrent from its `xs` (best effort: the magnet alone still works).
    const torrentFile = typeof source === 'string' ? await this.#exactSourceOf(source.trim()) : null
    if (torrentFile) {
      try { return this.#wrap(this.#wasm.add(source, torrentFile)) } catch (e) {
        console.warn(`Shoal: the magnet's .torrent is not used: ${e.message}`)
      }
    }
    const wasm = this.#wasm.add(source) // throws Error with a clear message on bad input
    return this.#wrap(wasm)
  }

  /** The bytes of the magnet's `xs` .torrent, or null (none, already added, or unreachable). */
  async #exactSourceOf (magnet) {
    const source = exactSource(magnet)
    if (!source || torrents.has(source.infoHash)) return null
    return fetchTorrentFile(source.url)
  }

  /** Makes a torrent of local files (File objects, or { name, data }) and seeds it. */
  async seed (files, options = {}) {
    const list = [...files]
    if (!list.length) throw new Error('Nothing to share: no files.')
    const entries = await Promise.all(list.map(async f => ({
      // A folder picked with <input webkitdirectory> gives "folder/sub/name".
      path: (f.webkitRelativePath || f.name).split('/').filter(Boolean),
      data: await bytesOf(f)
    })))
    let name = options.name
    if (entries.length === 1) {
      name ||= entries[0].path.at(-1)
    } else {
      const top = entries[0].path.length > 1 ? entries[0].path[0] : null
      const shared = top && entries.every(e => e.path.length > 1 && e.path[0] === top)
      if (shared) entries.forEach(e => e.path.shift())
      name ||= (shared ? top : 'files')
    }
    const inner = entries.map(e => ({ path: e.path.join('/'), data: e.data }))
    const wasm = await this.#wasm.seedFiles(name, inner, { pieceLength: options.pieceLength, trackers: options.trackers })
    return this.#wrap(wasm)
  }

  get (infoHash) { return torrents.get(String(infoHash).toLowerCase()) ?? null }

  destroy () {
    for (const t of this.torrents) t.destroy()
    this.#wasm.destroy()
  }

  #wrap (wasm) {
    const known = torrents.get(wasm.infoHash)
    if (known) return known
    const torrent = new Torrent(this, wasm)
    torrents.set(torrent.infoHash, torrent)
    this.emit('torrent', torrent)
    return torrent
  }
}

export class Torrent extends Emitter {
  #wasm
  #files = null
  #timer
  constructor (client, wasm) {
    super()
    this.client = client
    this.#wasm = wasm
    this.infoHash = wasm.infoHash
    wasm.setListener((name) => {
      if (name === 'metadata') { this.#files = null; this.emit('metadata') }
      if (name === 'wire') this.emit('wire')
      if (name === 'done') this.emit('done')
    })
    this.#timer = setInterval(() => this.emit('progress', this.status()), PROGRESS_MS)
  }

  get magnet () { return this.#wasm.magnet() }
  get name () { return this.status().name }
  get files () {
    this.#files ??= this.#wasm.files().map(f => new TorrentFile(this, this.#wasm, f))
    return this.#files
  }

  /** The .torrent file (Uint8Array), once the metadata is known. */
  torrentFile () { return this.#wasm.torrentFile() ?? null }
  /** Progress, rates, peers, memory: see Status in shoal.d.ts. */
  status () { return this.#wasm.status() }
  /** Verified pieces as a bitfield. */
  pieces () { return this.#wasm.pieces() }
  /** Resolves when the metadata is known. */
  ready () { return this.#wasm.ready() }

  destroy () {
    clearInterval(this.#timer)
    torrents.delete(this.infoHash)
    this.#wasm.destroy()
    this.emit('close')
  }
}

// How long streamTo's early reader waits for the player's first request before it goes.
const EARLY_READER_MS = 30000

export class TorrentFile {
  #wasm
  #early = null
  constructor (torrent, wasm, entry) {
    this.torrent = torrent
    this.#wasm = wasm
    Object.assign(this, entry) // index, name, path, length, offset
    this.type = mimeType(this.name)
  }

  /** Bytes start..end (end exclusive), waiting for them to download. */
  async read (start = 0, end = this.length) {
    const out = new Uint8Array(Math.max(0, Math.min(end, this.length) - start))
    const reader = this.#wasm.createReader(this.index)
    try {
      for (let at = 0; at < out.length;) {
        const chunk = await reader.read(start + at, Math.min(start + out.length, start + at + 8 * 1024 * 1024))
        out.set(chunk, at)
        at += chunk.length
      }
    } finally { reader.close() }
    return out
  }

  /** The whole file as a Blob. */
  async blob () { return new Blob([await this.read()], { type: this.type }) }

  /** A reader kept between calls: what it reads next is fetched first. */
  createReader () {
    this.#dropEarlyReader()
    return this.#wasm.createReader(this.index)
  }

  #dropEarlyReader () {
    this.#early?.close()
    this.#early = null
  }

  /** The URL the Service Worker answers for this file. */
  get streamURL () {
    return new URL(`shoal-stream/${this.torrent.infoHash}/${this.index}/${encodeURIComponent(this.name)}`, serviceWorkerScope()).href
  }

  /** Plays the file in a <video>/<audio> element, streaming while it downloads. */
  async streamTo (element) {
    // A player reads the start first. Ask for it now, while the Service Worker gets ready and
    // the player's first request travels, not once that request reaches this page: until
    // then the engine would fetch pieces anywhere in the file. The player's own reader
    // (createReader, from the stream's answer) takes over.
    if (!this.#early) {
      const early = this.#wasm.createReader(this.index)
      this.#early = early
      early.readSome(0, 1).catch(() => {})
      setTimeout(() => { if (this.#early === early) this.#dropEarlyReader() }, EARLY_READER_MS)
    }
    await registerServiceWorker()
    element.src = this.streamURL
    return element
  }
}

// ---- playing with a fallback ----------------------------------------------------------------

/** Why Shoal cannot stream in this page, or null when it can. */
export function unavailableReason () {
  if (typeof RTCPeerConnection === 'undefined') return 'this browser has no WebRTC'
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return 'Service Workers need https or http://localhost'
  return null
}

// How long `play` waits for a torrent's metadata from peers before it plays over HTTP.
const METADATA_PATIENCE_MS = 8000

/**
 * Plays one file of a torrent in a <video> or <audio> element through Shoal, and over plain
 * HTTP from `fallback` where Shoal cannot: no WebRTC or Service Worker here, a source that
 * does not add, or no metadata within `metadataTimeout` ms (no peer reachable). Resolves with
 * how it plays: `{ via: 'shoal', torrent, file }` or `{ via: 'http', reason }`.
 */
export async function play (element, options = {}) {
  const { source, file: which, fallback, client: clientOptions, metadataTimeout = METADATA_PATIENCE_MS } = options
  const viaHttp = reason => {
    if (!fallback) throw new Error(`Shoal cannot play here (${reason}) and there is no fallback URL.`)
    console.info(`Shoal: playing over HTTP: ${reason}`)
    element.src = fallback
    return { via: 'http', reason }
  }
  const unavailable = unavailableReason()
  if (unavailable) return viaHttp(unavailable)
  let torrent
  try {
    const client = await createClient(clientOptions)
    torrent = await client.add(source)
    const known = await Promise.race([
      torrent.ready().then(() => true),
      new Promise(resolve => setTimeout(resolve, metadataTimeout, false))
    ])
    if (!known) {
      torrent.destroy()
      return viaHttp(`no peer sent the torrent's metadata within ${metadataTimeout} ms`)
    }
  } catch (e) {
    torrent?.destroy()
    return viaHttp(String(e?.message || e))
  }
  const file = pickFile(torrent.files, which)
  if (!file) throw new Error(`The torrent has no file ${which ?? 'to play'}.`)
  await file.streamTo(element)
  return { via: 'shoal', torrent, file }
}

/** A file by index or name; by default the first the browser can play, else the first. */
function pickFile (files, which) {
  if (typeof which === 'number') return files.find(f => f.index === which) ?? null
  if (typeof which === 'string') return files.find(f => f.name === which || f.path === which) ?? null
  return files.find(f => canPlay(f)) ?? files[0] ?? null
}

// ---- the Service Worker side ----------------------------------------------------------------

let registration = null
function serviceWorkerScope () { return new URL('./', import.meta.url).href }

/** Registers sw.js (next to this module) and waits until it controls the page. */
export async function registerServiceWorker () {
  if (!('serviceWorker' in navigator)) {
    throw new Error('This page cannot stream: Service Workers need https or http://localhost.')
  }
  registration ??= navigator.serviceWorker.register(new URL('./sw.js', import.meta.url), { scope: serviceWorkerScope(), type: 'classic' })
  await registration
  await navigator.serviceWorker.ready
  if (!navigator.serviceWorker.controller) {
    await new Promise(resolve => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }))
  }
}

let listening = false
function listenToServiceWorker () {
  if (listening || !('serviceWorker' in navigator)) return
  listening = true
  navigator.serviceWorker.addEventListener('message', event => {
    if (event.data?.type === 'shoal-stream' && event.ports[0]) {
      answerStream(event.data, event.ports[0]).catch(e => {
        try { event.ports[0].postMessage({ status: 500, text: String(e?.message || e) }) } catch {}
      })
    }
  })
}

async function answerStream ({ infoHash, file, method, range }, port) {
  const torrent = torrents.get(infoHash)
  if (!torrent) return port.postMessage({ status: 404, text: 'This page does not hold that torrent.' })
  await torrent.ready()
  const entry = torrent.files.find(f => f.index === file)
  if (!entry) return port.postMessage({ status: 404, text: 'No such file in the torrent.' })
  const length = entry.length
  const headers = { 'Accept-Ranges': 'bytes', 'Content-Type': entry.type, 'Cache-Control': 'no-store' }
  let start = 0
  let end = length // exclusive
  let status = 200
  if (range) {
    const parsed = parseRange(range, length)
    if (parsed === 'unsatisfiable') {
      return port.postMessage({ status: 416, headers: { ...headers, 'Content-Range': `bytes */${length}` } })
    }
    if (parsed) { [start, end] = parsed; status = 206; headers['Content-Range'] = `bytes ${start}-${end - 1}/${length}` }
  }
  headers['Content-Length'] = String(end - start)
  if (method === 'HEAD' || start === end) return port.postMessage({ status, headers })
  port.postMessage({ status, headers, body: true })
  const reader = entry.createReader()
  let at = start
  let closed = false
  const finish = () => { if (!closed) { closed = true; reader.close() } }
  port.onmessage = async ({ data }) => {
    if (data?.type === 'cancel') return finish()
    if (data?.type !== 'pull' || closed) return
    try {
      // readSome: the bytes verified in a row from `at`, as soon as there is one piece.
      const chunk = await reader.readSome(at, Math.min(end, at + STREAM_CHUNK))
      at += chunk.length
      port.postMessage({ chunk: chunk.buffer, done: at >= end }, [chunk.buffer])
      if (at >= end) finish()
    } catch (e) {
      port.postMessage({ error: String(e?.message || e) })
      finish()
    }
  }
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` → [start, end) ; null to ignore; 'unsatisfiable'. */
export function parseRange (header, length) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(String(header).trim())
  if (!m || (m[1] === '' && m[2] === '')) return null // not one range we serve: whole file
  let start, end
  if (m[1] === '') { // suffix
    const n = Number(m[2])
    if (n === 0) return 'unsatisfiable'
    start = Math.max(0, length - n); end = length
  } else {
    start = Number(m[1])
    end = m[2] === '' ? length : Math.min(length, Number(m[2]) + 1)
    if (m[2] !== '' && Number(m[2]) < start) return null
  }
  if (start >= length) return 'unsatisfiable'
  return [start, end]
}

const TYPES = {
  mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/mp4', webm: 'video/webm', mkv: 'video/webm', ogv: 'video/ogg',
  mp3: 'audio/mpeg', m4a: 'audio/mp4', aac: 'audio/aac', ogg: 'audio/ogg', oga: 'audio/ogg', opus: 'audio/ogg', wav: 'audio/wav', flac: 'audio/flac',
  vtt: 'text/vtt', srt: 'text/plain', txt: 'text/plain', jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp', pdf: 'application/pdf'
}
export function mimeType (name) {
  const ext = String(name).split('.').pop().toLowerCase()
  return TYPES[ext] || 'application/octet-stream'
}

/** Whether this browser can likely play the file in a media element. */
export function canPlay (file) {
  const kind = file.type.split('/')[0]
  if (kind !== 'video' && kind !== 'audio') return false
  const probe = document.createElement(kind)
  return probe.canPlayType(file.type) !== ''
}
