// The ingest page: polls /ui/live once a second; rates are differences of the sink's
// counts between two polls, batch p50/p99 come from the latency histogram's buckets added
// in between. Everything the server sends is inserted as text, never as HTML.
// With read tokens configured /ui/live answers 401 without one: the page then stops polling
// and asks for it, keeps it in sessionStorage (this tab only, never in a URL) and sends it
// as `authorization: Bearer`. A fleet-bound token sees only its fleet (no latency histogram,
// no command counts by state: the panel then counts the commands it lists).
import { ago, bars, fmt, fmtMs, lineChart, quantileMs, setText } from './chart.js'

const HISTORY = 300
const KINDS = ['stored', 'duplicates', 'rejected', 'evicted', 'conflicts']
const $ = (id) => document.getElementById(id)
const int = (v) => Number(v).toLocaleString('en-US')
const samples = []
let prev = null
let query = ''
const TOKEN_KEY = 'ingest-read-token'

const charts = {
  items: lineChart($('c-items'), { series: [{ name: 'stored', color: '#1f8a4c' }, { name: 'duplicate', color: '#2563eb' }, { name: 'rejected', color: '#b3261e' }, { name: 'evicted', color: '#b26a00' }, { name: 'conflict', color: '#7c3aed' }] }),
  latency: lineChart($('c-latency'), { series: [{ name: 'p50', color: '#2563eb' }, { name: 'p99', color: '#b26a00' }] })
}

function rate (cur, old, dt) { return old === undefined ? 0 : Math.max(0, (cur - old) / dt) }

function setValue (id, value, text) {
  const e = $(id)
  e.dataset.value = String(value)
  e.textContent = text
}

function cell (tr, text, cls) {
  const td = document.createElement('td')
  td.textContent = text
  if (cls) td.className = cls
  tr.appendChild(td)
}

