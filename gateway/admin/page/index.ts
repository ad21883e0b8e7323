/**
 * The admin page's files: index.html, app.js, style.css here, chart.js and base.css from
 * web/ (shared with the ingest page), served by common/page.ts from memory with an ETag.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { staticPage } from '../../../common/index.ts'

const page = staticPage(new URL('./', import.meta.url), ['app.js', 'style.css'])

/** Serves a page file; false when `path` is not one (the probes never read the files). */
export function servePage (req: IncomingMessage, res: ServerResponse, path: string): boolean {
  return page.serve(req, res, path)
}

/** Total bytes of the page and its assets (docs and the size test). */
export function pageBytes (): number {
  return page.bytes()
}
