// The open torrent: name, progress, peers, rates, piece map, share links, files, player.

import { canPlay } from '../shoal.js'
import { h } from './dom.js'
import { formatBytes, formatPercent, formatRate, plural } from './format.js'
import { drawPieceMap } from './piecemap.js'
import { appLink } from './params.js'

// A torrent with no peer for this long gets the "no peers yet" notice.
const NO_PEERS_GRACE_MS = 2500

const MEDIA_ERRORS = {
  1: 'playback was aborted',
  2: 'a network error stopped it',
  3: 'its data could not be decoded',
  4: 'its format is not supported here'
}

/**
 * The view of one torrent (`entry`: `{ torrent, kind, addedAt }`). `say(kind, text)` posts a
 * page message. `render()` builds it once, `update()` refreshes it from the torrent's status.
 */
export class TorrentView {
  constructor (entry, say) {
    this.entry = entry
    this.torrent = entry.torrent
    this.say = say
    this.filesShown = false
    this.player = null
    this.root = this.render()
  }

  render () {
    const t = this.torrent
    const link = appLink(t.magnet)
    this.title = h('h2', { class: 'name' }, 'Fetching the torrent\u2019s details\u2026')
    this.progress = h('progress', { max: 1, value: 0, id: `progress-${t.infoHash}`, 'aria-label': 'Downloaded' })
    this.progressText = h('span', { class: 'progress-text' })
    this.peers = h('span', { class: 'stat', 'data-stat': 'peers' })
    this.down = h('span', { class: 'stat', 'data-stat': 'down' })
    this.up = h('span', { class: 'stat', 'data-stat': 'up' })
    this.canvas = h('canvas', { class: 'piecemap', role: 'img', 'aria-label': 'Pieces held by this tab' })
    this.notices = h('div', { class: 'notices', role: 'status', 'aria-live': 'polite' })
    this.files = h('ul', { class: 'files', 'aria-label': 'Files' },
      h('li', { class: 'muted' }, 'The file list arrives with the torrent\u2019s details from a peer.'))
    this.stage = h('div', { class: 'stage', hidden: true })
    const magnet = h('input', { class: 'magnet', readOnly: true, value: t.magnet, 'aria-label': 'Magnet link', onfocus: e => e.target.select() })
    return h('article', { class: 'torrent card', dataset: { infohash: t.infoHash, kind: this.entry.kind } },
      h('header', { class: 'torrent-head' },
        this.title,
        h('button', { type: 'button', class: 'quiet', onclick: () => this.onRemove?.() }, 'Close')),
      this.stage,
      h('div', { class: 'progress-row' }, this.progress, this.progressText),
      h('div', { class: 'stats' }, this.peers, this.down, this.up),
      this.canvas,
      this.notices,
      this.files,
      h('details', { class: 'share', open: this.entry.kind === 'shared' },
        h('summary', {}, this.entry.kind === 'shared' ? 'Send this to share it' : 'Share'),
        h('div', { class: 'row' }, magnet,
          h('button', { type: 'button', class: 'copy', onclick: () => this.copy(t.magnet, 'Magnet link copied.') }, 'Copy magnet')),
        h('div', { class: 'row' },
          h('a', { class: 'app-link', href: link, target: '_blank', rel: 'noopener' }, 'Link that opens this in Shoal'),
          h('button', { type: 'button', class: 'copy', onclick: () => this.copy(link, 'Link copied.') }, 'Copy link')),
        h('p', { class: 'muted small' }, 'This tab shares for as long as it stays open.')))
  }

  async copy (text, done) {
    try {
      await navigator.clipboard.writeText(text)
      this.say('info', done)
    } catch {
      this.say('error', 'The browser would not let the page copy: select the text and copy it yourself.')
    }
  }

  update () {
    const t = this.torrent
    let s
    try { s = t.status() } catch { return }
    if (s.name && this.title.textContent !== s.name) this.title.textContent = s.name
    if (s.ready && !this.filesShown) this.showFiles()
    this.progress.value = s.progress
    this.progress.setAttribute('aria-valuetext', formatPercent(s.progress))
    const size = s.length != null ? ` of ${formatBytes(s.length)}` : ''
    const have = s.length != null ? formatBytes(Math.round(s.length * s.progress)) : formatBytes(0)
    this.progressText.textContent = s.done
      ? `${this.entry.kind === 'shared' ? 'Sharing' : 'Done'} \u00b7 ${formatBytes(s.length ?? 0)}`
      : `${formatPercent(s.progress)} \u00b7 ${have}${size}`
    const seeds = s.webSeeds ? ` \u00b7 ${plural(s.webSeeds, 'web seed')}` : ''
    this.peers.textContent = `${plural(s.peers, 'peer')}${seeds}`
    this.down.textContent = `\u2193 ${formatRate(s.downloadRate)}`
    this.up.textContent = `\u2191 ${formatRate(s.uploadRate)}`
    this.root.dataset.done = String(Boolean(s.done))
    drawPieceMap(this.canvas, t.pieces(), s.piecesTotal)
    const lonely = s.peers === 0 && !s.webSeeds && Date.now() - this.entry.addedAt > NO_PEERS_GRACE_MS
    this.notice('no-peers', lonely && !s.done ? 'No peers yet \u2014 waiting for someone to share this.' : null)
    this.notice('alone', lonely && s.done && this.entry.kind === 'shared'
      ? 'Nobody is connected yet: send the link above to someone.'
      : null, 'info')
    this.notice('engine-error', s.error ? `Something went wrong: ${s.error}` : null, 'error')
  }

