/**
 * How much of a results message the MQTT upstream reads, and when it stops
 * (docs/upstream-mqtt.md). A results message is untrusted: any client with publish rights on
 * the results topic may send one, of any size the broker takes. Decoding one whole before
 * knowing whether it answers anything let a single 20 MB message (five million entries)
 * stall every device's PUBACK for seconds and take hundreds of MB.
 *
 * So, in this order, each step cheap and bounded:
 *   1. the batch id from the first bytes (protocol peekResults): a batch not waited for is
 *      ignored as late without decoding the rest;
 *   2. the size against what an answer to that batch can take (resultsBoundBytes of its
 *      item count): larger is refused;
 *   3. the entries the results array declares (its head; for v2 the run counts, walking
 *      integers only) against the items sent: more is refused;
 *   4. only then the whole message is decoded (protocol decodeResultsHeader, then the
 *      answer decoders of wire.ts).
 * A message whose batch id does not come before its results is decoded whole only when it
 * is no larger than the largest answer a waiting batch could get.
 *
 * The broker is told the same bound for the largest batch (MQTT 5 CONNECT maximum packet
 * size, `maxResultsPacketBytes`): [MQTT-3.1.2-24] it must not send a larger packet, it drops
 * it instead, and MQTT.js closes a connection that receives one anyway.
 */
import { peekResults, v2RunItems } from '../../protocol/index.ts'

/** The envelope: v, batch id, a whole-batch status with its error and message (1000 characters), user properties. */
const ENVELOPE_BYTES = 8 * 1024
/** One item's answer: `[p, s, code, reason]` with up to 1 KiB of reason (v2: its run and its `why` entry). */
const ITEM_BYTES = 1024 + 64
/** The PUBLISH around the payload: fixed header, topic, properties (correlation data, user properties). */
const PACKET_OVERHEAD_BYTES = 16 * 1024

/** The largest results message that can answer a batch of `items` items. */
export function resultsBoundBytes (items: number): number {
  return ENVELOPE_BYTES + items * ITEM_BYTES
}

/** The MQTT 5 maximum packet size the gateway announces: the answer to the largest batch it sends. */
export function maxResultsPacketBytes (batchMaxItems: number): number {
  return resultsBoundBytes(batchMaxItems) + PACKET_OVERHEAD_BYTES
}

export type ResultsRefusal = 'late' | 'unreadable' | 'oversized' | 'too_many'

/** What to do with a results message: ignore it (why, in words), or decode it for `batch`. */
export type ResultsVerdict = { refuse: ResultsRefusal, batch: string | null, why: string } | { refuse: null, batch: string | null }

/**
 * Steps 1-3 of the header. `itemsOf(batch)` is the item count of a batch waited for (else
 * undefined); `largestItems` the largest item count waited for (0: none). A verdict with
 * batch null means: decode it whole to find out (small enough for that).
 */
export function screenResults (payload: Uint8Array, itemsOf: (batch: string) => number | undefined, largestItems: number): ResultsVerdict {
  const peek = peekResults(payload)
  if (peek === null) {
    const bound = resultsBoundBytes(largestItems)
    if (payload.length > bound) return { refuse: 'oversized', batch: null, why: `${payload.length} bytes without a batch id before its results, above the ${bound} bytes any answer waited for can take` }
    return { refuse: null, batch: null }
  }
  const items = itemsOf(peek.batch)
  if (items === undefined) return { refuse: 'late', batch: peek.batch, why: 'not waited for' }
  const bound = resultsBoundBytes(items)
  if (payload.length > bound) return { refuse: 'oversized', batch: peek.batch, why: `${payload.length} bytes for a batch of ${items} items (at most ${bound})` }
  if (peek.entries !== undefined) {
    const tooMany = (what: string): ResultsVerdict => ({ refuse: 'too_many', batch: peek.batch, why: `${what} for a batch of ${items} items` })
    if (peek.v !== 2) {
      if (peek.entries > items) return tooMany(`${peek.entries} results`)
    } else {
      // v2: runs of four integers [p, s, count, code], each answering `count` items
      if (peek.entries > 4 * items) return tooMany(`${peek.entries} run integers`)
      const answered = v2RunItems(payload, peek.entriesAt, peek.entries, items)
      if (answered === null) return { refuse: 'unreadable', batch: peek.batch, why: 'a v2 run that is not four unsigned integers' }
      if (answered > items) return tooMany(`runs answering more than ${items} items`)
    }
  }
  return { refuse: null, batch: peek.batch }
}
