//! Test support shared by the integration tests; each test crate uses a part of it.
#![allow(dead_code)]

pub mod browser;
pub mod db;
pub mod github;
pub mod harness;
pub mod llm_server;
pub mod repo;
