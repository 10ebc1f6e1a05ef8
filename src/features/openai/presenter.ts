import type { TaskSnapshot } from '../tasks/snapshot.ts'
import type { TaskIndexEntry } from '../tasks/task-index.ts'
import { sizeOf } from './mapping.ts'
import type { Video } from './schemas.ts'

const statuses: Readonly<Record<string, Video['status']>> = {
  pending: 'queued',
  processing: 'in_progress',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'failed'
}

/** The upstream's result links live 24 h. */
const resultLinkLifetimeSeconds = 24 * 60 * 60

/** A task as OpenAI's video object: the index says what was asked, the snapshot how it is going. */
export function presentVideo (entry: Pick<TaskIndexEntry, 'id' | 'attributes'> & { createdAt?: number }, snapshot: TaskSnapshot): Video {
  const { task } = snapshot
  const status = statuses[String(task.status)] ?? 'queued'
  const createdAt = typeof task.created === 'number' ? task.created : Math.floor((entry.createdAt ?? snapshot.fetchedAt) / 1000)
  // The upstream says when it finished only by answering so: the first sighting of the end is as close as the gateway gets.
  const completedAt = status === 'completed' || status === 'failed' ? Math.floor(snapshot.fetchedAt / 1000) : null
  const upstreamError = (task as { error?: { code?: unknown, message?: unknown } }).error
  return {
    id: entry.id,
    object: 'video',
    created_at: createdAt,
    completed_at: completedAt,
    expires_at: status === 'completed' && completedAt !== null ? completedAt + resultLinkLifetimeSeconds : null,
    status,
    progress: typeof task.progress === 'number' ? task.progress : 0,
    model: entry.attributes.model,
    prompt: entry.attributes.prompt,
    seconds: entry.attributes.seconds,
    size: sizeOf(entry.attributes),
    error: status === 'failed'
      ? { code: String(upstreamError?.code ?? 'generation_failed'), message: String(upstreamError?.message ?? 'The video could not be generated.') }
      : null,
    remixed_from_video_id: null
  }
}
