-- Retention (src/store/prune.rs; keep in step with the other dialect). Deliveries are kept for
-- the redelivery window, jobs' transcripts for the job retention, the ledger for the months
-- that are reported; old rows are deleted in small batches.

-- The oldest deliveries first.
CREATE INDEX deliveries_received ON deliveries (received_at);
-- A delivery's jobs: deleting a delivery looks for rows that still name it (the foreign key),
-- which without this index reads the whole jobs table once per delivery.
CREATE INDEX jobs_delivery ON jobs (delivery_id);
-- When a finished job's transcript and payload were pruned; the row stays while ledger rows
-- of a reported month point at it.
ALTER TABLE jobs ADD COLUMN pruned_at BIGINT;
-- Finished jobs not yet pruned, oldest first (a job enters it when it finishes).
CREATE INDEX jobs_finished_unpruned ON jobs (finished_at)
    WHERE finished_at IS NOT NULL AND pruned_at IS NULL;
