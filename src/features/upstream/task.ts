import { Compile } from 'typebox/compile'
import { gatewayError } from '../../errors/table.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'

const taskCheck = Compile(VideoGenerationTask)

/**
 * Checks that an upstream 2xx body has the task shape before it is given to
 * the caller, so that garbage maps to bad_upstream_response instead of a
 * broken answer (or a serializer failure). Unknown fields pass through.
 */
export function readUpstreamTask (body: Record<string, unknown>): VideoGenerationTask {
  if (!taskCheck.Check(body)) {
    const issue = taskCheck.Errors(body)[0]
    throw gatewayError('bad_upstream_response', { cause: new Error(`upstream task body does not match VideoGenerationTask: ${issue?.instancePath ?? ''} ${issue?.message ?? ''}`) })
  }
  return body
}
