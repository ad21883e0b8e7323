/**
 * Stable partition hash: FNV-1a 32-bit over the UTF-8 bytes of the device id. It is part
 * of the on-disk contract (a store's items are placed by it), so it must never change.
 */
export function fnv1a32 (s: string): number {
  let h = 0x811c9dc5
  // ASCII (every valid device id) hashes from the string itself: no allocation per reading
  let ascii = true
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0x7f) { ascii = false; break }
    h ^= c
    h = Math.imul(h, 0x01000193)
  }
  if (ascii) return h >>> 0
  h = 0x811c9dc5
  const bytes = Buffer.from(s, 'utf8')
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export function partitionOf (deviceId: string, partitions: number): number {
  return fnv1a32(deviceId) % partitions
}
