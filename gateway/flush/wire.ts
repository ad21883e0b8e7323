/**
 * What a batch looks like on the wire: protocol version and body encoding, negotiated per
 * upstream URL (docs/protocol-v2.md).
 *
 * An ingest names what it takes in two headers on every answer (`ingest-protocols: 1, 2`,
 * `ingest-encodings: identity, gzip, deflate, br`); an ingest that predates v2 sends
 * neither. With `auto`, a URL starts on v1 (every ingest speaks it), moves to v2 after an
 * answer that lists 2, and falls back to v1 when `/v2/batches` is not there (404/405) or an
 * answer stops listing 2 (a downgraded ingest). A fallback costs one request: the items
 * stay in the store and are sent again as v1, and since v1 and v2 carry the same
 * (gateway, epoch, p, s) the ingest's dedup is the same either way: nothing is lost or
 * stored twice when an ingest is upgraded or downgraded mid-stream.
 *
 * Compression `auto` is brotli (quality 5) where the ingest lists br, else gzip, which
 * every ingest must accept; bench:cbor-size gives the measured bytes and CPU behind it.
 */
import { constants, brotliCompress, deflate, gzip } from 'node:zlib'
import { promisify } from 'node:util'
import {
  decodeResponse, decodeResponseV2, decodeTrusted, encodeBatchRaw, encodeBatchV2, ENCODINGS_HEADER, PROTOCOLS_HEADER,
  type BatchEnvelope, type BatchItem, type BatchResponse
} from '../../protocol/index.ts'

export type ProtocolChoice = 'auto' | 'v1' | 'v2'
export type CompressionChoice = 'auto' | 'none' | 'gzip' | 'deflate' | 'br'
export type Encoding = 'identity' | 'gzip' | 'deflate' | 'br'
export type Wire = { version: 1 | 2, encoding: Encoding }

const compressors: Record<Exclude<Encoding, 'identity'>, (b: Buffer) => Promise<Buffer>> = {
  gzip: promisify(gzip),
  deflate: promisify(deflate),
  br: (b) => new Promise((resolve, reject) => brotliCompress(b, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_SIZE_HINT]: b.length }
  }, (err, out) => err ? reject(err) : resolve(out)))
}

export function compress (body: Buffer, encoding: Encoding): Promise<Buffer> {
  return encoding === 'identity' ? Promise.resolve(body) : compressors[encoding](body)
}

type Heard = { v2: boolean, br: boolean }

export class WireFormat {
  /** what each URL's last answer advertised */
  private readonly heard = new Map<string, Heard>()

  constructor (private readonly protocol: ProtocolChoice, private readonly compression: CompressionChoice) {}

  choose (url: string): Wire {
    const h = this.heard.get(url)
    const version = this.protocol === 'v2' || (this.protocol === 'auto' && h?.v2 === true) ? 2 : 1
    const c = this.compression
    const encoding: Encoding = c === 'none' ? 'identity' : c === 'auto' ? (h?.br ? 'br' : 'gzip') : c
    return { version, encoding }
  }

  /** Reads the negotiation headers of any answer from `url`. Returns true when its v2 support changed. */
  observe (url: string, headers: Record<string, string | string[] | undefined>): boolean {
    const list = (name: string): string[] => String(headers[name] ?? '').split(',').map((x) => x.trim().toLowerCase()).filter(Boolean)
    const next: Heard = { v2: list(PROTOCOLS_HEADER).includes('2'), br: list(ENCODINGS_HEADER).includes('br') }
    const before = this.heard.get(url)
    this.heard.set(url, next)
    return (before?.v2 ?? false) !== next.v2
  }

  /** A v2 request refused as no such endpoint (HTTP 404/405): this URL has no v2 (an older ingest). True if that changes the choice. */
  refusedV2 (url: string, wire: Wire): boolean {
    if (wire.version !== 2 || this.protocol !== 'auto') return false
    this.heard.set(url, { v2: false, br: this.heard.get(url)?.br ?? false })
    return true
  }

  /**
   * The request body before compression. `raws` are the stored v1 item bytes; v2 needs them
   * decoded, and returns the decoded items so the ack mapper does not decode them again.
   */
  encode (wire: Wire, env: Omit<BatchEnvelope, 'v'>, raws: readonly Buffer[]): { body: Buffer, items?: BatchItem[] } {
    if (wire.version === 1) return { body: encodeBatchRaw(env, raws) }
    const items = raws.map((r) => decodeTrusted(r) as BatchItem)
    return { body: encodeBatchV2(env, items), items }
  }
}

/** The per-item answer to a batch sent as `wire` (an HTTP 200 body, an MQTT results message). */
export function decodeAnswer (wire: Wire, body: Uint8Array): BatchResponse {
  return wire.version === 2 ? decodeResponseV2(body) : decodeResponse(body)
}
