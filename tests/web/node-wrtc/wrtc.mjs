// What WebTorrent gets for `webrtc-polyfill` in node_peer.mjs: @roamhq/wrtc (libwebrtc).
// The real polyfill wraps node-datachannel, whose install script downloads its native binary
// from the Internet, which `npm ci --ignore-scripts` skips and test machines cannot reach;
// @roamhq/wrtc's linux-x64 binary ships inside the npm package (@roamhq/wrtc-linux-x64).
import wrtc from '@roamhq/wrtc'

export const { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate, RTCDataChannel } = wrtc
export default wrtc
