// A node:test reporter for scripts/run-tests.mjs: counts the results of each test file
// (passed, failed, cancelled, skipped, todo; suites are not tests) and writes them as one
// JSON object keyed by the file's absolute path when the run ends. run-tests adds it next
// to node's own reporter, so the runner can say per tier what passed without parsing TAP.
// The counting follows node's own closing `# pass` / `# fail` / `# cancelled` lines.
const CANCELLED = new Set(['cancelledByParent', 'testTimeoutFailure'])

export default async function * tally (source) {
  const files = {}
  const count = (file, key) => {
    if (!file) return
    files[file] ??= { pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 }
    files[file][key]++
  }
  for await (const { type, data } of source) {
    if (type !== 'test:pass' && type !== 'test:fail') continue
    if (data.details?.type === 'suite') continue
    if (data.skip !== undefined && data.skip !== false) count(data.file, 'skipped')
    else if (data.todo !== undefined && data.todo !== false) count(data.file, 'todo')
    else if (type === 'test:pass') count(data.file, 'pass')
    else count(data.file, CANCELLED.has(data.details?.error?.failureType) ? 'cancelled' : 'fail')
  }
  yield JSON.stringify(files) + '\n'
}
