-- One job per thread at a time (keep in step with the other dialect). `thread` names the
-- issue or pull request a job works on (`owner/repo#12`) or a schedule's branch
-- (`owner/repo@refactor-name`); a queued job is not claimed while another job of its thread
-- runs with a live lease. NULL: a job of no thread.
ALTER TABLE jobs ADD COLUMN thread TEXT;
CREATE INDEX jobs_running_thread ON jobs (thread) WHERE state = 'running';
