import os from 'node:os'
import { readFileSync } from 'node:fs'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { timed } from '../../root/health.ts'

const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
const tags = ['health']

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/', {
    config: { public: true },
    schema: {
      operationId: 'getHealth',
      tags,
      summary: 'Service status',
      description: 'Public: version, MODE, API_MODE and uptime; checks no dependency.',
      response: { 200: Envelope(Type.Object({ status: Type.Literal('ok'), version: Type.String(), mode: Type.String(), api_mode: Type.String(), uptime_seconds: Type.Number() })) }
    }
  }, async (_request, reply) => reply.ok({
    status: 'ok' as const,
    version,
    mode: fastify.config.MODE,
    api_mode: fastify.config.API_MODE,
    uptime_seconds: Math.round(process.uptime())
  }))

  fastify.get('/database', {
    config: { public: true },
    schema: {
      operationId: 'getDatabaseHealth',
      tags,
      summary: 'Database reachability and latency',
      description: 'Public: one round trip to the database (503 when it does not answer within 2 s), the driver and the pool size.',
      response: { 200: Envelope(Type.Object({ status: Type.Literal('up'), latency_ms: Type.Number(), driver: Type.String(), pool_max: Type.Integer() })) }
    }
  }, async (_request, reply) => {
    const check = await timed(() => fastify.database.ping())
    if (check.status === 'down') throw new AppError('SERVICE_UNAVAILABLE', { details: { database: check } })
    const stats = fastify.database.stats()
    return reply.ok({ status: 'up' as const, latency_ms: check.latency_ms, driver: stats.driver, pool_max: stats.poolMax })
  })

  fastify.get('/system', {
    config: { permissions: ['view_system_health'] },
    schema: {
      operationId: 'getSystemHealth',
      tags,
      summary: 'Host and process details',
      response: {
        200: Envelope(Type.Object({
          hostname: Type.String(),
          platform: Type.String(),
          node_version: Type.String(),
          cpus: Type.Integer(),
          load_average: Type.Array(Type.Number()),
          memory: Type.Object({ total_bytes: Type.Number(), free_bytes: Type.Number(), rss_bytes: Type.Number(), heap_used_bytes: Type.Number() }),
          uptime_seconds: Type.Number(),
          cache: Type.String(),
          database: Type.String()
        }))
      }
    }
  }, async (_request, reply) => {
    const mem = process.memoryUsage()
    return reply.ok({
      hostname: os.hostname(),
      platform: `${os.platform()} ${os.release()}`,
      node_version: process.version,
      cpus: os.availableParallelism(),
      load_average: os.loadavg(),
      memory: { total_bytes: os.totalmem(), free_bytes: os.freemem(), rss_bytes: mem.rss, heap_used_bytes: mem.heapUsed },
      uptime_seconds: Math.round(process.uptime()),
      cache: fastify.store.kind,
      database: fastify.database.driver
    })
  })

  fastify.post('/test-sentry', {
    config: { permissions: ['test_sentry'] },
    schema: { operationId: 'sendTestErrorReport', tags, summary: 'Send a test event to the error reporter', response: { 200: Envelope(Type.Object({ reported: Type.Boolean() })) } }
  }, async (request, reply) => {
    fastify.reportError(new Error('Test event from P/health/test-sentry'), request)
    return reply.ok({ reported: Boolean(fastify.config.SENTRY_DSN) })
  })
}

export default health
