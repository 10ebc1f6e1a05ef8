-- Up Migration
-- Database mode's usage ledger: one row per task the upstream created for a tenant, written
-- by the gateways in batches off the request path (src/features/usage/ledger.ts) and settled
-- in place when the gateway sees the task finish. Rows may arrive in any order (a create's
-- entry claimed from a dead gateway after its task's finish): every column is filled by
-- whichever event knows it, never overwritten once set (the upsert's COALESCEs).

CREATE TABLE usage_ledger (
  -- The upstream's id: stable, unlike the tenant-scoped id (which a GATEWAY_SECRET rotation re-signs).
  upstream_task_id text PRIMARY KEY,
  -- No foreign key: the billing rows of a deleted tenant stay.
  tenant_id text NOT NULL,
  -- The id the tenant was answered (NULL only until the create's event is written).
  task_id text,
  -- The browser token's end user who created it, if one did.
  end_user text,
  model text,
  video_seconds integer,
  -- Charged at create: the upstream's usage.credits_reserved, or the gateway's estimate when it said none.
  credits_estimated numeric(16, 3),
  -- Charged at the end: the task's final usage when it reports one, else the create's charge.
  credits_settled numeric(16, 3),
  status text NOT NULL CHECK (status IN ('created', 'completed', 'failed')),
  -- When the create was admitted, and when the gateway first saw the task finished.
  created_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX usage_ledger_tenant_created ON usage_ledger (tenant_id, created_at, upstream_task_id);
CREATE INDEX usage_ledger_tenant_finished ON usage_ledger (tenant_id, finished_at) WHERE finished_at IS NOT NULL;

-- Down Migration
DROP TABLE IF EXISTS usage_ledger;
