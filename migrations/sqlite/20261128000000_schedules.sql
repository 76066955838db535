-- Schedules of `.github/equitr.yml` (keep in step with the other dialect).

-- Per repository and schedule: the next slot to fire (Unix ms). A slot fires when "now" has
-- reached it; the next one is then computed from "now", so slots missed while the service was
-- down fire once, not once each. A changed cron expression starts over from its next slot.
CREATE TABLE schedules (
    repo            TEXT NOT NULL,
    name            TEXT NOT NULL,
    cron            TEXT NOT NULL,
    installation_id INTEGER NOT NULL,
    next_slot       INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
);

-- Every slot that fired and the job it queued: the key makes a slot fire once across
-- processes, and the job id ties a schedule to its spend in the ledger.
CREATE TABLE schedule_runs (
    repo     TEXT NOT NULL,
    name     TEXT NOT NULL,
    slot     INTEGER NOT NULL,
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name, slot)
);
CREATE INDEX schedule_runs_job ON schedule_runs (job_id);

-- Named leases held by one process at a time (the scheduler's tick).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
