//! The orchestrator: worker loop, supervisor, escalation, gate.
