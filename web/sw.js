// Shoal's Service Worker: answers the media element's requests for
// <scope>shoal-stream/<info hash>/<file index>/<name> from the page that holds the torrent.
//
// The worker holds no torrent data. For each request it opens a MessageChannel to the page
// (the client that made the request, else any window of ours), sends it the method and Range
// header, and streams the body back chunk by chunk as the page's reader delivers verified
// bytes: one chunk per pull, so a player that stops reading stops the download of what it
// would not play. A cancelled body tells the page to drop its reader.

const STREAM = /\/shoal-stream\/([0-9a-f]{40})\/(\d+)(?:\/|$)/
// How long the page may take to answer the head of a request before the player gets a 504.
const HEAD_TIMEOUT_MS = 30000

self.addEventListener('install', () => self.skipWaiting())
self.addEventListener('activate', event => event.waitUntil(self.clients.claim()))

self.addEventListener('fetch', event => {
  const url = new URL(event.request.url)
  const match = url.pathname.match(STREAM)
  if (!match) return
  event.respondWith(serve(event, match[1], Number(match[2])))
})

async function serve (event, infoHash, file) {
  const client = await pageFor(event)
  if (!client) return text(503, 'No Shoal page is open to serve this stream.')
  const { port1: port, port2 } = new MessageChannel()
  const inbox = messages(port)
  client.postMessage({
    type: 'shoal-stream',
    infoHash,
    file,
    method: event.request.method,
    range: event.request.headers.get('range')
  }, [port2])
  const head = await Promise.race([inbox.next(), sleep(HEAD_TIMEOUT_MS).then(() => null)])
  if (!head) {
    port.close()
    return text(504, 'The page did not answer in time.')
  }
  const headers = new Headers(head.headers || {})
  if (!head.body) {
    port.close()
    return new Response(head.text ?? null, { status: head.status, headers })
  }
  const body = new ReadableStream({
    async pull (controller) {
      port.postMessage({ type: 'pull' })
      const msg = await inbox.next()
      if (msg.chunk) controller.enqueue(new Uint8Array(msg.chunk))
      if (msg.done) { controller.close(); port.close() }
      if (msg.error) { controller.error(new Error(msg.error)); port.close() }
    },
    cancel () {
      port.postMessage({ type: 'cancel' })
      port.close()
    }
  }, { highWaterMark: 0 })
  return new Response(body, { status: head.status, headers })
}

// The window that asked (a <video> element's requests carry its document's client id), else
// any window of this origin: the page answers 404 if it does not hold the torrent.
async function pageFor (event) {
  if (event.clientId) {
    const client = await self.clients.get(event.clientId)
    if (client) return client
  }
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true })
  return windows.find(w => w.focused) || windows[0] || null
}

// Messages of a port as a queue: next() resolves with the next one.
function messages (port) {
  const queue = []
  const waiting = []
  port.onmessage = event => {
    const resolve = waiting.shift()
    if (resolve) resolve(event.data)
    else queue.push(event.data)
  }
  return {
    next: () => queue.length ? Promise.resolve(queue.shift()) : new Promise(resolve => waiting.push(resolve))
  }
}

const text = (status, message) => new Response(message, { status, headers: { 'Content-Type': 'text/plain; charset=utf-8' } })
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
