import t from 'tap'
import { editDistance, findUnknownSettings, unknownSettingMessage } from '../../src/config/unknown-settings.ts'

t.test('editDistance', async t => {
  t.equal(editDistance('LOG_LEVL', 'LOG_LEVEL'), 1)
  t.equal(editDistance('kitten', 'sitting'), 3)
  t.equal(editDistance('', 'abc'), 3)
  t.equal(editDistance('PORT', 'PORT'), 0)
})

t.test('typos of known names get a suggestion; known names, system variables and far names are quiet', async t => {
  const found = findUnknownSettings({ LOG_LEVL: 'debug', LOG_LEVEL: 'info', PROT: '1', HOME: '/root', PATH: '/bin', NODE_ENV: 'production', GATEWAY_SECRT: 'x', SHELL: '/bin/sh' })
  t.same(found, [
    { name: 'GATEWAY_SECRT', suggestion: 'GATEWAY_SECRET' },
    { name: 'LOG_LEVL', suggestion: 'LOG_LEVEL' }
  ], 'PROT is 2 edits from PORT: too far for a 4-letter name')
  t.equal(unknownSettingMessage(found[1]!), 'unknown setting LOG_LEVL: did you mean LOG_LEVEL?')
})

t.test('a known prefix with an unknown rest is reported without a suggestion', async t => {
  const found = findUnknownSettings({ REDIS_HOSTNAME: 'x', SIMULATOR_SPEED: '2', WEBHOOK_SECRET: 's' })
  t.same(found, [
    { name: 'REDIS_HOSTNAME', suggestion: null },
    { name: 'SIMULATOR_SPEED', suggestion: null },
    { name: 'WEBHOOK_SECRET', suggestion: null }
  ])
  t.equal(unknownSettingMessage(found[0]!), 'unknown setting REDIS_HOSTNAME: not a video-gateway variable (see .env.example)')
})

t.test('the OpenTelemetry SDK\'s own OTEL_* variables are quiet; a typo of the gateway\'s is not', async t => {
  const found = findUnknownSettings({ OTEL_EXPORTER_OTLP_HEADERS: 'a=b', OTEL_RESOURCE_ATTRIBUTES: 'x=y', OTEL_TRACES_SAMPLER: 'always_on', OTEL_EXPORTER_OTLP_ENDPONT: 'http://c:4318' })
  t.same(found, [{ name: 'OTEL_EXPORTER_OTLP_ENDPONT', suggestion: 'OTEL_EXPORTER_OTLP_ENDPOINT' }])
})
