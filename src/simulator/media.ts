import { readFileSync } from 'node:fs'

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
