import { randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ArchiveStorage } from './storage.ts'

const tempDirName = '.incoming'

/**
 * `mkdir -p` that always ends: Node's recursive mkdir retries for ever where
 * mkdir answers ENOENT under a parent that exists (/proc, sysfs), so
 * ARCHIVE_DIR=/proc/x would hang the start instead of failing it.
 */
async function makeDirectory (path: string): Promise<void> {
  const existing = async (error: unknown): Promise<void> => {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    if (!(await stat(path)).isDirectory()) throw new Error(`${path} exists and is not a directory`)
  }
  try {
    await mkdir(path)
    return
  } catch (error) {
    // (At `/`, mkdir answers EEXIST: the walk up ends.)
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      await existing(error)
      return
    }
  }
  // The parent first, then this once more: an ENOENT now is final.
  await makeDirectory(dirname(path))
  await mkdir(path).catch(existing)
}

/**
 * Objects as files under `root`. A put writes `<root>/.incoming/<random>` and
 * renames it into place when complete (rename is atomic within one file
 * system, which is why the temp directory is inside the root): a reader sees
 * the old object or the new one, never a part. Temp files a crash left behind
 * are removed when the storage is opened.
 */
export async function createDirectoryStorage (options: { root: string, /** false: another thread's opening (the temp files of puts in flight stay) */ clean?: boolean }): Promise<ArchiveStorage> {
  const root = resolve(options.root)
  const incoming = join(root, tempDirName)
  if (options.clean !== false) {
    await makeDirectory(root)
    await rm(incoming, { recursive: true, force: true })
    await mkdir(incoming)
  }

  function pathOf (key: string): string {
    const path = resolve(root, key)
    // Keys are made by the archive, but a path that leaves the root must never be opened.
    if (!path.startsWith(root + sep) || path.startsWith(incoming + sep)) throw new Error(`archive key outside the directory: ${key}`)
    return path
  }

  return {
    kind: 'directory',
    descriptor: { kind: 'directory', root },
    async put (key, body: Readable, { signal }) {
      const target = pathOf(key)
      const temp = join(incoming, randomBytes(12).toString('hex'))
      try {
        await pipeline(body, createWriteStream(temp, { flags: 'wx' }), { signal })
        await mkdir(dirname(target), { recursive: true })
        await rename(temp, target)
      } catch (error) {
        await rm(temp, { force: true })
        throw error
      }
    },
    async read (key, range) {
      const path = pathOf(key)
      let size: number
      try {
        size = (await stat(path)).size
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw error
      }
      return { body: createReadStream(path, range === undefined ? {} : { start: range.start, end: range.end }), size }
    },
    async remove (keys) {
      await Promise.all(keys.map(async (key) => { await rm(pathOf(key), { force: true }) }))
      // Empty task directories go too (best effort: another put may be filling one).
      await Promise.all([...new Set(keys.map((key) => dirname(pathOf(key))))].map(async (directory) => {
        try {
          if ((await readdir(directory)).length === 0) await rmdir(directory)
        } catch {}
      }))
    },
    async close () {}
  }
}
