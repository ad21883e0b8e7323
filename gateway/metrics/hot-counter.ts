/**
 * A Prometheus counter with one label for hot paths: each label value gets a cell whose
 * `inc()` adds to a plain number, and the sums are added to the prom-client counter when it
 * is read (a scrape, /status, the live sampler). prom-client hashes the label set on every
 * `inc({ label })`; the intake counts every reading and the MQTT limits count one hit per
 * full queue per message, which made that hashing several percent of the CPU.
 */
import { Counter, type Registry } from 'prom-client'

export type HotCell = { inc: () => void }

export class HotCounter<L extends string> {
  readonly counter: Counter<L>
  private readonly cells = new Map<string, { n: number }>()

  constructor (opts: { name: string, help: string, label: L, registers: Registry[] }) {
    const cells = this.cells
    const label = opts.label
    this.counter = new Counter<L>({
      name: opts.name,
      help: opts.help,
      labelNames: [label],
      registers: opts.registers,
      collect () {
        for (const [value, c] of cells) {
          if (c.n > 0) { this.inc({ [label]: value } as Partial<Record<L, string>>, c.n); c.n = 0 }
        }
      }
    })
  }

  /** The cell of one label value (bind it once, call `inc()` per event). */
  cell (value: string): HotCell {
    let c = this.cells.get(value)
    if (!c) { c = { n: 0 }; this.cells.set(value, c) }
    const cell = c
    return { inc: () => { cell.n++ } }
  }
}
