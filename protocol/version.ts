/** The release version every CLI prints for `--version` (test/unit/version.test.ts keeps it equal to package.json). */
export const VERSION = '0.1.0'

/** Lines every CLI's --help ends with: the logging knobs read from the environment. */
export const LOG_ENV_HELP = '  LOG_LEVEL=trace|debug|info|warn|error|fatal|silent\n      log level (default info; the ready line is always written)\n  LOG_FORMAT=json|pretty\n      json: one JSON object a line on stdout (default); pretty: coloured lines for a terminal\n'
