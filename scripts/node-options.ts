/**
 * The V8 options the installed launcher (bin/gateway) starts the gateway with: the words of
 * bin/node-options, `#` lines skipped. `npm start` and the benchmarks' `-bin` systems use
 * the same list.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export function launcherNodeArgs (root: string): string[] {
  return readFileSync(join(root, 'bin', 'node-options'), 'utf8').split('\n').filter((l) => !l.startsWith('#')).join(' ').split(/\s+/).filter(Boolean)
}
