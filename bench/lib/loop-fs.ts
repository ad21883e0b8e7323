/**
 * A private ext4 file system on a loop device, for counting the writes a process causes at
 * the device level (data, metadata and the journal) without the rest of a shared box: the
 * loop device's /sys/block/loopN/stat sees only this file system. Needs root, losetup and
 * mkfs.ext4 (util-linux, e2fsprogs); returns null with the reason otherwise.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import type { Cleanup } from './procs.ts'

export type LoopFs = { dir: string, device: string, sectorsWritten: () => number }

export function mountLoopFs (cleanup: Cleanup, sizeMb: number): LoopFs | { unavailable: string } {
  if (process.getuid?.() !== 0) return { unavailable: 'not root' }
  const work = cleanup.tempDir('bench-loopfs-')
  const img = join(work, 'fs.img')
  const mnt = join(work, 'mnt')
  mkdirSync(mnt)
  const run = (cmd: string, args: string[]): { ok: boolean, out: string } => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' })
    return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() }
  }
  const t = run('truncate', ['-s', `${sizeMb}M`, img])
  if (!t.ok) return { unavailable: `truncate: ${t.out}` }
  const mk = run('mkfs.ext4', ['-q', '-F', img])
  if (!mk.ok) return { unavailable: `mkfs.ext4: ${mk.out}` }
  const lo = run('losetup', ['-f', '--show', img])
  if (!lo.ok) return { unavailable: `losetup: ${lo.out}` }
  const dev = lo.out.split('\n').pop()!.trim()
  const m = run('mount', [dev, mnt])
  if (!m.ok) { run('losetup', ['-d', dev]); return { unavailable: `mount: ${m.out}` } }
  // undone before the temp dirs are removed (the image's dir among them): unmount, detach
  cleanup.atExit(() => { run('umount', [mnt]); run('losetup', ['-d', dev]) })
  const stat = `/sys/block/${basename(dev)}/stat`
  return { dir: mnt, device: dev, sectorsWritten: () => Number(readFileSync(stat, 'utf8').trim().split(/\s+/)[6]) }
}
