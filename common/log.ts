/**
 * The CLI's root logger: pino JSON on stdout, or with LOG_FORMAT=pretty human-readable
 * lines (pino-pretty, synchronous, so nothing is lost at exit) for a terminal.
 */
import { pino, type Logger, type LoggerOptions } from 'pino'
import pretty from 'pino-pretty'

export function createLogger (opts: LoggerOptions, env: NodeJS.ProcessEnv = process.env): Logger {
  const options: LoggerOptions = { level: env.LOG_LEVEL ?? 'info', ...opts }
  if (env.LOG_FORMAT === 'pretty') return pino(options, pretty({ sync: true, destination: 1, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  if (env.LOG_FORMAT !== undefined && env.LOG_FORMAT !== 'json') process.stderr.write(`LOG_FORMAT=${env.LOG_FORMAT} is not json or pretty: using json\n`)
  return pino(options)
}

/** Lines every CLI's --help ends with: the logging knobs read from the environment. */
export const LOG_ENV_HELP = '  LOG_LEVEL=trace|debug|info|warn|error|fatal|silent\n      log level (default info; the ready line is always written)\n  LOG_FORMAT=json|pretty\n      json: one JSON object a line on stdout (default); pretty: coloured lines for a terminal\n'
