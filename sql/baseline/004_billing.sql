-- Migration 004: billing (plans, subscriptions, invoices, payment methods, usage)
--
-- Deploy : psql -X -v ON_ERROR_STOP=1 -f 004_billing.sql
-- Revert : none (baseline; restore from backup)
-- Verify : SELECT count(*) FROM pg_tables WHERE schemaname = 'platform';   -- 21
--          SELECT version FROM schema_migrations WHERE version = '004';
--
-- One transaction; records its own schema_migrations row. Amounts are integer cents.

BEGIN;

CREATE TABLE platform.billing_plans (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    price_cents       integer NOT NULL CHECK (price_cents >= 0),
    interval          text NOT NULL DEFAULT 'month' CHECK (interval IN ('month', 'year')),
    limits            jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active         boolean NOT NULL DEFAULT true
);

CREATE TABLE platform.subscriptions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    plan_id           text NOT NULL REFERENCES platform.billing_plans (id),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    canceled_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_subscriptions_organization_id ON platform.subscriptions (organization_id);

CREATE TABLE platform.invoices (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    subscription_id   uuid REFERENCES platform.subscriptions (id) ON DELETE SET NULL,
    number            text NOT NULL UNIQUE,
    status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    amount_due_cents  integer NOT NULL DEFAULT 0,
    amount_paid_cents integer NOT NULL DEFAULT 0,
    currency          text NOT NULL DEFAULT 'usd',
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    issued_at         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_invoices_organization_id ON platform.invoices (organization_id);

CREATE TABLE platform.invoice_line_items (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_id        uuid NOT NULL REFERENCES platform.invoices (id) ON DELETE CASCADE,
    description       text NOT NULL,
    quantity          numeric(14, 4) NOT NULL DEFAULT 1,
    unit_amount_cents integer NOT NULL,
    amount_cents      integer NOT NULL
);
CREATE INDEX idx_invoice_line_items_invoice_id ON platform.invoice_line_items (invoice_id);

CREATE TABLE platform.payment_methods (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    provider_ref      text NOT NULL UNIQUE,
    brand             text,
    last4             text CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month         smallint CHECK (exp_month BETWEEN 1 AND 12),
    exp_year          smallint,
    is_default        boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.usage_records (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    metric            text NOT NULL CHECK (metric IN ('db_size_bytes', 'egress_bytes', 'mau', 'storage_bytes', 'function_invocations')),
    quantity          bigint NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_usage_records_project_metric ON platform.usage_records (project_id, metric, recorded_at);

INSERT INTO platform.billing_plans (id, name, price_cents, limits) VALUES
    ('free', 'Free', 0,    '{"projects": 2, "db_size_gb": 0.5}'),
    ('pro',  'Pro',  2500, '{"projects": 10, "db_size_gb": 8}'),
    ('team', 'Team', 59900, '{"projects": 100, "db_size_gb": 100}');

INSERT INTO platform.subscriptions (organization_id, plan_id, current_period_start, current_period_end)
SELECT id, 'pro', date_trunc('month', now()), date_trunc('month', now()) + interval '1 month'
FROM platform.organizations WHERE slug = 'lancio';

INSERT INTO platform.invoices (organization_id, subscription_id, number, status, amount_due_cents, amount_paid_cents,
                               period_start, period_end, issued_at)
SELECT s.organization_id, s.id, 'LANCIO-0001', 'paid', 2500, 2500,
       s.current_period_start - interval '1 month', s.current_period_start, s.current_period_start
FROM platform.subscriptions s;

INSERT INTO platform.invoice_line_items (invoice_id, description, unit_amount_cents, amount_cents)
SELECT id, 'Pro plan', 2500, 2500 FROM platform.invoices WHERE number = 'LANCIO-0001';

INSERT INTO platform.payment_methods (organization_id, provider_ref, brand, last4, exp_month, exp_year, is_default)
SELECT id, 'pm_lancio_visa', 'visa', '4242', 12, 2030, true FROM platform.organizations WHERE slug = 'lancio';

INSERT INTO platform.usage_records (project_id, metric, quantity)
SELECT p.id, m.metric, m.quantity
FROM platform.projects p
CROSS JOIN (VALUES ('db_size_bytes', 734003200), ('egress_bytes', 1288490188), ('mau', 1840)) AS m (metric, quantity)
WHERE p.ref = 'lancio-prod';

INSERT INTO public.schema_migrations (version, description)
VALUES ('004', 'billing: plans, subscriptions, invoices, payment methods, usage');

COMMIT;
