// The library of the Shoal server this page came from (`shoal serve`): its torrents beside the
// tab's own, a magnet added there (the server's engine reaches TCP, uTP, WebRTC and web seed
// peers alike) and its files played over HTTP while they download (the server fetches first
// what the player reads, so seeking works). Only on a server that lets this page manage its
// library: `shoal serve` says so in <meta name="shoal-library"> ("open" on loopback, "auth"
// when it wants a password, which the browser asks for on the first request).

import { h } from './dom.js'
import { formatBytes, formatPercent, formatRate } from './format.js'

const MEDIA = /\.(mp4|m4v|webm|mkv|mov|ogv|mp3|m4a|ogg|oga|opus|flac|wav)$/i

/** What the page's <meta name="shoal-library"> says: 'open', 'auth', or null (no library). */
export function libraryAccess () {
  const content = document.querySelector('meta[name="shoal-library"]')?.content?.trim()
  return content === 'open' || content === 'auth' ? content : null
}

async function call (method, path, body) {
  const init = { method, headers: {} }
  if (body instanceof Uint8Array) {
    init.headers['content-type'] = 'application/x-bittorrent'
    init.body = body
  } else if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const response = await fetch(path, init)
  if (response.status === 204) return null
  const answer = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }))
  if (!response.ok) throw new Error(answer.error ?? `${response.status} ${response.statusText}`)
  return answer
}

/** The server's library, shown in `listEl` (items) and `viewEl` (the selected torrent). */
export class ServerLibrary {
  constructor ({ listEl, emptyEl, viewEl, say, onSelect }) {
    Object.assign(this, { listEl, emptyEl, viewEl, say, onSelect })
    this.torrents = new Map() // id -> the API's torrent
    this.items = new Map() // id -> <li>
    this.current = null // id
    this.article = null
    this.playing = null // file index playing in `article`
    this.filesLoaded = null // id whose files `article` lists
    this.events = null
  }

  /** Lists the library and follows its changes (Server-Sent Events). */
  async start () {
    this.show((await call('GET', 'api/torrents')).torrents)
    this.events = new EventSource('api/events')
    this.events.addEventListener('torrents', e => {
      try { this.show(JSON.parse(e.data).torrents) } catch { /* the next event */ }
    })
  }

  /** Adds a magnet, an info hash or a .torrent's bytes; returns the torrent (and selects it). */
  async add (source) {
    const torrent = source instanceof Uint8Array
      ? await call('POST', 'api/torrents', source)
      : await call('POST', 'api/torrents', { source })
    this.put(torrent)
    await this.select(torrent.id)
    return torrent
  }

  /** The whole list, as the server sent it: torrents gone from it leave the page too. */
  show (torrents) {
    const seen = new Set(torrents.map(t => t.id))
    for (const t of torrents) this.put(t)
    for (const [id, item] of this.items) {
      if (seen.has(id)) continue
      item.remove()
      this.items.delete(id)
      this.torrents.delete(id)
      if (this.current === id) this.close()
    }
    this.emptyEl.hidden = this.items.size > 0
    if (this.current && this.torrents.has(this.current)) this.update()
  }

  /** One torrent, new or changed; the others stay as they are. */
  put (t) {
    this.torrents.set(t.id, { ...this.torrents.get(t.id), ...t })
    let item = this.items.get(t.id)
    if (!item) {
      item = h('li', {},
        h('button', { type: 'button', class: 'item', dataset: { id: t.id }, onclick: () => this.select(t.id) },
          h('span', { class: 'item-name' }), h('span', { class: 'item-state' })))
      this.items.set(t.id, item)
      this.listEl.append(item)
    }
    item.querySelector('.item-name').textContent = t.name
    item.querySelector('.item-state').textContent = t.state === 'downloading' ? formatPercent(t.progress) : t.state
    this.emptyEl.hidden = this.items.size > 0
    if (this.current === t.id) this.update()
  }

  /** Shows torrent `id`, with its files (fetched once its metadata is known). */
  async select (id) {
    if (this.current !== id) {
      this.close()
      this.current = id
      this.article = this.render(this.torrents.get(id))
      this.viewEl.append(this.article)
    }
    for (const [key, item] of this.items) item.classList.toggle('selected', key === id)
    this.onSelect?.()
    this.article.hidden = false
    await this.loadFiles()
  }

