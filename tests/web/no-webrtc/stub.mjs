// Stand-ins for the WebRTC classes; constructing one is a test bug.
class Unavailable {
  constructor () { throw new Error('WebRTC is not available in this test (numwant must be 0)') }
}
export const RTCPeerConnection = Unavailable
export const RTCSessionDescription = Unavailable
export const RTCIceCandidate = Unavailable
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
