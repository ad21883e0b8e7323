#!/usr/bin/env node
// After `tsc -p tsconfig.build.json`: every `bin` entry of package.json gets a
// `#!/usr/bin/env node` line and the executable bit, so `npm install -g .` (or a symlink
// into PATH) runs `gateway`, `ingest` and `device-sim` directly.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

// the package root: this checkout, or the directory given (tests)
const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
for (const [name, rel] of Object.entries(pkg.bin ?? {})) {
  const file = join(root, rel)
  let text
  try { text = readFileSync(file, 'utf8') } catch (err) {
    console.error(`postbuild: bin ${name}: ${rel} was not built (${err.message})`)
    process.exit(1)
  }
  if (!text.startsWith('#!')) writeFileSync(file, `#!/usr/bin/env node\n${text}`)
  chmodSync(file, 0o755)
}