  /** Shows (or with `text` null, removes) the notice called `key`. */
  notice (key, text, kind = 'warn', ...extra) {
    let el = this.notices.querySelector(`[data-notice="${key}"]`)
    if (!text) { el?.remove(); return }
    if (!el) {
      el = h('p', { class: `notice ${kind}`, dataset: { notice: key } })
      this.notices.append(el)
    }
    el.replaceChildren(h('span', {}, text), ...extra)
  }

  showFiles () {
    this.filesShown = true
    const files = this.torrent.files
    this.files.replaceChildren(...files.map(file => {
      const playable = /^(video|audio)\//.test(file.type)
      return h('li', { class: 'file', dataset: { index: file.index } },
        h('span', { class: 'file-name', title: file.path }, file.path),
        h('span', { class: 'file-size' }, formatBytes(file.length)),
        playable ? h('button', { type: 'button', class: 'play', onclick: () => this.play(file) }, 'Play') : null,
        h('button', { type: 'button', class: 'save', onclick: e => this.save(file, e.currentTarget) }, 'Save'))
    }))
    if (this.entry.kind !== 'shared') {
      const first = files.filter(f => /^(video|audio)\//.test(f.type)).sort((a, b) => b.length - a.length)[0]
      if (first) this.play(first, { auto: true })
      else if (files.length === 1) this.cannotPlay(files[0], 'it is not audio or video')
    }
  }

  cannotPlay (file, why) {
    const button = h('button', { type: 'button', class: 'save', onclick: e => this.save(file, e.currentTarget) }, `Download ${file.name}`)
    this.notice('cannot-play', `This browser cannot play ${file.name}: ${why}. You can download it instead.`, 'warn', ' ', button)
  }

  /** Plays `file` in the stage, streaming it through the Service Worker. */
  async play (file, { auto = false } = {}) {
    this.notice('cannot-play', null)
    this.notice('muted', null)
    this.player?.removeAttribute('src')
    this.player?.load()
    if (!canPlay(file)) {
      this.stage.hidden = true
      return this.cannotPlay(file, `it is ${file.type}, a kind of file this browser does not play`)
    }
    const media = h(file.type.startsWith('audio/') ? 'audio' : 'video', { controls: true, playsInline: true, preload: 'auto', 'aria-label': file.name })
    media.addEventListener('error', () => {
      if (this.player !== media) return
      this.cannotPlay(file, MEDIA_ERRORS[media.error?.code] ?? 'the player failed')
    })
    this.player = media
    this.stage.replaceChildren(media, h('p', { class: 'now-playing' }, file.name))
    this.stage.hidden = false
    for (const li of this.root.querySelectorAll('.file')) {
      const playing = Number(li.dataset.index) === file.index
      li.classList.toggle('playing', playing)
      const button = li.querySelector('button.play')
      if (button) button.textContent = playing ? 'Playing' : 'Play'
    }
    try {
      await file.streamTo(media)
    } catch (e) {
      this.stage.hidden = true
      return this.cannotPlay(file, e.message.replace(/\.$/, ''))
    }
    try {
      await media.play()
    } catch (e) {
      if (e.name !== 'NotAllowedError' || this.player !== media) return // errors: the 'error' event
      // Autoplay with sound needs a click on this page first: start muted instead.
      media.muted = true
      try {
        await media.play()
        this.notice('muted', 'Playing muted: the browser allows sound after a click. Unmute in the player.', 'info')
      } catch {}
    }
    if (!auto) media.focus()
  }

  /** Saves `file` once it is all here, through a Blob. */
  async save (file, button) {
    const label = button.textContent
    button.disabled = true
    button.textContent = 'Downloading\u2026'
    try {
      const blob = await file.blob()
      const url = URL.createObjectURL(blob)
      const a = h('a', { href: url, download: file.name, hidden: true })
      document.body.append(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 60_000)
    } catch (e) {
      this.say('error', `Could not save ${file.name}: ${e.message}`)
    } finally {
      button.disabled = false
      button.textContent = label
    }
  }

  destroy () {
    this.player?.removeAttribute('src')
    this.player?.load()
    this.root.remove()
  }
}
