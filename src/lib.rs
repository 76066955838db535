//! equitr-coder: a cheap worker model does the work, a strong supervisor model plans,
//! answers `ask_supervisor` and reviews critical changes. Every model call is priced and
//! budgeted before it is made.
//!
//! Dependencies point one way: `cli`, `server`, `action` → `jobs` → `agent` → `llm`, `tools`
//! → the leaves (`config`, `github`, `store`, `money`, `commands`, `clock`, `scrub`), which
//! use only each other. `tests/shape.rs` checks it.

pub mod action;
pub mod agent;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod github;
pub mod jobs;
pub mod llm;
pub mod money;
pub mod scrub;
pub mod server;
pub mod store;
pub mod tools;
