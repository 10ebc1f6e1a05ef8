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

t.test('every change of a tenant or a key notifies its tenant id on vg_tenants, at commit', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: silent })
  const listener = new pg.Client({ connectionString: database.url })
  const writer = new pg.Client({ connectionString: database.url })
  await listener.connect()
  await writer.connect()
  t.teardown(async () => { await listener.end(); await writer.end() })
  const heard: string[] = []
  listener.on('notification', (message) => { heard.push(`${message.channel}:${message.payload ?? ''}`) })
  await listener.query('LISTEN vg_tenants')
  const roundTrip = async (): Promise<void> => { await listener.query('SELECT 1') }

  await writer.query("INSERT INTO tenants (id) VALUES ('a'), ('b')")
  await writer.query(`INSERT INTO tenant_keys (id, tenant_id, key_hash) VALUES ('key_1', 'a', 'sha256:${'1'.repeat(64)}')`)
  await writer.query("UPDATE tenant_keys SET revoked_at = now() WHERE id = 'key_1'")
  // last_used_at alone is no change the gateways hold: no notification
  await writer.query("UPDATE tenant_keys SET last_used_at = now() WHERE id = 'key_1'")
  await writer.query("UPDATE tenant_keys SET tenant_id = 'b' WHERE id = 'key_1'")
  await writer.query("UPDATE tenants SET disabled = true WHERE id = 'b'")
  await writer.query('BEGIN')
  await writer.query("DELETE FROM tenants WHERE id = 'a'")
  await writer.query('ROLLBACK')
  await writer.query("DELETE FROM tenant_keys WHERE id = 'key_1'")
  await roundTrip()
  t.same(heard, [
    'vg_tenants:a', 'vg_tenants:b', // two inserts
    'vg_tenants:a', // the key
    'vg_tenants:a', // revoked
    'vg_tenants:a', 'vg_tenants:b', // moved from a to b: both
    'vg_tenants:b', // disabled
    // the rolled-back delete said nothing
    'vg_tenants:b' // the key deleted
  ])
})
