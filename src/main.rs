//! The `equitr-coder` binary: parse the command line, capture the environment once, and hand
//! both to the library. Exit codes: 0 done, 1 the task failed or stopped, 2 usage or config.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: webhook intake allocates and frees many small JSON
/// nodes per delivery from several threads, where glibc spent a third of `serve`'s CPU
/// (`scripts/bench-intake` with perf); with mimalloc's per-thread free lists intake takes
/// about 210 instead of 330 µs of CPU per delivery (README "Benchmarks"). The price is idle RSS: 26 MB instead of 14 MB, because mimalloc
/// commits its arena eagerly on Linux; `MIMALLOC_ARENA_EAGER_COMMIT=0` in the environment
/// brings it back to 15 MB at the same throughput (it cannot be set from here: mimalloc reads
/// its options before `main`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match equitr_coder::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // A usage error is one line: clap's message up to its usage block.
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{} (see --help)", line.join(" "));
            return ExitCode::from(2);
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
