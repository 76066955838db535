//! `equitr-coder chat [-M] TASK`: one task on the working tree in place.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{fail, load_config, render, ChatArgs, RunFlags, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::agent::{Orchestrator, Toolchain};

/// Build the orchestrator a local run uses, or the exit code of why not.
pub(crate) async fn build(
    config_flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: &RunFlags,
) -> Result<Orchestrator, u8> {
    let config =
        load_config(config_flag, env, &flags.overrides()).map_err(|e| fail(EXIT_USAGE, e))?;
    if !flags.repo.is_dir() {
        return Err(fail(
            EXIT_USAGE,
            format!("--repo {}: not a directory", flags.repo.display()),
        ));
    }
    Orchestrator::builder(config, &flags.repo)
        .sink(Arc::new(render::Progress {
            verbose: flags.verbose,
        }))
        // The local user's own config may say `sandbox: none`.
        .allow_unsandboxed(true)
        .toolchain(
            env.get("HOME")
                .map(|h| Toolchain::detect_rust(Path::new(h)))
                .unwrap_or_default(),
        )
        .build()
        .await
        .map_err(|e| fail(EXIT_USAGE, format!("{e:#}")))
}

pub async fn run(config_flag: Option<&Path>, env: &BTreeMap<String, String>, args: ChatArgs) -> u8 {
    let task = args.task.join(" ");
    if args.task.is_empty() {
        return super::interactive::run(config_flag, env, args.flags).await;
    }
    if task.trim().is_empty() {
        return fail(EXIT_USAGE, "the task is empty");
    }
    let mut orch = match build(config_flag, env, &args.flags).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    eprintln!("equitr-coder: {}", render::mode(&orch));
    if let Some(m) = orch.toolbox().sandbox_status().message() {
        eprintln!("warning: {m}");
    }
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    match orch.run_cancellable(&task, cancel).await {
        Ok(result) => {
            print!("{}", render::result(&result));
            if result.outcome.is_done() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}
