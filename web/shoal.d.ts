// Types for web/shoal.js, Shoal's browser API.

export interface ClientOptions {
  /** WebSocket trackers (ws:// or wss://) every torrent announces to, besides its own. */
  trackers?: string[]
  /** ICE servers' URLs, e.g. "stun:stun.example.org:3478". None by default. */
  iceServers?: string[]
  /** Bytes of pieces one torrent may hold (default 512 MiB); larger torrents stream through it. */
  maxMemory?: number
  /** Offers sent with each announce (default 5, at most 10). */
  offersPerAnnounce?: number
  /** Connections per torrent (default 40). */
  maxConnections?: number
  /**
   * RTCPeerConnections the client holds at once over all its torrents and its ready offers
   * (default 200, at most 400). Chromium refuses a page's 501st, closed ones included until
   * they are garbage-collected; past this bound torrents get fewer peers instead.
   */
  maxPeerConnections?: number
  /**
   * Offers the client keeps gathered while idle (default: offersPerAnnounce; 0 turns it off),
   * so an added torrent announces without waiting for ICE gathering. Each is an open
   * RTCPeerConnection, renewed every 25 s.
   */
  readyOffers?: number
  /** Register the Service Worker at start (default true). */
  serviceWorker?: boolean
}

export interface SeedOptions {
  name?: string
  /** A power of two, at least 16 KiB; chosen from the size by default. */
  pieceLength?: number
  trackers?: string[]
}

export interface Status {
  infoHash: string
  name: string | null
  /** The metadata is known and storage is open. */
  ready: boolean
  done: boolean
  /** 0..1, verified pieces over all pieces. */
  progress: number
  length: number | null
  downloaded: number
  uploaded: number
  /** Bytes per second. */
  downloadRate: number
  uploadRate: number
  peers: number
  seeds: number
  /** Connections being set up (offers out, ICE under way). */
  connecting: number
  webSeeds: number
  webSeedDownloaded: number
  piecesHave: number
  piecesTotal: number
  readers: number
  memoryResident: number
  memoryPeak: number
  memoryBudget: number | null
  error: string | null
}

type Listener = (...args: any[]) => void

declare class Emitter {
  on (name: string, fn: Listener): this
  off (name: string, fn: Listener): this
  once (name: string, fn: Listener): this
}

export interface SeedFile { name: string, data: ArrayBuffer | ArrayBufferView }

export declare class Client extends Emitter {
  readonly peerId: string
  readonly torrents: Torrent[]
  /**
   * A magnet link, an info hash, or a .torrent (bytes, Blob or File). Rejects with a clear
   * message on bad input. A magnet's http(s) `xs` .torrent is fetched first, for its metadata.
   */
  add (source: string | Uint8Array | ArrayBuffer | Blob): Promise<Torrent>
  /** Makes a torrent of local files in the page and seeds it. */
  seed (files: Iterable<File | SeedFile>, options?: SeedOptions): Promise<Torrent>
  get (infoHash: string): Torrent | null
  destroy (): void
}

/** Events: 'metadata', 'wire' (a peer connected), 'progress' (Status, every 500 ms), 'done', 'close'. */
export declare class Torrent extends Emitter {
  readonly client: Client
  readonly infoHash: string
  readonly magnet: string
  readonly name: string | null
  /** Empty until the metadata is known (see ready()). */
  readonly files: TorrentFile[]
  torrentFile (): Uint8Array | null
  status (): Status
  /** Verified pieces as a bitfield (piece 0 is the high bit of byte 0). */
  pieces (): Uint8Array
  ready (): Promise<void>
  destroy (): void
}

export interface Reader {
  /** Bytes start..end (end exclusive, at most 16 MiB), once verified. */
  read (start: number, end: number): Promise<Uint8Array>
  /** Some of bytes start..end, as soon as the piece under start is verified: those verified
   * in a row from start (at least one byte). For streaming. */
  readSome (start: number, end: number): Promise<Uint8Array>
  close (): void
}

export declare class TorrentFile {
  readonly torrent: Torrent
  readonly index: number
  readonly name: string
  readonly path: string
  readonly length: number
  readonly offset: number
  /** A MIME type from the file name. */
  readonly type: string
  readonly streamURL: string
  read (start?: number, end?: number): Promise<Uint8Array>
  blob (): Promise<Blob>
  createReader (): Reader
  /** Plays the file in a media element, streaming through the Service Worker. */
  streamTo<E extends HTMLMediaElement> (element: E): Promise<E>
}

export declare function createClient (options?: ClientOptions): Promise<Client>
export declare function registerServiceWorker (): Promise<void>
export declare function parseRange (header: string, length: number): [number, number] | null | 'unsatisfiable'
export declare function mimeType (name: string): string
export declare function canPlay (file: TorrentFile): boolean

export interface PlayOptions {
  /** What to play: a magnet link, an info hash, or a .torrent (bytes, Blob or File). */
  source: string | Uint8Array | ArrayBuffer | Blob
  /** Which file: its index or name; by default the first the browser can play. */
  file?: number | string
  /** The same file over plain HTTP, played where Shoal cannot stream. */
  fallback?: string
  /** Options for the client `play` makes. */
  client?: ClientOptions
  /** Milliseconds to wait for the metadata from peers before playing `fallback` (default 8000). */
  metadataTimeout?: number
}

export type Played =
  | { via: 'shoal', torrent: Torrent, file: TorrentFile }
  | { via: 'http', reason: string }

/**
 * Plays a file of a torrent in a media element through Shoal, or from `fallback` over HTTP
 * where Shoal cannot (no WebRTC or Service Worker here, or no metadata in time).
 */
export declare function play<E extends HTMLMediaElement> (element: E, options: PlayOptions): Promise<Played>
/** Why Shoal cannot stream in this page (no WebRTC, no Service Worker), or null. */
export declare function unavailableReason (): string | null
