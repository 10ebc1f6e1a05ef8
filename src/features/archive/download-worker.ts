import { parentPort, workerData } from 'node:worker_threads'
import { serveDownloads, type DownloadThreadInit } from './download-threads.ts'

// A download thread's entry (download-threads.ts starts it with workerData): everything it does is serveDownloads'.
serveDownloads(parentPort!, workerData as DownloadThreadInit)
