import { createHook } from 'node:async_hooks'
import { writeFileSync } from 'node:fs'
import { GCProfiler } from 'node:v8'

/**
 * Loaded with `node --import` into a server under load by bench/attribute.ts
 * (a side run: the hooks cost time, so no timing figure comes from it).
 * SIGWINCH (which close-with-grace leaves alone) opens a window, the next closes it and writes, to the file
 * named by ATTRIBUTE_OUT: async resources created by type (promises, timers,
 * sockets...), and the bytes allocated in the window (heap used before each GC
 * minus after the one before, as V8's GC profiler reports them).
 */
const out = process.env.ATTRIBUTE_OUT
if (out === undefined) throw new Error('ATTRIBUTE_OUT: the file to write the window to')

let counting = false
const created = new Map<string, number>()
createHook({
  init (_id, type) {
    if (counting) created.set(type, (created.get(type) ?? 0) + 1)
  }
}).enable()

let profiler: GCProfiler | null = null
let usedAtStart = 0

process.on('SIGWINCH', () => {
  if (!counting) {
    created.clear()
    profiler = new GCProfiler()
    profiler.start()
    usedAtStart = process.memoryUsage().heapUsed
    counting = true
    return
  }
  counting = false
  const usedAtEnd = process.memoryUsage().heapUsed
  const result = profiler?.stop()
  let allocated = 0
  let previousAfter = usedAtStart
  const gcs: Record<string, number> = {}
  for (const gc of result?.statistics ?? []) {
    allocated += gc.beforeGC.heapStatistics.usedHeapSize - previousAfter
    previousAfter = gc.afterGC.heapStatistics.usedHeapSize
    gcs[gc.gcType] = (gcs[gc.gcType] ?? 0) + 1
  }
  allocated += usedAtEnd - previousAfter
  writeFileSync(out, JSON.stringify({ created: Object.fromEntries(created), allocatedBytes: allocated, gcs }))
})
