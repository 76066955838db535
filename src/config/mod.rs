//! CLI / server configuration.
