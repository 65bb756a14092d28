// Numbers for people: sizes, rates, counts.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** 1536 → "1.5 KiB". */
export function formatBytes (n) {
  if (!Number.isFinite(n) || n < 0) return '–'
  let i = 0
  while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++ }
  const digits = i === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2
  return `${n.toFixed(digits)} ${UNITS[i]}`
}

/** Bytes per second → "1.2 MiB/s". */
export function formatRate (n) {
  return `${formatBytes(n || 0)}/s`
}

/** 0.4567 → "45.7 %". */
export function formatPercent (fraction) {
  const p = Math.max(0, Math.min(1, fraction || 0)) * 100
  return `${p === 100 || p === 0 ? p.toFixed(0) : p.toFixed(1)} %`
}

/** plural(1, 'peer') → "1 peer", plural(3, 'peer') → "3 peers". */
export function plural (n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`
}
