// The piece map: one cell per piece (or per run of pieces when there are too many to draw),
// filled by how much of it this tab holds. Bitfields are BitTorrent's: piece 0 is the high bit
// of byte 0.

const MIN_CELL = 4
const MAX_CELL = 14
const MAX_HEIGHT = 64

/** Whether piece `i` is set in `bits`. */
export function hasPiece (bits, i) {
  return (bits[i >> 3] & (0x80 >> (i & 7))) !== 0
}

/** For `cells` cells over `total` pieces: the fraction of each cell's pieces held. */
export function cellFractions (bits, total, cells) {
  const out = new Float32Array(cells)
  for (let c = 0; c < cells; c++) {
    const from = Math.floor(c * total / cells)
    const to = Math.max(from + 1, Math.floor((c + 1) * total / cells))
    let have = 0
    for (let i = from; i < to; i++) if (hasPiece(bits, i)) have++
    out[c] = have / (to - from)
  }
  return out
}

/** Columns, rows and cell size (CSS pixels) for `total` pieces in `width` pixels. */
export function layout (total, width) {
  width = Math.max(MIN_CELL, Math.floor(width))
  for (let size = MAX_CELL; size >= MIN_CELL; size--) {
    const cols = Math.floor(width / size)
    const rows = Math.ceil(total / cols)
    if (rows * size <= MAX_HEIGHT) return { cols, rows, size, cells: total }
  }
  const cols = Math.floor(width / MIN_CELL)
  const rows = Math.floor(MAX_HEIGHT / MIN_CELL)
  return { cols, rows, size: MIN_CELL, cells: Math.min(total, cols * rows) }
}

/** Draws `bits` (`total` pieces) on `canvas`, sized to its CSS width. */
export function drawPieceMap (canvas, bits, total) {
  const style = getComputedStyle(canvas)
  const have = style.getPropertyValue('--piece-have').trim() || '#2f7de1'
  const missing = style.getPropertyValue('--piece-missing').trim() || '#8884'
  const width = canvas.clientWidth || canvas.parentElement?.clientWidth || 300
  const dpr = window.devicePixelRatio || 1
  if (!total) {
    canvas.style.height = `${MIN_CELL * 2}px`
    canvas.width = Math.round(width * dpr)
    canvas.height = Math.round(MIN_CELL * 2 * dpr)
    const ctx = canvas.getContext('2d')
    ctx.fillStyle = missing
    ctx.fillRect(0, 0, canvas.width, canvas.height)
    return
  }
  const { cols, rows, size, cells } = layout(total, width)
  const height = Math.ceil(cells / cols) * size
  canvas.style.height = `${height}px`
  canvas.width = Math.round(width * dpr)
  canvas.height = Math.round(height * dpr)
  const ctx = canvas.getContext('2d')
  ctx.scale(dpr, dpr)
  const gap = size >= 6 ? 1 : 0
  const fractions = cellFractions(bits, total, cells)
  for (let c = 0; c < cells; c++) {
    const x = (c % cols) * size
    const y = Math.floor(c / cols) * size
    ctx.globalAlpha = 1
    ctx.fillStyle = missing
    ctx.fillRect(x, y, size - gap, size - gap)
    if (fractions[c] > 0) {
      ctx.globalAlpha = fractions[c] === 1 ? 1 : 0.35 + 0.5 * fractions[c]
      ctx.fillStyle = have
      ctx.fillRect(x, y, size - gap, size - gap)
    }
  }
  ctx.globalAlpha = 1
  canvas.dataset.rows = String(rows)
}
