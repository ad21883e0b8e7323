// ESLint (flat config): neostandard, the maintained successor of `standard` (no semicolons,
// single quotes, a space before a function's parentheses), with its TypeScript support, and
// two type-aware rules on top. `npm run lint`; .ci/run runs it after the typecheck.
// What is changed from neostandard, and why, is said next to each rule below.
import globals from 'globals'
import neostandard from 'neostandard'

// the operator pages' scripts run in a browser (ES modules), not under node
const browserFiles = ['web/**/*.js', 'gateway/admin/page/*.js', 'ingest/page/*.js']
const nodeOnly = Object.fromEntries(Object.keys(globals.node).map((k) => [k, 'off']))

export default [
  { ignores: ['dist/', 'data/', '.tmp/', 'bench/results/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  ...neostandard({ ts: true }),
  {
    files: browserFiles,
    languageOptions: { globals: { ...nodeOnly, ...globals.browser } },
  },
  {
    rules: {
      // Style the code keeps throughout: long object literals are wrapped with several
      // properties a line (117 places), and `new Promise((r) => ...)` names the resolver
      // r/res/ok (89 places). Rewriting them would buy nothing and collide with every branch.
      '@stylistic/object-property-newline': 'off',
      'promise/param-names': 'off',
      // `void promise` as a statement is how this code marks a promise it deliberately does
      // not await (the marker @typescript-eslint/no-floating-promises below accepts);
      // `void` inside an expression is still an error.
      'no-void': ['error', { allowAsStatement: true }],
      // Every hit was a flag set by an event handler or another task while this loop
      // awaits (`while (!closed) await ...`), which the rule cannot see.
      'no-unmodified-loop-condition': 'off',
      // `let x` declared before the closures that read it and assigned once after them
      // (the admin server's `gw`, the ingest's `sink`) cannot be a const.
      'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A promise nobody awaits or catches is an unhandled rejection, which ends the process
      // under node: each one is awaited, handled, or marked with `void`. node:test's test()
      // and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }],
      }],
      // an async function where a callback's result is ignored (an event handler, a timer)
      '@typescript-eslint/no-misused-promises': 'error',
      // `const X = {...} as const` with `type X = ...` of the same name is the house pattern
      // for constants (protocol/codes.ts); tsc itself reports a real redeclaration (ts2451).
      '@typescript-eslint/no-redeclare': 'off',
      // `for (const _ of it) n++`: a loop that only counts must still name its variable.
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', caughtErrors: 'none', ignoreRestSiblings: true, vars: 'all', varsIgnorePattern: '^_$' }],
      // Not turned on (neostandard leaves it off too): no-non-null-assertion. With
      // noUncheckedIndexedAccess an `a[i]!` says "i is in range here"; there are several
      // hundred, many on hot paths where a check would cost.
    },
  },
]
