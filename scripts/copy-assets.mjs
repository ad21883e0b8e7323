#!/usr/bin/env node
// `npm run build` step: tsc compiles only .ts files; the operator pages' browser files
// (HTML, CSS, plain JS) are copied next to the compiled code, keeping their relative paths
// (gateway/admin/page/, ingest/page/, web/), so dist/ serves the same pages as a checkout.
import { cpSync, readdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
// `node scripts/copy-assets.mjs [outDir]`: dist/ by default; the benches build elsewhere
const out = resolve(process.argv[2] ?? join(root, 'dist'))
let n = 0
for (const dir of ['gateway/admin/page', 'ingest/page', 'web']) {
  for (const f of readdirSync(join(root, dir))) {
    if (!/\.(html|css|js)$/.test(f)) continue
    cpSync(join(root, dir, f), join(out, dir, f))
    n++
  }
}
console.error(`copy-assets: ${n} page files copied into ${out}`)
