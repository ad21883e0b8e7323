/**
 * Headless Chromium for the page tests, bench/admin-page.ts and scripts/screenshots.ts:
 * Debian's `chromium` driven by playwright-core (which downloads no browser). A missing /usr/bin/chromium is a
 * clear failure, never a skip: `.ci/run` installs it (apt-get install -y chromium).
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

/** A fresh browser (its own user-data-dir), closed and removed by `after`. */
export async function launchBrowser (t: { after: (fn: () => unknown) => void }, opts: { width?: number, height?: number } = {}): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the page tests need Debian's chromium (apt-get update && apt-get install -y chromium; .ci/run installs it)`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'chromium-'))
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 900 }
  })
  t.after(async () => {
    await ctx.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  return ctx
}

/** Opens `url` in a new page, collecting console errors and page errors into `errors`. */
export async function openPage (ctx: BrowserContext, url: string): Promise<{ page: Page, errors: string[] }> {
  const page = await ctx.newPage()
  const errors: string[] = []
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(url, { waitUntil: 'load' })
  return { page, errors }
}
