import type { FastifyRequest } from 'fastify'
import type { FaultKind } from './faults.ts'
import type { SimulatorRoute } from './types.ts'

/** One call to an upstream route, as the simulator received it. */
export interface CallRecord {
  /** Clock time (ms) it arrived. */
  at: number
  route: SimulatorRoute
  method: string
  /** Path with query string, as received. */
  path: string
  /** The Authorization header exactly as received (undefined if absent). */
  authorization: string | undefined
  headers: Record<string, string | string[] | undefined>
  /** Parsed create body, once read (create calls that got that far). */
  body?: unknown
  /** The fault applied to this call, if any. */
  fault?: FaultKind
}

/** Live counters (every call, faulted or not) and the most recent calls, oldest first. */
export interface SimulatorCalls {
  create: number
  task: number
  file: number
  upload: number
  log: CallRecord[]
}

export const CALL_LOG_LIMIT = 200

const records = new WeakMap<FastifyRequest, CallRecord>()

export function createCalls (): SimulatorCalls {
  return { create: 0, task: 0, file: 0, upload: 0, log: [] }
}

export function resetCalls (calls: SimulatorCalls): void {
  calls.create = 0
  calls.task = 0
  calls.file = 0
  calls.upload = 0
  calls.log.length = 0
}

export function recordCall (calls: SimulatorCalls, route: SimulatorRoute, request: FastifyRequest, at: number): CallRecord {
  calls[route] += 1
  const record: CallRecord = {
    at,
    route,
    method: request.method,
    path: request.url,
    authorization: request.headers.authorization,
    headers: { ...request.headers }
  }
  calls.log.push(record)
  if (calls.log.length > CALL_LOG_LIMIT) calls.log.splice(0, calls.log.length - CALL_LOG_LIMIT)
  records.set(request, record)
  return record
}

/** The record made for this request by recordCall, if any. */
export function callRecordOf (request: FastifyRequest): CallRecord | undefined {
  return records.get(request)
}
