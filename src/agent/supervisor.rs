//! The supervisor's part of a run: answers to `ask_supervisor`, and the gate review of
//! critical diffs.

use super::*;

impl Orchestrator {
    pub(super) async fn ask_supervisor(
        &self,
        run: &mut Run,
        call: &ToolCall,
    ) -> Result<(String, bool), Stop> {
        let cap = self.cfg.orchestrator.max_supervisor_calls;
        #[derive(Deserialize)]
        struct Args {
            question: String,
            #[serde(default)]
            context_files: Vec<String>,
        }
        let args: Args = match serde_json::from_str(&call.arguments) {
            Ok(a) => a,
            Err(e) => {
                return Ok((
                    format!("ask_supervisor needs {{\"question\": string, \"context_files\"?: [paths]}}: {e}"),
                    true,
                ))
            }
        };
        if run.supervisor_calls >= cap {
            return Ok((
                format!(
                    "the supervisor has already answered {cap} questions in this run (orchestrator.max_supervisor_calls); decide yourself"
                ),
                true,
            ));
        }
        run.supervisor_calls += 1;
        self.emit(
            run,
            JobEvent::Escalation {
                question: args.question.clone(),
            },
        );
        let mut context = String::new();
        for path in &args.context_files {
            let out = self
                .readonly
                .call("read_file", &json!({ "path": path }).to_string())
                .await;
            context.push_str(&format!(
                "<file path=\"{path}\">\n{}\n</file>\n",
                out.content
            ));
        }
        let answer = self
            .consult(run, prompts::question(&args.question, &context), None)
            .await?;
        self.emit(
            run,
            JobEvent::SupervisorAnswer {
                answer: answer.clone(),
            },
        );
        Ok((answer, false))
    }

    /// A supervisor conversation with read-only tools; returns its final text, or the
    /// arguments of `extra` when it calls that tool.
    pub(super) async fn consult(
        &self,
        run: &mut Run,
        request: String,
        extra: Option<ToolSpec>,
    ) -> Result<String, Stop> {
        let root = self.toolbox.root().display().to_string();
        let mut messages = vec![
            Message::system(prompts::supervisor_system(&root)),
            Message::user(request),
        ];
        let mut tools = self.readonly.specs();
        let extra_name = extra.as_ref().map(|t| t.name.clone());
        tools.extend(extra);
        for turn in 1..=SUPERVISOR_TURNS {
            // On the last turn the supervisor is told to conclude. The tools stay offered:
            // Anthropic refuses a conversation holding tool blocks without tool definitions.
            if turn == SUPERVISOR_TURNS && turn > 1 {
                messages.push(Message::user(match &extra_name {
                    Some(name) => format!("You have used your tool turns. Call `{name}` now."),
                    None => {
                        "You have used your tool turns. Answer now, in text, without calling tools."
                            .to_string()
                    }
                }));
            }
            let offered = tools.clone();
            let resp = self
                .call(run, AgentRole::Supervisor, messages.clone(), offered)
                .await?;
            if let Some(name) = &extra_name {
                if let Some(c) = resp.tool_calls.iter().find(|c| &c.name == name) {
                    return Ok(c.arguments.clone());
                }
            }
            if resp.tool_calls.is_empty() {
                return Ok(resp.content.unwrap_or_default());
            }
            messages.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: resp.tool_calls.clone(),
            });
            for call in &resp.tool_calls {
                let (content, is_error) = self
                    .tool(run, AgentRole::Supervisor, &self.readonly, call)
                    .await?;
                messages.push(Message::Tool {
                    call_id: call.id.clone(),
                    content,
                    is_error,
                });
            }
        }
        Ok(String::new())
    }

    /// Whether the change so far needs the supervisor's review, and why.
    pub(super) async fn review_due(
        &self,
        baseline: &Snapshot,
        escalated: bool,
    ) -> Result<Option<(String, String, Vec<String>)>, Stop> {
        let fail = |e: anyhow::Error| Stop::Outcome(Outcome::Failed(format!("diff: {e:#}")));
        let now = self.watcher.snapshot().await.map_err(fail)?;
        let changed = self.watcher.changed(baseline, &now).await.map_err(fail)?;
        if changed.is_empty() {
            return Ok(None);
        }
        let sensitive: Vec<&str> = changed
            .iter()
            .map(|c| c.path.as_str())
            .filter(|p| self.sensitive.is_match(p))
            .collect();
        let why = if !sensitive.is_empty() {
            format!("it touches sensitive paths: {}", sensitive.join(", "))
        } else if let Some(u) = &self.untrusted {
            format!("the job's context is untrusted: {u}")
        } else if escalated {
            "the task was escalated to the supervisor".to_string()
        } else {
            return Ok(None);
        };
        let diff = self.watcher.diff(baseline, &now).await.map_err(fail)?;
        let files = changed.into_iter().map(|c| c.path).collect();
        Ok(Some((
            why,
            truncate_head_tail(&diff, MAX_REVIEW_DIFF_BYTES),
            files,
        )))
    }

    pub(super) async fn gate_review(
        &self,
        run: &mut Run,
        why: &str,
        diff: &str,
    ) -> Result<GateVerdict, Stop> {
        let tool = ToolSpec {
            name: "submit_review".into(),
            description: "Accept or reject the change.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "approved": {"type": "boolean"},
                    "reasons": {"type": "string", "description": "what must change (when rejecting), or a one-line note"}
                },
                "required": ["approved", "reasons"]
            }),
        };
        let answer = self
            .consult(
                run,
                prompts::review_request(&run.task, why, diff),
                Some(tool),
            )
            .await?;
        #[derive(Deserialize)]
        struct Args {
            approved: bool,
            #[serde(default)]
            reasons: String,
        }
        Ok(match serde_json::from_str::<Args>(&answer) {
            Ok(a) => GateVerdict {
                approved: a.approved,
                reasons: a.reasons,
            },
            // A plain-text answer approves only when it says so first.
            Err(_) => GateVerdict {
                approved: answer
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("APPROVE"),
                reasons: answer.trim().to_string(),
            },
        })
    }
}

pub(super) struct GateVerdict {
    pub(super) approved: bool,
    pub(super) reasons: String,
}
