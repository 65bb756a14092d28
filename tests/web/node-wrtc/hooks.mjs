// Module resolution hook (registered by node_peer.mjs): `webrtc-polyfill`, which WebTorrent's
// simple-peer and bittorrent-tracker import, resolves to ./wrtc.mjs instead.
const TARGET = new URL('./wrtc.mjs', import.meta.url).href

export async function resolve (specifier, context, next) {
  return specifier === 'webrtc-polyfill' ? { url: TARGET, shortCircuit: true } : next(specifier, context)
}
