/**
 * `gateway --help`: the flags a new user needs first, then every flag in the sections of
 * docs/configuration.md (one component a section), then the other commands and the
 * logging environment.
 */
import { helpSections, LOG_ENV_HELP } from '../common/index.ts'
import { FIRST_FLAGS, gatewayFlagSections, gatewaySchema } from './config.ts'

export function gatewayUsage (): string {
  const sections = [{ title: 'start here (where readings go, where they are kept, who may publish)', keys: FIRST_FLAGS }, ...gatewayFlagSections()]
  return [
    'usage: gateway [flags]',
    '       gateway passwd FILE add-device ID | add-app NAME | remove NAME | list',
    '       gateway dlq list|show|export|replay|purge ... (gateway dlq --help)',
    '       gateway check [--data-dir DIR] (verify a stopped gateway\'s store; gateway check --help)',
    '       gateway commands list [--data-dir DIR] [--device ID] [--json] (a stopped gateway\'s commands to devices)',
    '',
    'Every flag is also an env var GATEWAY_* and a camelCase key of --config FILE;',
    'all of them: docs/configuration.md; the ones that matter most: README.md.',
    '',
    helpSections(gatewaySchema, 'GATEWAY', sections),
    '',
    'other:',
    '  --config <file>',
    '      JSON file with any of the keys above in camelCase [env GATEWAY_CONFIG]',
    '  --hash-password',
    '      read a password on stdin, print its hash for --auth-file',
    '  --version',
    '      print the version',
    '',
    'environment:',
    LOG_ENV_HELP
  ].join('\n')
}
