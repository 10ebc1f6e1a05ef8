/**
 * A small stand-in for a result video: an ISO-BMFF `ftyp` box (so sniffers
 * see video/mp4) followed by a `free` box naming the file. Not playable.
 */
export function fakeMp4 (label: string): Buffer {
  const ftyp = Buffer.alloc(24)
  ftyp.writeUInt32BE(24, 0)
  ftyp.write('ftypisom', 4, 'latin1')
  ftyp.writeUInt32BE(0x200, 12)
  ftyp.write('isommp41', 16, 'latin1')
  const text = Buffer.from(`video-gateway simulator: ${label}`, 'utf8')
  const free = Buffer.alloc(8)
  free.writeUInt32BE(8 + text.length, 0)
  free.write('free', 4, 'latin1')
  return Buffer.concat([ftyp, free, text])
}

/** `task-unified-…-<i>.mp4` → task id and index. */
export function parseResultFileName (name: string): { taskId: string, index: number } | undefined {
  const match = /^(task-unified-.+)-(\d{1,3})\.mp4$/.exec(name)
  if (match === null) return undefined
  return { taskId: match[1]!, index: Number(match[2]) }
}
