/**
 * Stable partition hash: FNV-1a 32-bit over the UTF-8 bytes of the device id. It is part
 * of the on-disk contract (a store's items are placed by it), so it must never change.
 */
export function fnv1a32 (s: string): number {
  let h = 0x811c9dc5
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
