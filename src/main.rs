//! The `equitr-coder` binary: parse the command line, capture the environment once, and hand
//! both to the library. Exit codes: 0 done, 1 the task failed or stopped, 2 usage or config.

include!("entry.rs");
