// The body of both binaries, `equitr-coder` and the guide's `EQUITR-coder` (included by
// `src/main.rs` and `src/bin/EQUITR-coder.rs`; an included file has no inner doc comments).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: webhook intake allocates and frees many small objects
/// per delivery from several threads, where glibc spent a third of `serve`'s CPU
/// (`scripts/bench-intake` with perf). For its idle memory see `no_transparent_huge_pages`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its arenas eagerly and marks them `MADV_HUGEPAGE`, so on a kernel with
/// transparent huge pages in `madvise` (or `always`) mode every touched arena region costs
/// resident memory 2 MiB at a time: `serve` idled at 26-31 MB instead of 18 MB. Turning THP
/// off for this process (`PR_SET_THP_DISABLE`; child processes such as git inherit it, which
/// does them no harm) keeps small pages at no measurable throughput cost (README
/// "Benchmarks"). It must happen before the first allocation — mimalloc's constructor and
/// Rust's runtime allocate before `main` — so it runs from `.preinit_array`, ahead of every
/// constructor of the executable (mimalloc's own switch, `MIMALLOC_ALLOW_THP=0`, is an
/// environment variable read in its constructor). Best effort: on failure the process only
/// uses more memory.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".preinit_array"]
static NO_TRANSPARENT_HUGE_PAGES: extern "C" fn() = no_transparent_huge_pages;

#[cfg(target_os = "linux")]
extern "C" fn no_transparent_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and touches no memory
    // of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

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
