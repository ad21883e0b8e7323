// The gateway admin page: live samples over server-sent events (/events, one a second,
// the last 5 minutes first), the devices table from /devices, the latest dead letters from
// /dlq, the latest commands from /commands. Plain browser JavaScript, no framework; everything the server sends is inserted as
// text, never as HTML.
import { ago, bars, fmt, fmtMs, lineChart, setText } from './chart.js'

const HISTORY = 300
const samples = []
const $ = (id) => document.getElementById(id)
const int = (v) => (v === null || v === undefined) ? '–' : Number(v).toLocaleString('en-US')

const charts = {
  rates: lineChart($('c-rates'), { series: [{ name: 'in', color: '#2563eb' }, { name: 'uploaded', color: '#1f8a4c' }, { name: 'rejected', color: '#b3261e' }] }),
  puback: lineChart($('c-puback'), { series: [{ name: 'p50', color: '#2563eb' }, { name: 'p99', color: '#b26a00' }], format: (v) => fmt(v) }),
  buffer: lineChart($('c-buffer'), { series: [{ name: 'buffered', color: '#7c3aed' }] }),
  age: lineChart($('c-age'), { series: [{ name: 'oldest', color: '#b26a00' }] }),
  clients: lineChart($('c-clients'), { series: [{ name: 'connected', color: '#0e7490' }] })
}

function setValue (id, value, text) {
  const e = $(id)
  if (!e) return
  e.dataset.value = value === null || value === undefined ? '' : String(value)
  const t = text ?? int(value)
  if (e.textContent !== t) e.textContent = t
}

function oldestOf (s) {
  let max = null
  for (const [, age] of s.partitions) if (age !== null && (max === null || age > max)) max = age
  return max
}

function col (f) { return samples.map(f) }

function renderCharts () {
  const ts = col((s) => s.t)
  charts.rates.update(ts, [col((s) => s.inPerS), col((s) => s.uploadedPerS), col((s) => s.rejectedPerS)])
  charts.puback.update(ts, [col((s) => s.p50Ms), col((s) => s.p99Ms)])
  charts.buffer.update(ts, [col((s) => s.buffered)])
  charts.age.update(ts, [col((s) => { const a = oldestOf(s); return a === null ? 0 : a / 1000 })])
  charts.clients.update(ts, [col((s) => s.clients)])
}

function stateClass (state) {
  return state === 'ok' ? 'state-ok' : state === 'idle' ? '' : state === 'retrying' || state === 'none' ? 'state-warn' : 'state-bad'
}

function render (s) {
  document.title = `${s.ready ? '' : '⚠ '}Gateway ${s.gateway}`
  setText('title', `Gateway ${s.gateway}`)
  setText('epoch', `epoch ${s.epoch}`)
  setText('updated', `updated ${new Date(s.t).toLocaleTimeString()}`)
  const pill = $('ready-pill')
  pill.textContent = s.ready ? 'ready' : 'not ready'
  pill.className = 'pill ' + (s.ready ? 'ok' : 'bad')
  const banner = $('banner')
  banner.hidden = s.banner.length === 0
  $('banner-reasons').replaceChildren(...s.banner.map((r) => { const li = document.createElement('li'); li.textContent = r; return li }))
  const notices = s.notices ?? []
  $('notice').hidden = notices.length === 0
  $('notice-reasons').replaceChildren(...notices.map((r) => { const li = document.createElement('li'); li.textContent = r; return li }))
  setValue('v-in', s.inPerS, fmt(s.inPerS))
  setValue('v-puback', s.p99Ms, `${fmt(s.p50Ms)} / ${fmt(s.p99Ms)}`)
  setValue('v-uploaded', s.uploadedPerS, fmt(s.uploadedPerS))
  setValue('v-buffered', s.buffered)
  const oldest = oldestOf(s)
  setValue('v-oldest', oldest, fmtMs(oldest))
  setValue('v-dlq', s.dlq.items)
  setValue('v-clients', s.clients)
  setValue('v-upstream', s.upstream.state, s.upstream.state)
  $('v-upstream').className = 'v ' + stateClass(s.upstream.state)
  setText('up-state', s.upstream.state)
  $('up-state').className = stateClass(s.upstream.state)
  setText('up-url', s.upstream.url || '(none configured)')
  setText('up-ok', s.upstream.lastOkAt ? `${new Date(s.upstream.lastOkAt).toLocaleTimeString()} (${ago(s.upstream.lastOkAt, s.t)})` : 'never')
  setText('up-error', s.upstream.lastError ?? '–')
  renderMqtt(s.upstream.mqtt)
  renderPartitions(s)
  renderDlq(s)
  renderUnstored(s.unstored)
  renderCommandFigures(s)
}

