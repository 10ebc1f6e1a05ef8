import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { serveDownloads, type DownloadThreadInit } from './download-threads.ts'

// Below the main thread, which answers requests: when the cores are busy, requests come first
// and the archive takes what is left. Linux only: it keeps a nice value per thread (pid 0 is this
// one); elsewhere pid 0 is the whole process.
if (process.platform === 'linux') setPriority(0, 10)
// A download thread's entry (download-threads.ts starts it with workerData): everything it does is serveDownloads'.
serveDownloads(parentPort!, workerData as DownloadThreadInit)
