// What the page's address asks for: a magnet to open and trackers to use.
//
//   index.html#magnet=<URL-encoded magnet or info hash>&tracker=ws://host/announce
//   index.html?magnet=...&tracker=...
//
// A magnet pasted into the hash without encoding (#magnet=magnet:?xt=...&dn=...) is taken
// whole: everything after "magnet=" is the link.

/** `{ magnet: string|null, trackers: string[] }` from a location-like object. */
export function readParams (loc = location) {
  const query = new URLSearchParams(loc.search)
  const rawHash = String(loc.hash || '').replace(/^#/, '')
  let magnet = null
  let hash
  const bare = rawHash.match(/(?:^|&)magnet=(magnet:\?.*)$/i)
  if (bare) {
    magnet = bare[1]
    hash = new URLSearchParams(rawHash.slice(0, bare.index))
  } else {
    hash = new URLSearchParams(rawHash)
    magnet = hash.get('magnet')
  }
  magnet ||= query.get('magnet')
  const trackers = [...hash.getAll('tracker'), ...query.getAll('tracker')]
    .flatMap(t => t.split(/[\s,]+/)).filter(Boolean)
  return { magnet: magnet ? magnet.trim() : null, trackers }
}

/**
 * The trackers to announce to: the address's, else the `<meta name="shoal-trackers">` tag's
 * (space or comma separated), else ws(s)://<this host>/announce.
 */
export function chooseTrackers (params, doc = document, loc = location) {
  if (params.trackers.length) return params.trackers
  const meta = doc.querySelector('meta[name="shoal-trackers"]')?.getAttribute('content') ?? ''
  const listed = meta.split(/[\s,]+/).filter(Boolean)
  if (listed.length) return listed
  return [`${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/announce`]
}

/** A link that opens this app with `magnet` (the page's other query parameters kept). */
export function appLink (magnet, loc = location) {
  const query = new URLSearchParams(loc.search)
  query.delete('magnet')
  const search = query.toString()
  return `${loc.origin}${loc.pathname}${search ? `?${search}` : ''}#magnet=${encodeURIComponent(magnet)}`
}
