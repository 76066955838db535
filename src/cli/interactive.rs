//! `equitr-coder interactive [-M]`: a REPL. Each line is a task in one continuing
//! conversation; Ctrl-C cancels the running task, not the session.

use std::collections::BTreeMap;
use std::path::Path;

use rustyline::error::ReadlineError;
use tokio_util::sync::CancellationToken;

use super::{chat, render, RunFlags, EXIT_OK};

const HELP: &str = "Type a task and press Enter. Commands:\n  /cost   what this session has spent, per role\n  /help   this text\n  /exit   leave (Ctrl-D too)\nCtrl-C while a task runs cancels that task; the session goes on.";

enum Input {
    Line(String),
    Interrupted,
    Eof,
}

pub async fn run(
    config_flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: RunFlags,
) -> u8 {
    let chat::Local {
        mut orch,
        progress,
        mode,
    } = match chat::build(config_flag, env, &flags).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let history = env
        .get("HOME")
        .map(|h| Path::new(h).join(".equitr").join("history"));
    // rustyline blocks, so the editor lives on its own thread and lines come over a channel.
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<()>();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<Input>();
    let history_path = history.clone();
    std::thread::spawn(move || {
        let Ok(mut editor) = rustyline::DefaultEditor::new() else {
            let _ = line_tx.send(Input::Eof);
            return;
        };
        if let Some(p) = &history_path {
            let _ = editor.load_history(p);
        }
        while ask_rx.recv().is_ok() {
            let input = match editor.readline("equitr> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(p) = &history_path {
                            if let Some(dir) = p.parent() {
                                let _ = std::fs::create_dir_all(dir);
                            }
                            let _ = editor.save_history(p);
                        }
                    }
                    Input::Line(line)
                }
                Err(ReadlineError::Interrupted) => Input::Interrupted,
                Err(_) => Input::Eof,
            };
            if line_tx.send(input).is_err() {
                break;
            }
        }
    });
    eprintln!("equitr-coder interactive — {mode}. /help for commands.");
    loop {
        if ask_tx.send(()).is_err() {
            break;
        }
        let line = match line_rx.recv().await {
            Some(Input::Line(l)) => l,
            Some(Input::Interrupted) => continue,
            Some(Input::Eof) | None => break,
        };
        let task = line.trim();
        match task {
            "" => continue,
            "/exit" | "/quit" => break,
            "/help" => {
                out!("{HELP}");
                continue;
            }
            "/cost" => {
                out_raw!("{}", orch.session_cost().render_table());
                continue;
            }
            t if t.starts_with('/') => {
                out!("unknown command {t}\n{HELP}");
                continue;
            }
            _ => {}
        }
        let cancel = CancellationToken::new();
        let on_ctrl_c = cancel.clone();
        let watcher = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        progress.begin();
        let result = orch.run_cancellable(task, cancel).await;
        progress.end();
        watcher.abort();
        match result {
            Ok(r) => out_raw!("{}", render::result(&r)),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    EXIT_OK
}
