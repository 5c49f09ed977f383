-- Jobs, their invoices and the bookkeeping around them. Times are Unix
-- milliseconds so that one set of queries serves SQLite and Postgres.
CREATE TABLE jobs (
    id                     TEXT PRIMARY KEY,
    request                TEXT    NOT NULL,
    state                  TEXT    NOT NULL,
    eval_model             TEXT    NOT NULL DEFAULT '',
    reason                 TEXT    NOT NULL DEFAULT '',
    result                 TEXT,
    error_message          TEXT    NOT NULL DEFAULT '',
    evaluated_at           INTEGER,
    quote_model            TEXT,
    quote_input_tokens     INTEGER,
    quote_output_tokens    INTEGER,
    quote_cost_usd         REAL,
    quote_infra_usd        REAL,
    quote_margin_pct       REAL,
    quote_btc_price_usd    REAL,
    quote_btc_price_source TEXT,
    quote_amount_sats      INTEGER,
    ledger_model           TEXT,
    ledger_input_tokens    INTEGER,
    ledger_output_tokens   INTEGER,
    ledger_cost_usd        REAL,
    ledger_charged_sats    INTEGER,
    ledger_btc_price_usd   REAL,
    refund_owed_sats       INTEGER NOT NULL DEFAULT 0,
    refund_paid_sats       INTEGER NOT NULL DEFAULT 0,
    refund_pending_sats    INTEGER NOT NULL DEFAULT 0,
    refund_state           TEXT,
    refund_payment_request TEXT,
    refund_payment_hash    TEXT,
    refund_failure_reason  TEXT    NOT NULL DEFAULT '',
    lease_owner            TEXT,
    lease_until            INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX jobs_claimable ON jobs (state, lease_until);
CREATE INDEX jobs_refund_pending ON jobs (refund_state);

CREATE TABLE invoices (
    payment_hash    TEXT PRIMARY KEY,
    job_id          TEXT    NOT NULL REFERENCES jobs (id),
    kind            TEXT    NOT NULL,
    payment_request TEXT    NOT NULL,
    amount_sats     INTEGER NOT NULL CHECK (amount_sats > 0),
    status          TEXT    NOT NULL,
    hold            INTEGER NOT NULL,
    preimage        TEXT,
    resolved        INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL,
    paid_at         INTEGER,
    created_at      INTEGER NOT NULL,
    UNIQUE (job_id, kind)
);
CREATE INDEX invoices_unresolved ON invoices (created_at) WHERE resolved = 0;

-- Every state change, for audits and for proving each happened once.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id);

CREATE TABLE demo_usage (
    client       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    calls        INTEGER NOT NULL,
    PRIMARY KEY (client, window_start)
);

-- The stub Lightning backend's own invoices, so a restart loses nothing.
CREATE TABLE stub_invoices (
    payment_hash    TEXT PRIMARY KEY,
    payment_request TEXT    NOT NULL,
    amount_sats     INTEGER NOT NULL,
    preimage        TEXT    NOT NULL,
    hold            INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Resume points of backend subscriptions, such as lnd's settle_index.
CREATE TABLE cursors (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
