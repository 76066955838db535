//! `equitr-coder chat [-M] TASK`: one task on the working tree in place.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::{Display, Progress};
use super::{fail, load_config, render, ChatArgs, RunFlags, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::agent::{Orchestrator, Toolchain};

/// A local run's orchestrator, its progress display and the line that names its mode.
pub(crate) struct Local {
    pub orch: Orchestrator,
    pub progress: Arc<Progress>,
    pub mode: String,
}

/// Build the orchestrator a local run uses, or the exit code of why not.
pub(crate) async fn build(
    config_flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: &RunFlags,
) -> Result<Local, u8> {
    let config =
        load_config(config_flag, env, &flags.overrides()).map_err(|e| fail(EXIT_USAGE, e))?;
    let progress = Arc::new(Progress::new(
        flags.verbose,
        config.orchestrator.max_iterations,
        Display::detect(env),
    ));
    if !flags.repo.is_dir() {
        return Err(fail(
            EXIT_USAGE,
            format!("--repo {}: not a directory", flags.repo.display()),
        ));
    }
    let held = config.clone();
    let orch = Orchestrator::builder(config, &flags.repo)
        .sink(progress.clone())
        // The local user's own config may say `sandbox: none`.
        .allow_unsandboxed(true)
        .toolchain(
            env.get("HOME")
                .map(|h| Toolchain::detect_rust(Path::new(h)))
                .unwrap_or_default(),
        )
        .build()
        .await
        .map_err(|e| fail(EXIT_USAGE, format!("{e:#}")))?;
    let mode = render::mode(&orch, &held);
    Ok(Local {
        orch,
        progress,
        mode,
    })
}

pub async fn run(config_flag: Option<&Path>, env: &BTreeMap<String, String>, args: ChatArgs) -> u8 {
    let task = args.task.join(" ");
    if args.task.is_empty() {
        return super::interactive::run(config_flag, env, args.flags).await;
    }
    if task.trim().is_empty() {
        return fail(EXIT_USAGE, "the task is empty");
    }
    let Local {
        mut orch,
        progress,
        mode,
    } = match build(config_flag, env, &args.flags).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    eprintln!("equitr-coder: {mode}");
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
    progress.begin();
    let result = orch.run_cancellable(&task, cancel).await;
    progress.end();
    match result {
        Ok(result) => {
            out_raw!("{}", render::result(&result));
            if result.outcome.is_done() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}
