/** The release version every CLI prints for `--version` (test/integration/cli-basics.test.ts keeps it equal to package.json). */
export const VERSION = '0.1.0'
