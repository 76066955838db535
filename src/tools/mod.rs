//! Tools the agents use, confined to the workspace.
