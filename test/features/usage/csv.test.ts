import t from 'tap'
import { csvField, csvLine, ledgerCsvLine } from '../../../src/features/usage/csv.ts'

t.test('RFC 4180: a field is quoted only when it holds a quote, a comma, CR or LF; quotes are doubled', async (t) => {
  t.equal(csvField('plain-id_1.2@x:y'), 'plain-id_1.2@x:y')
  t.equal(csvField('a,b'), '"a,b"')
  t.equal(csvField('say "hi"'), '"say ""hi"""')
  t.equal(csvField('two\nlines'), '"two\nlines"')
  t.equal(csvField('cr\r'), '"cr\r"')
  t.equal(csvField(null), '', 'unknown: empty')
  t.equal(csvField(0), '0')
  t.equal(csvLine(['a', null, 'b,c', 12]), 'a,,"b,c",12\r\n', 'CRLF line end')
})

t.test('a ledger row in the header\'s column order', async (t) => {
  t.equal(ledgerCsvLine({
    taskId: 'task-1.tag',
    upstreamTaskId: 'task-1',
    tenantId: 'acme',
    endUser: null,
    model: 'veo-3.1-fast-generate-preview',
    videoSeconds: 8,
    creditsEstimated: '19.200',
    creditsSettled: null,
    status: 'created',
    createdAt: '2026-06-15T12:00:00.000Z',
    finishedAt: null
  }), 'task-1.tag,task-1,acme,,veo-3.1-fast-generate-preview,8,19.200,,created,2026-06-15T12:00:00.000Z,\r\n')
})
