/** The release version every CLI prints for `--version` (test/unit/version.test.ts keeps it equal to package.json). */
export const VERSION = '0.1.0'
