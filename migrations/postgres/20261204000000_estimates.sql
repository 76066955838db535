-- A job's cost estimate, made before its first model call (keep in step with the other
-- dialect). `/equitr cost` compares it with what the job's ledger rows really cost.
CREATE TABLE estimates (
    job_id     BIGINT PRIMARY KEY REFERENCES jobs (id),
    repo       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    low_picos  BIGINT NOT NULL CHECK (low_picos >= 0),
    high_picos BIGINT NOT NULL CHECK (high_picos >= 0)
);
CREATE INDEX estimates_repo_kind ON estimates (repo, kind);
