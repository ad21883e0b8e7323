/**
 * Store recovery at startup: identity (epoch, partitions), per-partition counters and heads,
 * the dead-letter counter and the evicted ranges not yet reported. Reads O(partitions) keys;
 * an unreadable counter is rebuilt by counting its partition with a bounded iterator.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { ConfigError, decodeUntrusted, encodeCbor, StoreError, type EvictedRange } from '../../protocol/index.ts'
import { dlqRecordBytes } from './dead-letters.ts'
import { K, parseEvictedKey, seqOfItemKey } from './keys.ts'
import type { StoreConfig } from './config.ts'
import type { Db } from './db.ts'
import { itemCost, Partition } from './partition.ts'

export type Recovered = { epoch: string, parts: Partition[], dlq: [nextId: number, count: number, bytes: number], evicted: EvictedRange[], quarantineNext: number }

/** A partition counter [nextSeq, items, bytes], or null when it cannot be read. */
export function readCounter (buf: Uint8Array | undefined): [number, number, number] | null {
  if (buf === undefined) return null
  try {
    const c = decodeUntrusted(buf, { maxDepth: 2 })
    if (Array.isArray(c) && c.length === 3 && c.every((x) => Number.isSafeInteger(x) && x >= 0)) return c as [number, number, number]
  } catch {}
  return null
}

export async function recover (config: StoreConfig, db: Db, log: Logger): Promise<Recovered> {
  const epochBuf = await db.get(K.epoch)
  let epoch: string
  let partitions: number
  if (epochBuf === undefined) {
    epoch = randomBytes(12).toString('base64url')
    partitions = config.partitions
    await db.batch().put(K.epoch, Buffer.from(epoch)).put(K.partitions, Buffer.from(String(partitions))).put(K.version, Buffer.from('1')).write({ sync: true })
    log.info({ epoch, partitions }, 'store created')
  } else {
    epoch = epochBuf.toString()
    const pBuf = await db.get(K.partitions)
    partitions = Number(pBuf?.toString())
    if (!Number.isInteger(partitions) || partitions < 1 || !/^[A-Za-z0-9_-]{8,64}$/.test(epoch)) {
      throw new StoreError(`store at ${config.dataDir} has unreadable identity (epoch/partitions); refusing to guess. Move it aside to start a new store`, { retryable: false })
    }
    if (partitions !== config.partitions) {
      throw new ConfigError('partitions', `the store at ${config.dataDir} was created with ${partitions} partitions, started with ${config.partitions}; partitions are fixed when a store is created (use --partitions ${partitions})`)
    }
  }
  const parts: Partition[] = []
  for (let p = 0; p < partitions; p++) {
    const range = { gte: K.itemPrefix(p), lt: K.itemEnd(p) }
    const first = await db.keys({ ...range, limit: 1 }).all()
    const last = await db.keys({ ...range, limit: 1, reverse: true }).all()
    const lastSeq = last.length ? seqOfItemKey(last[0]!) : -1
    let counter: { next: number, items: number, bytes: number } | null = null
    const buf = await db.get(K.counter(p))
    if (buf !== undefined) {
      const c = readCounter(buf)
      if (c) counter = { next: Math.max(c[0], lastSeq + 1), items: c[1], bytes: c[2] }
      else log.warn({ partition: p }, 'partition counter unreadable; rebuilding it from the items')
    }
    if (!counter) {
      // no counter (new store) or an unreadable one: count the partition with a bounded iterator
      let items = 0
      let bytes = 0
      for await (const [, v] of db.iterator(range)) { items++; bytes += itemCost(v.length) }
      counter = { next: lastSeq + 1, items, bytes }
      if (buf !== undefined) await db.put(K.counter(p), encodeCbor([counter.next, items, bytes]), { sync: true })
    }
    parts.push(new Partition(p, { ...counter, head: first.length ? seqOfItemKey(first[0]!) : counter.next }))
  }
  // m!dlq: [nextId, count, bytes]; [nextId, count] before the dead-letter quota (recounted)
  let dlq: [number, number, number] = [0, 0, 0]
  const dlqBuf = await db.get(K.dlqMeta)
  let dlqOk = dlqBuf === undefined
  if (dlqBuf) {
    try {
      const d = decodeUntrusted(dlqBuf, { maxDepth: 2 })
      if (Array.isArray(d) && d.length === 3 && d.every((x) => Number.isSafeInteger(x) && x >= 0)) {
        dlq = d as [number, number, number]; dlqOk = true
      } else if (Array.isArray(d) && d.length === 2 && Number.isSafeInteger(d[0]) && d[0] >= 0) dlq[0] = d[0] as number
    } catch {}
  }
  if (!dlqOk) {
    log.warn('dead-letter counter unreadable or without bytes; recounting')
    dlq[1] = 0
    for await (const v of db.values(K.all('dlq'))) { dlq[1]++; dlq[2] += dlqRecordBytes(v) }
  }
  const lastDlq = await db.keys({ ...K.all('dlq'), limit: 1, reverse: true }).all()
  if (lastDlq.length) dlq[0] = Math.max(dlq[0], K.idOf(lastDlq[0]!) + 1)
  const evicted: EvictedRange[] = []
  for await (const [k, v] of db.iterator(K.all('evicted'))) {
    const { p, from } = parseEvictedKey(k)
    try { evicted.push([p, from, decodeUntrusted(v, { maxDepth: 1 }) as number]) } catch { log.warn({ key: k }, 'evicted range unreadable; skipped') }
  }
  const lastQ = await db.keys({ ...K.all('quarantine'), limit: 1, reverse: true }).all()
  return { epoch, parts, dlq, evicted, quarantineNext: lastQ.length ? K.idOf(lastQ[0]!) + 1 : 0 }
}
