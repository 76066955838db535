//! The worker's tool loop: its tools, each turn, each tool call, and the limits that end a
//! run that goes nowhere.

use super::*;

impl Orchestrator {
    pub(super) fn worker_tools(&self) -> Vec<ToolSpec> {
        let mut tools = self.toolbox.specs();
        if self.multi {
            tools.push(ToolSpec {
                name: "ask_supervisor".into(),
                description: "Ask the supervisor (a stronger model) a security, architecture or hard debugging question. \
                              Optionally attach files it should read."
                    .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "question": {"type": "string"},
                        "context_files": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["question"]
                }),
            });
        }
        tools.push(ToolSpec {
            name: "finish".into(),
            description:
                "End the task with a short summary of what changed and how it was checked.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"summary": {"type": "string"}},
                "required": ["summary"]
            }),
        });
        tools
    }

    /// The worker's tool loop, until it finishes or answers without a tool call.
    pub(super) async fn work(&mut self, run: &mut Run) -> Result<String, Stop> {
        let tools = self.worker_tools();
        let max = self.cfg.orchestrator.max_iterations;
        // (failing calls in a row, identical failing calls in a row, the last failing call)
        let mut failing: (u32, u32, Option<(String, String)>) = (0, 0, None);
        loop {
            // The cap is per run: revisions after a supervisor rejection share it.
            if run.iterations >= max {
                return Err(Stop::Outcome(Outcome::IterationLimit(max)));
            }
            run.iterations += 1;
            let resp = self
                .call(run, AgentRole::Worker, self.history.clone(), tools.clone())
                .await?;
            // Arguments over the cap are refused back to the model, and the history keeps
            // a short stand-in, not megabytes that every later prompt would carry.
            let calls: Vec<ToolCall> = resp
                .tool_calls
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.arguments.len() > MAX_TOOL_ARGUMENT_BYTES {
                        c.arguments = json!({ "omitted_bytes": c.arguments.len() }).to_string();
                    }
                    c
                })
                .collect();
            self.history.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: calls.clone(),
            });
            if calls.is_empty() {
                return Ok(resp.content.unwrap_or_default());
            }
            let mut finished = None;
            for (call, sent) in calls.iter().zip(&resp.tool_calls) {
                let (content, is_error) = match call.name.as_str() {
                    _ if sent.arguments.len() > MAX_TOOL_ARGUMENT_BYTES => (
                        format!(
                            "refused: the arguments of `{}` were {} bytes, over the cap of {} \
                             bytes; write large content in smaller pieces",
                            call.name,
                            sent.arguments.len(),
                            MAX_TOOL_ARGUMENT_BYTES
                        ),
                        true,
                    ),
                    "finish" => {
                        let summary = arg_str(&call.arguments, "summary").unwrap_or_default();
                        finished = Some(summary);
                        ("ok".to_string(), false)
                    }
                    "ask_supervisor" if self.multi => self.ask_supervisor(run, call).await?,
                    _ => {
                        self.tool(run, AgentRole::Worker, &self.toolbox, call)
                            .await?
                    }
                };
                // A run of failing calls (malformed JSON, unknown tools, the same failing
                // call again and again) ends the run instead of spending to the cap.
                let key = (call.name.clone(), call.arguments.clone());
                if is_error {
                    failing.0 += 1;
                    failing.1 = if failing.2.as_ref() == Some(&key) {
                        failing.1 + 1
                    } else {
                        1
                    };
                    failing.2 = Some(key);
                } else {
                    failing = (0, 0, None);
                }
                self.history.push(Message::Tool {
                    call_id: call.id.clone(),
                    content: content.clone(),
                    is_error,
                });
                if failing.0 >= MAX_FAILING_CALLS || failing.1 >= MAX_IDENTICAL_FAILING_CALLS {
                    return Err(Stop::Outcome(Outcome::Failed(format!(
                        "the worker's tool calls kept failing ({} in a row, the last `{}`: {})",
                        failing.0,
                        call.name,
                        content
                            .lines()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ))));
                }
            }
            if let Some(summary) = finished {
                return Ok(summary);
            }
        }
    }

    /// Run one toolbox tool and report it.
    pub(super) async fn tool(
        &self,
        run: &mut Run,
        role: AgentRole,
        toolbox: &Toolbox,
        call: &ToolCall,
    ) -> Result<(String, bool), Stop> {
        self.emit(
            run,
            JobEvent::ToolCall {
                role,
                name: call.name.clone(),
                arguments: truncate_head_tail(&call.arguments, 2_000),
            },
        );
        if toolbox.writes() {
            self.watcher.invalidate();
        }
        let out = if toolbox.handles(&call.name) {
            let span = tracing::debug_span!("tool", name = %call.name, role = %role);
            self.bounded(
                run,
                toolbox.call(&call.name, &call.arguments).instrument(span),
            )
            .await?
        } else if call.name == "run_command"
            && self.untrusted.is_some()
            && role == AgentRole::Worker
        {
            // The toolbox says why: untrusted-context mode.
            toolbox.call(&call.name, &call.arguments).await
        } else {
            crate::tools::ToolOutcome {
                content: format!(
                    "unknown tool `{}`; the tools you have are: {}",
                    call.name,
                    toolbox
                        .specs()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                is_error: true,
            }
        };
        self.emit(
            run,
            JobEvent::ToolResult {
                role,
                name: call.name.clone(),
                is_error: out.is_error,
                preview: out
                    .content
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            },
        );
        Ok((out.content, out.is_error))
    }
}

/// Tool arguments over this many bytes are refused back to the model.
pub const MAX_TOOL_ARGUMENT_BYTES: usize = 1024 * 1024;
/// A run ends after this many failing tool calls in a row…
pub const MAX_FAILING_CALLS: u32 = 8;
/// …or this many identical failing calls in a row.
pub const MAX_IDENTICAL_FAILING_CALLS: u32 = 3;

pub(super) fn arg_str(arguments: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(arguments)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// A stopped run can leave tool calls unanswered; providers refuse such a conversation, so
/// answer them before the next task continues it.
pub(super) fn repair_history(history: &mut Vec<Message>) {
    let Some(pos) = history.iter().rposition(
        |m| matches!(m, Message::Assistant { tool_calls, .. } if !tool_calls.is_empty()),
    ) else {
        return;
    };
    let Message::Assistant { tool_calls, .. } = &history[pos] else {
        return;
    };
    let answered: Vec<String> = history[pos + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<String> = tool_calls
        .iter()
        .filter(|c| !answered.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    // Tool answers must directly follow their call, before any new user message.
    let insert_at = pos + 1 + answered.len();
    for (i, id) in missing.into_iter().enumerate() {
        history.insert(
            insert_at + i,
            Message::Tool {
                call_id: id,
                content: "not run: the task was stopped".into(),
                is_error: true,
            },
        );
    }
}
