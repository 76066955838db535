#!/usr/bin/env bash
# Run the job for this workflow event. The exit status is non-zero only when a job that was
# started failed; ignored and denied events succeed.
set -euo pipefail
exec "$HOME/.equitr-coder/bin/equitr-coder" action
