// Hand-drawn SVG time-series charts for the gateway and ingest pages: no library, no
// network. A chart is redrawn at most once a second with a few hundred points per line,
// which costs the browser well under a millisecond; nothing runs between updates.
// Plain browser JavaScript (ES module), served as /assets/chart.js.

const NS = 'http://www.w3.org/2000/svg'

function el (name, attrs, parent) {
  const e = document.createElementNS(NS, name)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (parent) parent.appendChild(e)
  return e
}

/** A compact number: 1234 -> 1.23k, 0.00123 -> 0.0012. */
export function fmt (v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–'
  const a = Math.abs(v)
  if (a >= 1e9) return (v / 1e9).toPrecision(digits) + 'G'
  if (a >= 1e6) return (v / 1e6).toPrecision(digits) + 'M'
  if (a >= 1e4) return (v / 1e3).toPrecision(digits) + 'k'
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v))
  return Number(v.toPrecision(digits)).toString()
}

/** A duration in ms as 850 ms, 12.3 s, 4 min, 2.1 h. */
export function fmtMs (ms) {
  if (ms === null || ms === undefined) return '–'
  if (ms < 1000) return `${fmt(ms)} ms`
  if (ms < 120_000) return `${fmt(ms / 1000)} s`
  if (ms < 7_200_000) return `${fmt(ms / 60_000)} min`
  return `${fmt(ms / 3_600_000)} h`
}

/** A "nice" axis maximum at or above v. */
function niceMax (v) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

/**
 * A line chart in `container`. `series`: [{ name, color, unit }]. update(ts, columns):
 * ts = sample times (ms), columns[i][j] = value of series i at ts[j] (null = gap).
 */
export function lineChart (container, { series, windowMs = 300_000, format = fmt, height = 150 }) {
  container.classList.add('chart')
  const legend = document.createElement('div')
  legend.className = 'legend'
  const values = series.map((s) => {
    const item = document.createElement('span')
    item.className = 'legend-item'
    const sw = document.createElement('i')
    sw.className = 'swatch'
    sw.style.background = s.color
    const name = document.createElement('span')
    name.textContent = s.name + ' '
    const val = document.createElement('b')
    val.textContent = '–'
    item.append(sw, name, val)
    legend.appendChild(item)
    return val
  })
  container.appendChild(legend)
  const svg = el('svg', { height, role: 'img', 'aria-label': series.map((s) => s.name).join(', ') }, container)
  svg.classList.add('plot')
  const grid = el('g', { class: 'grid' }, svg)
  const paths = series.map((s, i) => el('path', { class: 'line', stroke: s.color, fill: 'none', 'data-series': i }, svg))
  let last = null

  function draw (ts, columns) {
    last = { ts, columns }
    const w = Math.max(200, Math.floor(container.clientWidth || 400))
    svg.setAttribute('width', w)
    svg.setAttribute('viewBox', `0 0 ${w} ${height}`)
    const padL = 46
    const padR = 8
    const padT = 6
    const padB = 18
    const now = ts.length ? ts[ts.length - 1] : Date.now()
    let max = 0
    for (const col of columns) for (const v of col) if (v !== null && v > max) max = v
    max = niceMax(max)
    const x = (t) => padL + (w - padL - padR) * (1 - (now - t) / windowMs)
    const y = (v) => padT + (height - padT - padB) * (1 - v / max)
    grid.replaceChildren()
    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f)
      el('line', { x1: padL, x2: w - padR, y1: yy, y2: yy }, grid)
      el('text', { x: padL - 4, y: yy + 4, 'text-anchor': 'end' }, grid).textContent = format(max * f)
    }
    for (const [f, label] of [[0, `-${Math.round(windowMs / 60000)} min`], [1, 'now']]) {
      el('text', { x: padL + (w - padL - padR) * f, y: height - 4, 'text-anchor': f === 0 ? 'start' : 'end' }, grid).textContent = label
    }
    columns.forEach((col, i) => {
      let d = ''
      let pen = false
      for (let j = 0; j < ts.length; j++) {
        const v = col[j]
        if (v === null || v === undefined || now - ts[j] > windowMs) { pen = false; continue }
        d += `${pen ? 'L' : 'M'}${x(ts[j]).toFixed(1)} ${y(v).toFixed(1)}`
        pen = true
      }
      paths[i].setAttribute('d', d)
      const lastV = col.length ? col[col.length - 1] : null
      values[i].textContent = format(lastV)
    })
  }
  window.addEventListener('resize', () => { if (last) draw(last.ts, last.columns) })
  return { update: draw }
}

/** Horizontal bars: rows [{ label, value, title }] scaled to the largest. */
export function bars (container, rows, format = fmt) {
  const max = Math.max(1, ...rows.map((r) => r.value))
  container.replaceChildren()
  for (const r of rows) {
    const row = document.createElement('div')
    row.className = 'bar-row'
    if (r.title) row.title = r.title
    const label = document.createElement('span')
    label.className = 'bar-label'
    label.textContent = r.label
    const track = document.createElement('span')
    track.className = 'bar-track'
    const fill = document.createElement('span')
    fill.className = 'bar-fill' + (r.warn ? ' warn' : '')
    fill.style.width = `${(100 * r.value / max).toFixed(1)}%`
    track.appendChild(fill)
    const val = document.createElement('span')
    val.className = 'bar-value'
    val.textContent = r.text ?? format(r.value)
    row.append(label, track, val)
    container.appendChild(row)
  }
}

/** The q-quantile (ms) of Prometheus-style cumulative bucket counts [[le seconds, count]...]. */
export function quantileMs (q, buckets) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0
  if (!(total > 0)) return null
  const rank = q * total
  for (let i = 0; i < buckets.length; i++) {
    const [le, c] = buckets[i]
    if (c >= rank) {
      const lo = i === 0 ? 0 : buckets[i - 1][0]
      if (!Number.isFinite(le)) return lo * 1000
      const below = i === 0 ? 0 : buckets[i - 1][1]
      const frac = c - below > 0 ? (rank - below) / (c - below) : 1
      return (lo + (le - lo) * frac) * 1000
    }
  }
  return null
}

/** "3 s ago" style age of a ms timestamp. */
export function ago (t, now = Date.now()) {
  if (!t) return 'never'
  const s = Math.max(0, (now - t) / 1000)
  if (s < 1) return 'just now'
  if (s < 90) return `${Math.round(s)} s ago`
  if (s < 5400) return `${Math.round(s / 60)} min ago`
  if (s < 172800) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

/** Sets an element's text by id (no-op when missing). */
export function setText (id, text) {
  const e = document.getElementById(id)
  if (e && e.textContent !== String(text)) e.textContent = String(text)
}
