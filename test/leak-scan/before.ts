import { rmSync } from 'node:fs'
import { leakCaptureDir } from '../helpers/leak-capture.ts'

// Start every suite run with an empty capture.
rmSync(leakCaptureDir, { recursive: true, force: true })
