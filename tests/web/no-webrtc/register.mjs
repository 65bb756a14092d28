// node --import ./no-webrtc/register.mjs script.mjs
// bittorrent-tracker's client imports a WebRTC polyfill whose native binary an
// `npm install --ignore-scripts` does not fetch. Tracker tests never open a WebRTC connection
// (they announce with numwant 0), so the polyfill is replaced by a stub that would throw if used.
import { register } from 'node:module'
register('./hooks.mjs', import.meta.url)
