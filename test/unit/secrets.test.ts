/**
 * Operator-chosen secrets have at least 16 characters: the ingest's
 * gateway and read tokens, the gateway's upstream and admin tokens. The startup error names
 * the flag and the minimum. (Files: test/integration/secret-files.test.ts; passwords:
 * gateway-passwd.test.ts.)
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseGatewayConfig } from '../../gateway/config.ts'
import { resolveTokens, withDefaults } from '../../ingest/config.ts'
import { ReadAuth } from '../../ingest/read-auth.ts'
import { MIN_SECRET_CHARS, secretProblem } from '../../protocol/secrets.ts'

const S15 = 'abcdefghijklmno'
const S16 = 'abcdefghijklmnop'

test('secretProblem: 16 characters (code points), no spaces', () => {
  assert.equal(MIN_SECRET_CHARS, 16)
  assert.equal(secretProblem(S16), null)
  assert.match(secretProblem(S15) ?? '', /at least 16 characters \(got 15/)
  assert.match(secretProblem('') ?? '', /at least 16/)
  assert.match(secretProblem('abcdefgh ijklmnopq') ?? '', /spaces/)
  assert.match(secretProblem('🔑'.repeat(15)) ?? '', /got 15/, 'counted in characters, not UTF-16 units')
})

test('ingest --token: a gateway secret under 16 characters is a startup error naming the flag', async () => {
  await assert.rejects(resolveTokens({ token: [`gw1:${S15}`], tokensFile: undefined, tlsCa: undefined }), /token: --token: secret for gateway gw1 must be at least 16 characters/)
  assert.equal((await resolveTokens({ token: [`gw1:${S16}`], tokensFile: undefined, tlsCa: undefined })).get(S16), 'gw1')
  await assert.rejects(ReadAuth.create(withDefaults({ readToken: [`north:${S15}`] })), /readToken: --read-token: read token of fleet north must be at least 16/)
})

test('gateway --token and --admin-token: under 16 characters is a startup error naming the flag', () => {
  const parse = (...argv: string[]) => parseGatewayConfig({ argv, env: {} })
  assert.throws(() => parse('--admin-token', S15), /adminToken: --admin-token must be at least 16 characters/)
  assert.throws(() => parseGatewayConfig({ argv: [], env: { GATEWAY_ADMIN_TOKEN: 'x' } }), /--admin-token must be at least 16/)
  assert.throws(() => parse('--upstream', 'https://ingest.example', '--token', S15), /token: --token .*must be at least 16 characters/)
  assert.equal(parse('--admin-token', S16, '--admin-host', '0.0.0.0').adminToken, S16)
  assert.equal(parse('--upstream', 'https://ingest.example', '--token', S16).token, S16)
})
