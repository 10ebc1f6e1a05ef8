/** The fixed data of a bench run: what the fake upstream answers and what the load sends. */

/** Upstream answer to POST /v1/videos/generations (Evolink's documented create shape). */
export const createdTask = {
  created: 1757169743,
  id: 'task-unified-1757169743-7cvnl5zw',
  model: 'veo-3.1-fast-generate-preview',
  object: 'video.generation.task',
  progress: 0,
  status: 'pending',
  task_info: { can_cancel: true, estimated_time: 180, video_duration: 8 },
  type: 'video',
  usage: { billing_rule: 'per_call', credits_reserved: 25.7, user_group: 'default' }
}

/** Upstream answer to GET /v1/tasks/<id>: the same task, finished. */
export const completedTask = {
  ...createdTask,
  progress: 100,
  results: ['https://files.example.com/videos/task-unified-1757169743-7cvnl5zw-0.mp4'],
  status: 'completed',
  task_info: { can_cancel: false, estimated_time: 0, video_duration: 8 }
}

/** A valid create body (passes the gateway's schema and model rules). */
export const createBody = JSON.stringify({
  model: 'veo-3.1-fast-generate-preview',
  prompt: 'A cat playing piano in a jazz club, warm light, slow dolly-in',
  aspect_ratio: '16:9',
  duration: 8,
  generate_audio: true
})

/** The OpenAI Videos create that maps to `createBody` but for audio (the dialect has no such field). */
export const openaiCreateBody = JSON.stringify({
  model: 'sora-2',
  prompt: 'A cat playing piano in a jazz club, warm light, slow dolly-in',
  seconds: '8',
  size: '1280x720'
})

/**
 * Upstream ids of the archive scenario: `<prefix><bytes>-<tag>` is a completed task
 * whose one result is a `<bytes>`-byte MP4 served by the fixed upstream.
 */
export const archiveTaskPrefix = 'task-unified-archive-'
