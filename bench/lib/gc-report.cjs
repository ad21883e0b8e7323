// Preload for bench/live-heap.ts (node --expose-gc -r THIS): on SIGUSR2, two full GCs, then
// one JSON line {"msg":"live-heap",...} on stdout: the heap that is really live, not the
// garbage V8 has not collected yet.
process.on('SIGUSR2', () => {
  global.gc(); global.gc()
  const m = process.memoryUsage()
  process.stdout.write(JSON.stringify({ msg: 'live-heap', heapUsedMb: m.heapUsed / 1048576, rssMb: m.rss / 1048576, externalMb: m.external / 1048576 }) + '\n')
})
