-- Up Migration
-- Database mode (DATABASE_URL): the tenants, their keys and the admin audit log.
-- Every gateway holds all of this in memory (no query on the request path); the
-- triggers below NOTIFY them of each change in the transaction that makes it.

CREATE TABLE tenants (
  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  -- A tenants-file entry without `id` and `keys` (src/schemas/tenants.ts TenantDefinition),
  -- validated by the gateway with the same schema before it is written.
  settings jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
  -- A disabled tenant keeps its rows, but none of its keys is accepted.
  disabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_keys (
  id text PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- `sha256:<hex>` of the key: the key itself is shown once, at creation, and never stored.
  key_hash text NOT NULL UNIQUE CHECK (key_hash ~ '^sha256:[0-9a-f]{64}$'),
  -- The key's first characters (`vgk_ab12`), to recognise it; NULL for a key imported as a bare hash.
  prefix text,
  label text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  -- Written in batches, at most once a minute per key, off the request path.
  last_used_at timestamptz
);
CREATE INDEX tenant_keys_tenant_id ON tenant_keys (tenant_id);

CREATE TABLE admin_audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  -- Which admin token: the start of its hash (`sha256:1a2b3c4d`), never the token.
  actor text NOT NULL,
  action text NOT NULL,
  -- No foreign key: the audit of a deleted tenant stays.
  tenant_id text,
  key_id text,
  before jsonb,
  after jsonb,
  request_id text
);
CREATE INDEX admin_audit_tenant_id ON admin_audit (tenant_id, id);

-- Append-only: rows are never changed or removed, not even by a mistaken query.
CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'admin_audit is append-only';
END;
$$;
CREATE TRIGGER admin_audit_no_update BEFORE UPDATE OR DELETE ON admin_audit
  FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
  FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

-- Every change of a tenant or a key tells every gateway which tenant to reload: pg_notify in a
-- trigger is delivered when (and only if) the transaction commits, so a pushed change is never
-- one that was rolled back, and a change made by hand in psql reaches the gateways too.
CREATE FUNCTION vg_notify_tenant_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed text;
BEGIN
  -- (Nested IFs: PL/pgSQL does not promise to short-circuit, and OLD/NEW lack the other table's columns.)
  IF TG_TABLE_NAME = 'tenants' THEN
    IF TG_OP = 'DELETE' THEN
      changed := OLD.id;
    ELSE
      changed := NEW.id;
    END IF;
  ELSE
    IF TG_OP = 'DELETE' THEN
      changed := OLD.tenant_id;
    ELSE
      changed := NEW.tenant_id;
      IF TG_OP = 'UPDATE' THEN
        IF OLD.tenant_id <> NEW.tenant_id THEN
          PERFORM pg_notify('vg_tenants', OLD.tenant_id);
        END IF;
      END IF;
    END IF;
  END IF;
  PERFORM pg_notify('vg_tenants', changed);
  RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
  FOR EACH ROW EXECUTE FUNCTION vg_notify_tenant_change();
-- last_used_at alone changes nothing the gateways hold: no notification for it.
CREATE TRIGGER tenant_keys_notify AFTER INSERT OR DELETE ON tenant_keys
  FOR EACH ROW EXECUTE FUNCTION vg_notify_tenant_change();
CREATE TRIGGER tenant_keys_notify_update AFTER UPDATE OF tenant_id, key_hash, expires_at, revoked_at ON tenant_keys
  FOR EACH ROW EXECUTE FUNCTION vg_notify_tenant_change();

-- Down Migration
DROP TABLE IF EXISTS admin_audit;
DROP FUNCTION IF EXISTS admin_audit_append_only();
DROP TABLE IF EXISTS tenant_keys;
DROP TABLE IF EXISTS tenants;
DROP FUNCTION IF EXISTS vg_notify_tenant_change();
