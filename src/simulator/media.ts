import { readFileSync } from 'node:fs'
import { Readable } from 'node:stream'

/**
 * The video every simulated task yields: a real 2-second H.264 MP4 (240×136,
 * about 10 KB, made with ffmpeg's test pattern; see src/assets/README.md), so
 * that a player, the demo page included, can play the whole loop offline.
 * Read once: src/assets/ sits beside this file's directory in src/ and in dist/.
 */
export const sampleVideo: Buffer = readFileSync(new URL('../assets/sample.mp4', import.meta.url))

/** `task-unified-…-<i>.mp4` → task id and index. */
export function parseResultFileName (name: string): { taskId: string, index: number } | undefined {
  const match = /^(task-unified-.+)-(\d{1,3})\.mp4$/.exec(name)
  if (match === null) return undefined
  return { taskId: match[1]!, index: Number(match[2]) }
}

const freeBoxHeaderBytes = 8

/**
 * The sample video grown to `bytes` (at least its own size) with an ISO BMFF
 * `free` box of zeros, which players skip: still a valid MP4, made as it
 * streams (never `bytes` in memory). For big-file downloads (the archive bench).
 */
export function paddedSampleVideo (bytes: number): { size: number, body (): Readable } {
  const padding = bytes - sampleVideo.length
  if (padding < freeBoxHeaderBytes) return { size: sampleVideo.length, body: () => Readable.from([sampleVideo]) }
  const zeros = Buffer.alloc(64 * 1024)
  return {
    size: bytes,
    body: () => Readable.from((function * () {
      yield sampleVideo
      const header = Buffer.alloc(freeBoxHeaderBytes)
      header.writeUInt32BE(padding, 0)
      header.write('free', 4, 'latin1')
      yield header
      let left = padding - freeBoxHeaderBytes
      while (left > 0) {
        const size = Math.min(left, zeros.length)
        left -= size
        yield size === zeros.length ? zeros : zeros.subarray(0, size)
      }
    })())
  }
}
