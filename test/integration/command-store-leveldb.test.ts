/** The command store contract against LevelDbCommandStore (its own LevelDB in a temp dir). */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelDbCommandStore } from '../../ingest/commands/leveldb-store.ts'
import { commandStoreContract } from './command-store-contract.ts'

commandStoreContract('leveldb', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'command-store-'))
  return {
    store: await LevelDbCommandStore.open({ dataDir }),
    reopen: () => LevelDbCommandStore.open({ dataDir }),
    cleanup: () => rm(dataDir, { recursive: true, force: true })
  }
})