// ---- commands ------------------------------------------------------------------------
const COMMANDS_SHOWN = 50
let commandsOn = null

/** Counts by state, reports pending upstream and the command link, from the live sample. */
function renderCommandFigures (s) {
  const c = s.commands ?? null
  commandsOn = c !== null
  $('cmd-off').hidden = commandsOn
  $('cmd-figures').hidden = !commandsOn
  if (!c) { $('cmd-empty').hidden = true; return }
  setValue('cmd-held', c.held)
  const states = Object.entries(c.byState).sort(([a], [b]) => a < b ? -1 : 1)
  const st = $('cmd-states')
  st.dataset.value = JSON.stringify(Object.fromEntries(states))
  setText('cmd-states', states.length ? states.map(([k, v]) => `${k} ${int(v)}`).join(' · ') : 'none')
  setValue('cmd-reports', c.reportsPending)
  const link = $('cmd-link')
  link.dataset.state = c.link.state
  const what = c.link.state === 'idle' ? 'idle: no answer from the ingest yet (the first long poll is waiting)' : c.link.state
  setText('cmd-link', `${what}${c.link.url ? ` (${c.link.url})` : ''}${c.link.lastOkAt ? `, last ok ${ago(c.link.lastOkAt, s.t)}` : ''}`)
  link.className = c.link.state === 'ok' ? 'state-ok' : c.link.state === 'idle' ? '' : 'state-bad'
  setText('cmd-link-error', c.link.lastError ?? '–')
}

let cmdTimer = null
/** Appends one cell a [text, class?] pair to the row; returns the row. */
function cells (tr, list) {
  for (const [v, cls] of list) {
    const td = document.createElement('td')
    td.textContent = v
    if (cls) td.className = cls
    tr.appendChild(td)
  }
  return tr
}

async function loadCommands () {
  clearTimeout(cmdTimer)
  try {
    const r = await fetch(`/commands?limit=${COMMANDS_SHOWN}`)
    if (r.ok) {
      const d = await r.json()
      const tbody = $('commands').tBodies[0]
      $('cmd-empty').hidden = !d.enabled || d.commands.length > 0
      $('commands').hidden = d.commands.length === 0
      setText('cmd-sub', d.enabled && d.total > 0 ? `${int(d.total)} held or remembered${d.total > d.commands.length ? `, the ${d.commands.length} most recently changed shown` : ''}; newest first` : '')
      tbody.replaceChildren(...d.commands.map((x) => {
        const tr = document.createElement('tr')
        tr.dataset.command = x.id
        tr.dataset.device = x.device
        tr.dataset.state = x.state
        const left = x.expiresAt - d.t
        const open = !['completed', 'rejected', 'expired', 'recalled'].includes(x.state)
        return cells(tr, [[x.id, 'id'], [x.device], [x.name], [x.state, 'st'], [fmtMs(Math.max(0, d.t - x.createdAt)), 'num'], [open ? (left > 0 ? fmtMs(left) : 'due') : '–', 'num'], [int(x.unreported), 'num']])
      }))
    }
  } catch {}
  // nothing to list while commands are off: look again now and then
  cmdTimer = setTimeout(loadCommands, commandsOn === false ? 10_000 : 2000)
}

