import { Type, type Static } from 'typebox'
import { TaskQuery } from '../../schemas/generation.ts'

/** The tag of every route of the OpenAI Videos dialect in /openapi.json. */
export const openaiTag = 'OpenAI Videos'

export const CreateVideoBody = Type.Object({
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'An OpenAI model name mapped by OPENAI_MODEL_ALIASES (`sora-2`, `sora-2-pro` by default) or a served model id. Default `sora-2`.' })),
  prompt: Type.String({ minLength: 1, maxLength: 20000, description: 'What the video shows.' }),
  seconds: Type.Optional(Type.String({ maxLength: 16, description: 'Clip length: `"4"`, `"6"` or `"8"` (default `"4"`).' })),
  size: Type.Optional(Type.String({ maxLength: 32, description: '`1280x720`, `720x1280` (720p), `1920x1080`, `1080x1920` (1080p), `3840x2160`, `2160x3840` (4k); default `720x1280`.' })),
  input_reference: Type.Optional(Type.Object({
    image_url: Type.String({ format: 'uri', maxLength: 2048, description: 'A public image URL: the first frame.' })
  }, { additionalProperties: false, description: 'A first-frame image by URL. In a multipart form, `input_reference` may instead be the image file itself (JPEG, PNG or WebP, at most IMAGE_UPLOAD_MAX_BYTES), which the gateway hosts on the video provider\'s file API.' }))
}, {
  additionalProperties: false,
  description: 'An OpenAI Videos create, as JSON or multipart/form-data (as the `openai` SDK sends it; `input_reference[image_url]` for the nested field, or `input_reference` as a file).',
  examples: [{ model: 'sora-2', prompt: 'A cat playing piano', seconds: '4', size: '1280x720' }]
})
export type CreateVideoBody = Static<typeof CreateVideoBody>

export const VideoError = Type.Object({
  code: Type.String(),
  message: Type.String()
})

export const Video = Type.Object({
  id: Type.String({ description: 'The tenant-scoped task id (the same id the native `GET /v1/tasks/{id}` reads).' }),
  object: Type.Literal('video'),
  created_at: Type.Integer({ description: 'Unix seconds.' }),
  completed_at: Type.Union([Type.Integer(), Type.Null()]),
  expires_at: Type.Union([Type.Integer(), Type.Null()], { description: 'When the result link stops working (24 h after completion).' }),
  status: Type.Enum(['queued', 'in_progress', 'completed', 'failed']),
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  model: Type.String({ description: 'The model as the caller named it.' }),
  prompt: Type.Union([Type.String(), Type.Null()]),
  seconds: Type.String(),
  size: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([VideoError, Type.Null()]),
  remixed_from_video_id: Type.Null()
}, { description: 'An OpenAI video object.' })
export type Video = Static<typeof Video>

export const VideoParams = Type.Object({
  video_id: Type.String({ minLength: 1, maxLength: 512, description: 'The video id `POST /v1/videos` returned.' })
})

/** `?wait=` is the native long-poll (a gateway extension to OpenAI's API): one definition, the native route's. */
export const RetrieveVideoQuery = Type.Object({
  wait: TaskQuery.properties.wait
})

export const ListVideosQuery = Type.Object({
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'A video id from an earlier page: the page starts after it.' })),
  limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|100)$', examples: ['20'], description: 'Videos per page, 1–100 (default 20).' })),
  order: Type.Optional(Type.Enum(['asc', 'desc'], { description: 'By creation time; default `desc` (newest first).' }))
})

export const VideoList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Video),
  first_id: Type.Union([Type.String(), Type.Null()]),
  last_id: Type.Union([Type.String(), Type.Null()]),
  has_more: Type.Boolean()
})

export const ContentQuery = Type.Object({
  variant: Type.Optional(Type.String({ maxLength: 32, description: '`video` (default); `thumbnail` and `spritesheet` are refused (400 `unsupported_variant`).' }))
})

export const DeletedVideo = Type.Object({
  id: Type.String(),
  object: Type.Literal('video.deleted'),
  deleted: Type.Literal(true)
})
