//! `EQUITR-coder`: the command name the multi-agent guide uses, the same program as
//! `equitr-coder` (installed beside it by `cargo install`).

include!("../entry.rs");
