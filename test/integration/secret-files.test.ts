/**
 * Secrets read from files have at least 16 characters too: the ingest's
 * `--tokens-file` and `--read-tokens-file`, the gateway's `--token-file` and
 * `--admin-token-file`. The error names the flag, the file and the minimum.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { resolveToken } from '../../gateway/tls.ts'
import { resolveTokens, withDefaults } from '../../ingest/config.ts'
import { ReadAuth } from '../../ingest/read-auth.ts'
import { startGateway } from '../helpers/gateway.ts'
import { tempDir } from '../helpers/index.ts'

const S15 = 'abcdefghijklmno'
const S16 = 'abcdefghijklmnop'

test('secret files: a secret under 16 characters is a startup error naming the file', async (t) => {
  const dir = await tempDir(t)
  const file = (name: string, text: string): Promise<string> => writeFile(join(dir, name), text).then(() => join(dir, name))

  const shortTokens = await file('tokens.json', JSON.stringify({ gw1: S16, gw2: { secret: S15, fleet: 'north' } }))
  await assert.rejects(resolveTokens({ token: [], tokensFile: shortTokens, tlsCa: undefined }), new RegExp(`tokensFile: --tokens-file ${shortTokens}: secret for gateway gw2 must be at least 16`))
  const okTokens = await file('tokens-ok.json', JSON.stringify({ gw1: S16 }))
  assert.equal((await resolveTokens({ token: [], tokensFile: okTokens, tlsCa: undefined })).size, 1)

  const shortRead = await file('read.json', JSON.stringify({ north: [S16, S15] }))
  await assert.rejects(ReadAuth.create(withDefaults({ readTokensFile: shortRead })), /readTokensFile: --read-tokens-file .*read\.json: read token of fleet north must be at least 16/)

  const shortUp = await file('up.token', `${S15}\n`)
  await assert.rejects(resolveToken({ tokenFile: shortUp } as Parameters<typeof resolveToken>[0]), /tokenFile: .*up\.token: the token must be at least 16/)
  assert.equal(await resolveToken({ tokenFile: await file('up-ok.token', `${S16}\n`) } as Parameters<typeof resolveToken>[0]), S16)

  const shortAdmin = await file('admin.token', `${S15}\n`)
  await assert.rejects(startGateway(t, { adminTokenFile: shortAdmin }), /adminTokenFile: --admin-token-file .*admin\.token: the token must be at least 16/)
  const gw = await startGateway(t, { adminTokenFile: await file('admin-ok.token', `${S16}\n`) })
  assert.equal((await fetch(`http://127.0.0.1:${gw.adminPort}/status`, { headers: { authorization: `Bearer ${S16}` } })).status, 200)
})