/** Publishes acknowledged (or refused) on topics that store nothing: hidden until there is one. */
function renderUnstored (u) {
  $('unstored-card').hidden = !u || u.publishes === 0
  if (!u || u.publishes === 0) return
  setText('unstored-sub', `${int(u.publishes)} since start${u.refused ? `, ${int(u.refused)} refused` : ''}`)
  setText('unstored-policy', u.policy === 'refuse'
    ? 'a device publishing here has its connection closed (--unmatched-topics refuse).'
    : 'they are acknowledged (PUBACK) and routed to subscribers only, so the publisher sees success (--unmatched-topics refuse closes the connection instead).')
  $('unstored').tBodies[0].replaceChildren(...u.topics.map(([topic, n, client]) => {
    const tr = document.createElement('tr')
    tr.dataset.topic = topic
    for (const [v, cls] of [[topic], [int(n), 'num'], [client]]) {
      const td = document.createElement('td')
      td.textContent = v
      if (cls) td.className = cls
      tr.appendChild(td)
    }
    return tr
  }))
}

/** The MQTT upstream's connection (docs/upstream-mqtt.md): the row is there only for an mqtt:// upstream. */
function renderMqtt (m) {
  $('up-mqtt-row').hidden = !m
  if (!m) return
  const results = m.ack === 'results'
  // the broker's PUBACKs say "no matching subscribers": batches are kept and sent again
  const up = m.connected && (!results || m.subscribed) && !m.noSubscribers
  const link = m.connected ? (results ? (m.subscribed ? 'connected, results subscribed' : 'connected, results not subscribed') : 'connected (broker ack)') : 'not connected'
  const warnings = [
    ...(m.noSubscribers ? ['no consumer subscribed'] : []),
    ...(m.unacked > 0 ? [`${fmt(m.unacked)} not acknowledged by the broker`] : [])
  ]
  setText('up-mqtt', [link, ...warnings, `${fmt(m.inFlight)} in flight`, `oldest unanswered ${fmtMs(m.oldestUnansweredMs)}`].join(' · '))
  const cell = $('up-mqtt')
  cell.className = 'wrap ' + (up ? 'state-ok' : 'state-bad')
  cell.setAttribute('data-connected', String(m.connected))
  cell.setAttribute('data-in-flight', String(m.inFlight))
  cell.setAttribute('data-no-subscribers', String(Boolean(m.noSubscribers)))
}

function renderPartitions (s) {
  const tbody = $('partitions').tBodies[0]
  const max = Math.max(1, ...s.partitions.map(([d]) => d))
  if (tbody.rows.length !== s.partitions.length) {
    tbody.replaceChildren(...s.partitions.map((_, p) => {
      const tr = document.createElement('tr')
      tr.innerHTML = '<td></td><td class="num"></td><td class="bar"><span class="bar-track"><span class="bar-fill"></span></span></td><td class="num"></td>'
      tr.cells[0].textContent = String(p)
      return tr
    }))
  }
  s.partitions.forEach(([depth, age], p) => {
    const tr = tbody.rows[p]
    tr.cells[1].textContent = int(depth)
    tr.querySelector('.bar-fill').style.width = `${(100 * depth / max).toFixed(1)}%`
    tr.cells[3].textContent = fmtMs(age)
  })
}

let dlqSeen = -1
let dlqFetched = 0
// The breakdown counts the stored records by kind (/dlq/summary), like the list under it:
// counters since the gateway started said "invalid payload 0" beside a list of payload dead
// letters kept from before a restart.
function renderDlqKinds (sum) {
  const k = sum.byKind ?? {}
  bars($('dlq-bars'), [
    { label: 'invalid payload', value: k.payload ?? 0, title: 'stored dead letters whose payload failed validation at intake', warn: true },
    { label: 'too old', value: k['too-old'] ?? 0, title: 'stored dead letters whose seq was below the dedup window', warn: true },
    { label: 'rejected upstream', value: k.item ?? 0, title: 'stored dead letters the ingest answered rejected', warn: true },
    ...(k.unreadable ? [{ label: 'unreadable', value: k.unreadable, title: 'stored records that cannot be decoded', warn: true }] : [])
  ])
  $('dlq-bars').dataset.complete = String(sum.complete)
  if (!sum.complete) setText('dlq-sub', `${int(sum.total)} stored (breakdown of the first ${int(sum.scanned)})`)
}

