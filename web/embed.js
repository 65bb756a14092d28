// The player `shoal serve` prints a snippet for: an <iframe> of embed.html whose address says
// what to play, after the '#' so that it never reaches a server:
//
//   embed.html#source=<magnet, percent-encoded>&file=<index or name>&fallback=<http URL>[&autoplay=1]
//
// It plays the file through Shoal (peers over WebRTC, the origin as web seed and tracker, as
// the magnet says) and over plain HTTP from `fallback` where Shoal cannot run here; see play()
// in shoal.js. The outcome is on <html data-via="shoal|http"> for whoever embeds or tests it.
import { play } from './shoal.js'

const params = new URLSearchParams(location.hash.slice(1))
const video = document.getElementById('video')
const problem = document.getElementById('problem')

if (params.get('autoplay') === '1') {
  // Browsers let a page start a video by itself only without sound.
  video.muted = true
  video.autoplay = true
}

const file = params.get('file')
play(video, {
  source: params.get('source') ?? '',
  file: file === null ? undefined : /^\d+$/.test(file) ? Number(file) : file,
  fallback: params.get('fallback') ?? undefined
}).then(played => {
  document.documentElement.dataset.via = played.via
}, e => {
  problem.textContent = `This video cannot play: ${e?.message || e}`
  document.documentElement.dataset.via = 'none'
})
