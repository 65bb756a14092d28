// bittorrent-tracker's own client (npm) against a tracker under test: two peers of one torrent,
// a seeder and a leecher (the leecher sends `left: null` like a magnet client), announce,
// scrape, then the seeder leaves. Prints one JSON line per step and a final {"ok": bool}.
// Usage: node tracker_client.mjs ANNOUNCE_URL [--expect-peer]   (exits by itself within 30 s)
import Client from 'bittorrent-tracker'
import crypto from 'node:crypto'

const url = process.argv[2]
const expectPeer = process.argv.includes('--expect-peer') // http/udp: the leecher must get the seeder's address
const isWs = /^wss?:/.test(url)
const infoHash = crypto.randomBytes(20).toString('hex')
// Ids with bytes >= 0x80 and control bytes: the binary-string encoding must survive JSON.
const peerIdA = Buffer.from('2d5348303030312d' + '00017f80ff0a22' + '5c' + 'c0ffee0d', 'hex').toString('hex')
const peerIdB = crypto.randomBytes(20).toString('hex')
const say = o => console.log(JSON.stringify(o))
const fail = msg => { say({ ok: false, error: msg }); process.exit(1) }
setTimeout(() => fail('timeout'), 30000).unref()

// Without WebRTC in node, a truthy `wrtc` keeps ws:// trackers enabled; numwant 0 means no
// offers are generated, so no RTCPeerConnection is ever created.
const common = { infoHash, announce: [url], wrtc: isWs ? {} : undefined }
const seeder = new Client({ ...common, peerId: peerIdA, port: 6881 })
const leecher = new Client({ ...common, peerId: peerIdB, port: 6882 })
for (const [name, c] of [['seeder', seeder], ['leecher', leecher]]) {
  c.on('warning', e => say({ step: 'warning', who: name, message: e.message }))
  c.on('error', e => fail(`${name} error: ${e.message}`))
}
const once = (c, ev) => new Promise(resolve => c.once(ev, resolve))

const seederUpdate = once(seeder, 'update')
seeder.start({ left: 0, numwant: 0 })
const u1 = await seederUpdate
say({ step: 'seeder announced', complete: u1.complete, incomplete: u1.incomplete })
if (u1.complete !== 1 || u1.incomplete !== 0) fail('seeder announce: wrong counts')

const leecherUpdate = once(leecher, 'update')
const leecherPeer = expectPeer ? once(leecher, 'peer') : null
// Over ws, Infinity goes out as `left: null` (a magnet client); http/udp clients cannot send it.
leecher.start({ left: isWs ? Infinity : 1000, numwant: isWs ? 0 : 50 })
const u2 = await leecherUpdate
say({ step: 'leecher announced', complete: u2.complete, incomplete: u2.incomplete })
if (u2.complete !== 1 || u2.incomplete !== 1) fail('leecher announce: wrong counts (left unknown must not be a seeder)')
if (leecherPeer) {
  const peer = await leecherPeer
  say({ step: 'leecher got peer', peer })
  if (!/:6881$/.test(String(peer))) fail(`unexpected peer ${peer}`)
}

const scraped = once(leecher, 'scrape')
leecher.scrape()
const s1 = await scraped
say({ step: 'scrape', complete: s1.complete, incomplete: s1.incomplete, downloaded: s1.downloaded })
if (s1.complete !== 1 || s1.incomplete !== 1) fail('scrape: wrong counts')

// The seeder leaves; the next scrape must not count it.
await new Promise(resolve => seeder.stop() || setTimeout(resolve, 500))
await new Promise(resolve => setTimeout(resolve, 300))
const scraped2 = once(leecher, 'scrape')
leecher.scrape()
const s2 = await scraped2
say({ step: 'scrape after stop', complete: s2.complete, incomplete: s2.incomplete })
if (s2.complete !== 0 || s2.incomplete !== 1) fail('seeder still counted after stop')

seeder.destroy(); leecher.destroy()
say({ ok: true })
process.exit(0)
