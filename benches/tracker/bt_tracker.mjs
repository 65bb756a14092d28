// bittorrent-tracker's WebSocket server behind TLS, for the benchmark's wss runs.
// Usage: node bt_tracker.mjs PORT CERT.pem KEY.pem
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
// The package exports only an `import` condition, which require.resolve cannot see: load the
// file itself from tests/web's node_modules (installed by scripts/install-test-deps.sh).
const serverJs = path.join(here, '../../tests/web/node_modules/bittorrent-tracker/server.js')
const { default: Server } = await import(pathToFileURL(serverJs).href)
const [port, cert, key] = process.argv.slice(2)
const httpsServer = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
const tracker = new Server({ http: false, udp: false, ws: { noServer: true }, stats: false })
httpsServer.on('upgrade', (req, socket, head) => {
  tracker.ws.handleUpgrade(req, socket, head, ws => tracker.ws.emit('connection', ws, req))
})
httpsServer.listen(Number(port), '127.0.0.1', () => console.log(`bittorrent-tracker wss://127.0.0.1:${port}`))