  hide () {
    if (this.article) this.article.hidden = true
    for (const item of this.items.values()) item.classList.remove('selected')
  }

  close () {
    this.article?.remove()
    this.article = null
    this.current = null
    this.playing = null
    this.filesLoaded = null
  }

  render (t) {
    const act = (label, action) => h('button', { type: 'button', class: 'quiet', dataset: { action }, onclick: () => this.act(action) }, label)
    return h('article', { class: 'torrent card server', dataset: { infohash: t.info_hash, kind: 'server' } },
      h('header', { class: 'torrent-head' },
        h('h2', { class: 'name' }, t.name),
        act('Pause', 'pause'), act('Resume', 'resume'), act('Remove', 'remove')),
      h('div', { class: 'stage', hidden: true }),
      h('div', { class: 'progress-row' },
        h('progress', { max: 1, value: 0, 'aria-label': 'Downloaded by the server' }),
        h('span', { class: 'progress-text' })),
      h('div', { class: 'stats' }, h('span', { class: 'stat', dataset: { stat: 'server' } })),
      h('ul', { class: 'files', 'aria-label': 'Files' },
        h('li', { class: 'muted' }, 'The file list arrives with the torrent\u2019s details.')),
      h('p', { class: 'muted small' }, 'Downloaded by this page\u2019s server, which reaches every kind of peer; it plays here over HTTP while it downloads.'))
  }

  update () {
    const t = this.torrents.get(this.current)
    if (!t || !this.article) return
    const a = this.article
    a.querySelector('progress').value = t.progress
    a.querySelector('.progress-text').textContent = `${formatPercent(t.progress)} of ${formatBytes(t.length ?? NaN)}`
    const peers = Object.entries(t.peers_by_transport ?? {}).map(([k, n]) => `${n} ${k}`).join(', ')
    a.querySelector('[data-stat="server"]').textContent =
      `${t.state} \u00b7 ${peers || 'no peers'} \u00b7 \u2193 ${formatRate(t.download_rate)} \u00b7 \u2191 ${formatRate(t.upload_rate)}`
    a.dataset.state = t.state
    a.dataset.done = String(t.state === 'seeding')
    const stopped = t.state === 'paused' || t.state === 'failed'
    a.querySelector('[data-action="pause"]').hidden = stopped
    a.querySelector('[data-action="resume"]').hidden = !stopped
    a.querySelector('[data-action="remove"]').hidden = t.shared
    if (!this.filesLoaded && t.length !== null) this.loadFiles()
  }

  async loadFiles () {
    const id = this.current
    if (!id || this.filesLoaded === id) return
    const t = await call('GET', `api/torrents/${id}`).catch(() => null)
    if (!t?.files?.length || this.current !== id) return
    this.filesLoaded = id
    const list = this.article.querySelector('.files')
    list.replaceChildren(...t.files.map(f => h('li', { class: 'file', dataset: { index: String(f.index) } },
      h('span', { class: 'file-name' }, f.path),
      h('span', { class: 'muted small' }, formatBytes(f.length)),
      MEDIA.test(f.path) ? h('button', { type: 'button', class: 'play', onclick: () => this.play(f) }, 'Play') : null,
      h('a', { class: 'save', href: f.stream_url, download: f.path.split('/').pop() }, 'Save'))))
    const first = t.files.find(f => MEDIA.test(f.path))
    if (first && this.playing === null) this.play(first)
  }

  /** Plays `file` from its stream_url: the browser's own player, with Range for seeking. */
  play (file) {
    const stage = this.article.querySelector('.stage')
    this.playing = file.index
    const video = h('video', { controls: true, autoplay: true, muted: true, playsInline: true, src: file.stream_url })
    video.addEventListener('error', () => this.say('error', `${file.path} cannot play here (${video.error?.message || 'an unsupported format'}); Save it instead.`))
    stage.replaceChildren(video)
    stage.hidden = false
  }

  async act (action) {
    const id = this.current
    try {
      if (action === 'remove') {
        await call('DELETE', `api/torrents/${id}`)
        this.show([...this.torrents.values()].filter(t => t.id !== id))
      } else {
        this.put(await call('POST', `api/torrents/${id}/${action}`))
      }
    } catch (e) {
      this.say('error', `The server could not ${action} it: ${e.message}`)
    }
  }
}
