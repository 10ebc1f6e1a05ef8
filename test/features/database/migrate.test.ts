import t from 'tap'
import pg from 'pg'
import { runMigrations } from '../../../src/features/database/migrate.ts'
import { postgresForTests } from '../../helpers/postgres.ts'

const silent = { info () {}, warn () {}, error () {} }

t.test('two migration runs at once (two replicas starting together): both succeed, the schema is made once', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)

  const [first, second] = await Promise.all([
    runMigrations({ databaseUrl: database.url, log: silent }),
    runMigrations({ databaseUrl: database.url, log: silent })
  ])
  // One of them applied everything; the other waited on the advisory lock and found nothing left.
  t.same([first, second].map((applied) => applied.length).sort(), [0, 2])
  t.same([...first, ...second], ['1765100000000_tenants-keys-audit', '1765200000000_usage-ledger'])

  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  t.teardown(async () => { await client.end() })
  const runs = await client.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id')
  t.same(runs.rows.map((row) => row.name), ['1765100000000_tenants-keys-audit', '1765200000000_usage-ledger'])
  const tables = await client.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")
  t.same(tables.rows.map((row) => row.table_name), ['admin_audit', 'pgmigrations', 'tenant_keys', 'tenants', 'usage_ledger'])

  // A third run (a restart) changes nothing.
  t.same(await runMigrations({ databaseUrl: database.url, log: silent }), [])
})

t.test('the audit log is append-only, whoever writes to it', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: silent })
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  t.teardown(async () => { await client.end() })
  await client.query("INSERT INTO admin_audit (actor, action) VALUES ('sha256:12345678', 'tenant.create')")
  await t.rejects(client.query('UPDATE admin_audit SET action = $1', ['tenant.delete']), { message: 'admin_audit is append-only' })
  await t.rejects(client.query('DELETE FROM admin_audit'), { message: 'admin_audit is append-only' })
  await t.rejects(client.query('TRUNCATE admin_audit'), { message: 'admin_audit is append-only' })
  t.equal((await client.query('SELECT count(*)::int AS n FROM admin_audit')).rows[0].n, 1)
})
