-- The operator's dashboard (keep in step with the other dialect): the cap each repository's
-- latest job ran under (its `.github/equitr.yml` lives on GitHub), and the indexes its
-- pages read by — jobs by creation time and per repository and kind, newest first, and
-- settled spend by day.
CREATE TABLE repo_caps (
    repo              TEXT PRIMARY KEY NOT NULL,
    monthly_cap_picos BIGINT,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_repo_id ON jobs (repo, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);
-- Covering: the month's spend per repository is read from the index alone.
CREATE INDEX ledger_month_repo ON ledger (month, repo, state, installation_id, cost_picos, reserved_picos);

-- Daily spend, kept as the ledger changes (by a trigger, so every path that writes the ledger
-- counts): per repository, day (UTC, days since 1970, of `settled_at`), role and model, what
-- settled and expired rows cost and their tokens. The spend page reads 90 days of it instead of
-- aggregating the ledger on every view.
CREATE TABLE ledger_days (
    repo                TEXT NOT NULL,
    day                 BIGINT NOT NULL,
    role                TEXT NOT NULL,
    model               TEXT NOT NULL,
    cost_picos          BIGINT NOT NULL DEFAULT 0,
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    cached_input_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, day, role, model)
);
CREATE INDEX ledger_days_day ON ledger_days (day);
INSERT INTO ledger_days (repo, day, role, model, cost_picos, input_tokens, cached_input_tokens,
    cache_write_tokens, output_tokens)
SELECT repo, COALESCE(settled_at, created_at) / 86400000, role, model, SUM(cost_picos),
    SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(output_tokens)
FROM ledger WHERE state IN ('settled', 'expired')
GROUP BY repo, COALESCE(settled_at, created_at) / 86400000, role, model;

CREATE FUNCTION ledger_days_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state IN ('settled', 'expired') THEN
        UPDATE ledger_days SET
            cost_picos = ledger_days.cost_picos - OLD.cost_picos,
            input_tokens = ledger_days.input_tokens - OLD.input_tokens,
            cached_input_tokens = ledger_days.cached_input_tokens - OLD.cached_input_tokens,
            cache_write_tokens = ledger_days.cache_write_tokens - OLD.cache_write_tokens,
            output_tokens = ledger_days.output_tokens - OLD.output_tokens
        WHERE repo = OLD.repo AND day = COALESCE(OLD.settled_at, OLD.created_at) / 86400000
            AND role = OLD.role AND model = OLD.model;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.state IN ('settled', 'expired') THEN
        INSERT INTO ledger_days (repo, day, role, model, cost_picos, input_tokens,
            cached_input_tokens, cache_write_tokens, output_tokens)
        VALUES (NEW.repo, COALESCE(NEW.settled_at, NEW.created_at) / 86400000, NEW.role,
            NEW.model, NEW.cost_picos, NEW.input_tokens, NEW.cached_input_tokens,
            NEW.cache_write_tokens, NEW.output_tokens)
        ON CONFLICT (repo, day, role, model) DO UPDATE SET
            cost_picos = ledger_days.cost_picos + EXCLUDED.cost_picos,
            input_tokens = ledger_days.input_tokens + EXCLUDED.input_tokens,
            cached_input_tokens = ledger_days.cached_input_tokens + EXCLUDED.cached_input_tokens,
            cache_write_tokens = ledger_days.cache_write_tokens + EXCLUDED.cache_write_tokens,
            output_tokens = ledger_days.output_tokens + EXCLUDED.output_tokens;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_days AFTER INSERT OR UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_days_apply();

-- Fair claims (src/store/claim.rs): an installation's oldest runnable job, and its running
-- jobs, by index.
CREATE INDEX jobs_installation_id ON jobs (installation_id, id);
CREATE INDEX jobs_running_installation ON jobs (installation_id) WHERE state = 'running';
-- When the latest attempt was claimed: how long a job waited in the queue.
ALTER TABLE jobs ADD COLUMN claimed_at BIGINT;