function render (d) {
  const dt = prev ? Math.max((d.t - prev.t) / 1000, 0.001) : 1
  const total = {}
  for (const k of KINDS) total[k] = prev ? rate(d.stats[k], prev.stats[k], dt) : 0
  const buckets = d.batchSeconds.map(([le, c], i) => [le === null ? Infinity : le, c - (prev?.batchSeconds[i]?.[1] ?? c)])
  const p50 = prev ? quantileMs(0.5, buckets) : null
  const p99 = prev ? quantileMs(0.99, buckets) : null
  samples.push({ t: d.t, ...total, p50, p99 })
  if (samples.length > HISTORY) samples.shift()
  const ts = samples.map((s) => s.t)
  charts.items.update(ts, KINDS.map((k) => samples.map((s) => s[k])))
  charts.latency.update(ts, [samples.map((s) => s.p50), samples.map((s) => s.p99)])
  setValue('v-stored', total.stored, fmt(total.stored))
  setValue('v-duplicates', total.duplicates, fmt(total.duplicates))
  setValue('v-rejected', total.rejected, fmt(total.rejected))
  setValue('v-evicted', total.evicted, fmt(total.evicted))
  setValue('v-conflicts', d.stats.conflicts, int(d.stats.conflicts))
  setValue('v-latency', p99 ?? '', `${fmt(p50)} / ${fmt(p99)}`)
  const gws = Object.keys(d.stats.gateways).sort()
  setValue('v-gateways', gws.length, String(gws.length))
  setText('totals', `stored ${int(d.stats.stored)} · duplicates ${int(d.stats.duplicates)} · rejected ${int(d.stats.rejected)} · evicted ${int(d.stats.evicted)} · conflicts ${int(d.stats.conflicts)}`)
  setText('updated', `updated ${new Date(d.t).toLocaleTimeString()}`)
  $('live-pill').textContent = 'live'
  $('live-pill').className = 'pill ok'
  $('gateways').tBodies[0].replaceChildren(...gws.map((g) => {
    const cur = d.stats.gateways[g]
    const old = prev?.stats.gateways[g]
    const tr = document.createElement('tr')
    tr.dataset.gateway = g
    cell(tr, g)
    for (const k of KINDS) cell(tr, fmt(prev ? rate(cur[k], old?.[k] ?? cur[k], dt) : 0), 'num')
    for (const k of KINDS) cell(tr, int(cur[k]), 'num')
    return tr
  }))
  setText('latest-sub', `${int(d.readings.length)} shown of ${int(d.tracked)} devices seen since the ingest started`)
  const now = Date.now()
  $('latest').tBodies[0].replaceChildren(...d.readings.map((r) => {
    const tr = document.createElement('tr')
    tr.dataset.device = r.device
    cell(tr, r.device)
    cell(tr, r.gateway)
    cell(tr, ago(r.storedAt, now))
    cell(tr, r.seq === null ? '–' : int(r.seq), 'num')
    cell(tr, r.boot === null ? '–' : String(r.boot))
    cell(tr, Object.entries(r.values).map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v, 4) : String(v)}`).join('  '), 'values')
    return tr
  }))
  renderConflicts(d)
  renderCommands(d.commands, d.t)
  prev = d
}

const copyText = (c) => c === null ? '(not found)' : `${c.gateway} p${c.p} s${c.s}: ${Object.entries(c.values).map(([k, v]) => `${k}=${String(v)}`).join('  ')}${c.ts === null ? '' : ` ts ${new Date(c.ts).toISOString()}`}`

// A natural-key conflict: a copy that arrived with a stored reading's (fleet, device, boot,
// seq) and other content; both are kept, the stored one as the reading.
function renderConflicts (d) {
  $('conflicts-card').hidden = d.conflicts.length === 0
  setText('conflicts-sub', `${int(d.conflicts.length)} shown of ${int(d.stats.conflicts)}; all of them: GET /v1/conflicts?device=`)
  const now = Date.now()
  $('conflicts').tBodies[0].replaceChildren(...d.conflicts.map((c) => {
    const tr = document.createElement('tr')
    tr.dataset.device = c.device
    cell(tr, c.device)
    cell(tr, c.boot === null ? '–' : String(c.boot))
    cell(tr, int(c.seq), 'num')
    cell(tr, copyText(c.stored), 'values')
    cell(tr, copyText(c.conflicting), 'values')
    cell(tr, ago(c.recordedAt, now))
    return tr
  }))
}

const COMMAND_STATES = ['queued', 'at-gateway', 'delivered', 'completed', 'rejected', 'expired', 'cancelled']

// Commands to devices: counts by state (fleet * only: the store counts every fleet; a
// fleet-bound token gets the counts of the commands listed) and the latest changed ones.
function renderCommands (c, t) {
  $('cmd-off').hidden = c !== null
  $('commands-card').dataset.enabled = String(c !== null)
  if (c === null) { $('cmd-empty').hidden = true; $('commands').hidden = true; return }
  $('cmd-empty').hidden = c.recent.length > 0
  $('commands').hidden = c.recent.length === 0
  let counts = c.counts
  if (counts === null) {
    counts = {}
    for (const x of c.recent) counts[x.state] = (counts[x.state] ?? 0) + 1
  }
  $('cmd-counts').dataset.counts = JSON.stringify(counts)
  bars($('cmd-counts'), COMMAND_STATES.map((s) => ({ label: s, value: counts[s] ?? 0, warn: s === 'rejected' || s === 'expired' })))
  setText('cmd-sub', `${c.counts === null ? 'counts of the commands listed; ' : 'counts: all commands kept; '}${int(c.recent.length)} changed in the last ${fmtMs(c.windowMs)} shown, newest first; all of them: GET /v1/commands`)
  $('commands').tBodies[0].replaceChildren(...c.recent.map((x) => {
    const tr = document.createElement('tr')
    tr.dataset.command = x.id
    tr.dataset.device = x.device
    tr.dataset.state = x.state
    cell(tr, x.id, 'id')
    cell(tr, x.device)
    cell(tr, x.name)
    cell(tr, x.state, 'st')
    cell(tr, x.gateway ?? '–')
    cell(tr, int(x.history), 'num')
    cell(tr, ago(x.updatedAt, t))
    cell(tr, ago(x.createdAt, t))
    return tr
  }))
}

function askToken (wrong) {
  sessionStorage.removeItem(TOKEN_KEY)
  $('token-err').hidden = !wrong
  $('token-form').hidden = false
  setText('updated', 'read token needed')
  $('live-pill').className = 'pill warn'
  $('read-token').focus()
}

async function poll () {
  let delayMs = 1000
  try {
    const token = sessionStorage.getItem(TOKEN_KEY)
    const r = await fetch(`/ui/live?limit=50&q=${encodeURIComponent(query)}`, token ? { headers: { authorization: `Bearer ${token}` } } : {})
    if (r.status === 401) { askToken(token !== null); return } // polling resumes when a token is given
    if (r.status === 429) delayMs = Math.max(1000, 1000 * (Number(r.headers.get('retry-after')) || 1))
    if (r.ok) render(await r.json())
    else throw new Error(String(r.status))
  } catch {
    setText('updated', 'connection lost: retrying…')
    $('live-pill').className = 'pill warn'
  }
  setTimeout(poll, delayMs)
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const v = $('read-token').value.trim()
  if (!v) return
  sessionStorage.setItem(TOKEN_KEY, v)
  $('read-token').value = ''
  $('token-form').hidden = true
  poll()
})
$('dev-search').addEventListener('input', (e) => { query = e.target.value.trim() })
poll()
