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
-- Covering: the month's spend per repository, and the daily spend, are read from the index
-- alone.
CREATE INDEX ledger_month_repo ON ledger (month, repo, state, installation_id, cost_picos, reserved_picos);
CREATE INDEX ledger_settled ON ledger (state, settled_at, repo, role, model, cost_picos, input_tokens,
    cached_input_tokens, cache_write_tokens, output_tokens);
CREATE INDEX ledger_expired ON ledger (created_at) WHERE state = 'expired';
