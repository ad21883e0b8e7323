/**
 * Publishes receipts (receipts.ts computes them) to `devices/{id}/receipts`. Best effort
 * and bounded: a subscriber that does not read can stall Aedes' delivery until its drain
 * timeout, so publishes are never awaited by the flush and at most MAX_PENDING wait in the
 * broker; beyond that receipts are dropped and counted.
 */
import type { Logger } from 'pino'
import { encodeReceipt, encodeReceiptJson, receiptsTopic } from '../../protocol/index.ts'
import type { Metrics } from '../metrics/index.ts'
import { computeReceipts, type SettledItem } from './receipts.ts'

export type Publisher = (topic: string, payload: Buffer) => Promise<void>
/** The receipt encoding a device gets (JSON to a device that publishes JSON); CBOR when absent. */
export type ReceiptFormat = (device: string) => 'cbor' | 'json'

/** Receipt publishes waiting in the broker; beyond this, receipts are dropped (and counted). */
const MAX_PENDING = 10_000

export class ReceiptSender {
  private pending = 0

  constructor (private readonly publish: Publisher, private readonly metrics: Metrics, private readonly log: Logger, private readonly format?: ReceiptFormat) {}

  send (items: SettledItem[]): void {
    for (const [device, receipts] of computeReceipts(items)) {
      for (const r of receipts) {
        if (this.pending >= MAX_PENDING) {
          this.metrics.receiptsDropped.inc()
          continue
        }
        this.pending++
        this.publish(receiptsTopic(device), this.format?.(device) === 'json' ? encodeReceiptJson(r) : encodeReceipt(r)).then(() => {
          this.metrics.receipts.inc()
        }, (err: Error) => {
          this.metrics.receiptsDropped.inc()
          this.log.debug({ device, err }, 'receipt not published')
        }).finally(() => { this.pending-- })
      }
    }
  }
}
