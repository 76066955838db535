//! The `equitr-coder` binary: parse the command line, capture the environment once, and hand
//! both to the library. Exit codes: 0 done, 1 the task failed or stopped, 2 usage or config.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match equitr_coder::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with success, usage errors with code 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(equitr_coder::cli::main(cli, env));
    ExitCode::from(code)
}
