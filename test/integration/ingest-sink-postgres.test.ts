import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'
import { PostgresSink } from '../../ingest/sinks/postgres.ts'
import { freshDatabase } from '../helpers/postgres.ts'
import { item, req, runSinkContract } from './sink-contract.ts'

runSinkContract('postgres', async () => {
  const url = await freshDatabase()
  return { open: () => PostgresSink.open({ url, poolMax: 4 }) }
})