function renderDlq (s) {
  const d = s.dlq
  setText('dlq-sub', `${int(d.items)} stored`)
  if (d.items !== dlqSeen || s.t - dlqFetched > 10_000) {
    dlqSeen = d.items
    dlqFetched = s.t
    fetch('/dlq/summary').then((r) => r.ok ? r.json() : null).then((sum) => { if (sum) renderDlqKinds(sum) }).catch(() => {})
    fetch('/dlq?limit=15&order=newest').then((r) => r.ok ? r.json() : null).then((r) => {
      if (!r) return
      const tbody = $('dlq-table').tBodies[0]
      tbody.replaceChildren(...r.items.map((x) => {
        const tr = document.createElement('tr')
        for (const [v, cls] of [[String(x.id), 'num'], [new Date(x.atMs).toLocaleString()], [x.kind], [x.device ?? '?'], [x.reason, 'wrap']]) {
          const td = document.createElement('td')
          td.textContent = v
          if (cls) td.className = cls
          tr.appendChild(td)
        }
        return tr
      }))
    }).catch(() => {})
  }
}

function cmds () {
  const admin = location.origin
  $('dlq-cmds').textContent = [
    `gateway dlq list   --admin ${admin} --reason 'rejected'`,
    `gateway dlq show   --admin ${admin} ID`,
    `gateway dlq export --admin ${admin} --since 24h --out dead-letters.jsonl`,
    `gateway dlq replay --admin ${admin} --kind item --dry-run`,
    `gateway dlq purge  --admin ${admin} --device 'sensor-*' --until 7d`,
    '# on a stopped gateway: --data-dir DIR instead of --admin URL'
  ].join('\n')
}

// ---- devices table -------------------------------------------------------------------
let devTimer = null
let devQuery = ''
async function loadDevices () {
  clearTimeout(devTimer)
  try {
    const r = await fetch(`/devices?limit=50&q=${encodeURIComponent(devQuery)}`)
    if (r.ok) {
      const d = await r.json()
      setText('dev-sub', `${int(d.matched)} shown${d.matched > d.devices.length ? ` (first ${d.devices.length})` : ''} of ${int(d.tracked)} tracked${d.forgotten ? `, ${int(d.forgotten)} forgotten (table bound)` : ''}`)
      const now = Date.now()
      $('devices').tBodies[0].replaceChildren(...d.devices.map((x) => {
        const tr = document.createElement('tr')
        tr.dataset.device = x.device
        return cells(tr, [[x.device], [ago(x.lastSeen, now)], [x.lastSeq === null ? '–' : int(x.lastSeq), 'num'], [fmt(x.readingsPerS), 'num'], [int(x.readings), 'num'], [int(x.duplicates), 'num'], [int(x.deadLetters), 'num']])
      }))
    }
  } catch {}
  devTimer = setTimeout(loadDevices, 2000)
}
let debounce = null
$('dev-search').addEventListener('input', (e) => {
  devQuery = e.target.value.trim()
  clearTimeout(debounce)
  debounce = setTimeout(loadDevices, 150)
})

// ---- live samples --------------------------------------------------------------------
let pending = false
function schedule () {
  if (pending) return
  pending = true
  requestAnimationFrame(() => {
    pending = false
    const s = samples[samples.length - 1]
    if (!s) return
    render(s)
    renderCharts()
  })
}

function connect () {
  const es = new EventSource('/events')
  es.addEventListener('history', (e) => {
    samples.length = 0
    samples.push(...JSON.parse(e.data))
    schedule()
  })
  es.onmessage = (e) => {
    samples.push(JSON.parse(e.data))
    if (samples.length > HISTORY) samples.shift()
    schedule()
  }
  es.onerror = () => {
    setText('updated', 'connection lost: retrying…')
    $('ready-pill').className = 'pill warn'
  }
}

cmds()
connect()
loadDevices()
loadCommands()
