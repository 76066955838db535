-- The durable store of `equitr-coder serve` (SQLite dialect; keep in step with
-- migrations/postgres). Times are Unix milliseconds and money is integer picodollars, as
-- INTEGER in both dialects so that the Rust side decodes one type everywhere. JSON is stored
-- as TEXT: the store never looks inside payloads.

-- One row per accepted webhook delivery: the primary key is what makes redelivery idempotent.
CREATE TABLE deliveries (
    delivery_id     TEXT PRIMARY KEY NOT NULL,
    event           TEXT NOT NULL,
    action          TEXT,
    repo            TEXT,
    installation_id INTEGER,
    received_at     INTEGER NOT NULL
);

-- The job queue. AUTOINCREMENT so that an id is never reused: ids appear in comment markers.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT REFERENCES deliveries (delivery_id),
    kind             TEXT NOT NULL,
    repo             TEXT NOT NULL,
    installation_id  INTEGER NOT NULL,
    payload          TEXT NOT NULL,
    dedupe_key       TEXT,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    result           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX jobs_state_id ON jobs (state, id);
-- At most one live job per dedupe key; finished jobs free the key.
CREATE UNIQUE INDEX jobs_live_dedupe_key ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

-- Each job's transcript, in insertion order.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- One row per model call. What a row counts against the caps: `reserved_picos` while
-- 'reserved', `cost_picos` once 'settled' or 'expired' (an orphaned reservation, counted at its
-- reserved amount), nothing once 'released'.
CREATE TABLE ledger (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id              INTEGER NOT NULL REFERENCES jobs (id),
    repo                TEXT NOT NULL,
    installation_id     INTEGER NOT NULL,
    month               TEXT NOT NULL,
    role                TEXT NOT NULL,
    model               TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'released', 'expired')),
    reserved_picos      INTEGER NOT NULL CHECK (reserved_picos >= 0),
    cost_picos          INTEGER NOT NULL DEFAULT 0 CHECK (cost_picos >= 0),
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    settled_at          INTEGER
);
CREATE INDEX ledger_installation_month ON ledger (installation_id, month);
CREATE INDEX ledger_repo_month ON ledger (repo, month);
CREATE INDEX ledger_job ON ledger (job_id);
