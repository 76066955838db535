//! Reviewing a diff: the worker triages every changed file with read-only tools and reports
//! findings; files that are security-relevant (sensitive paths, or a security-classified
//! change) go to the supervisor as well. A diff larger than one prompt is reviewed in chunks
//! of whole files, and what the budget did not cover is listed as skipped.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::diff::{self, FileDiff};
use super::review_scope::{self, Filters, SkipReason, Skipped};
use super::{CostReport, JobEvent, Orchestrator, Outcome, Run, Stop, TaskClass};
use crate::agent::sanitize::fence_code;
pub use crate::config::repo::Severity;
use crate::llm::{tokens, AgentRole, Message, ToolSpec};

/// The most diff text one review prompt carries.
pub(super) const MAX_CHUNK_TOKENS: u64 = 24_000;
/// Tool turns per chunk and role.
const REVIEW_TURNS: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub path: String,
    pub line: u64,
    pub severity: Severity,
    pub title: String,
    pub body: String,
    /// Replacement text for the line (or the lines from `start_line`), when the fix is
    /// concrete.
    #[serde(default)]
    pub suggestion: Option<String>,
    /// The first line of a finding that spans lines; `line` is the last.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// A short rule name (`sql-injection`, `missing-auth-check`): with the path and the code,
    /// what makes the finding the same one on a later push.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(skip_deserializing)]
    pub by: Option<AgentRole>,
}

/// What to review. `context` is the PR's title and description, already sanitised and
/// fenced by the caller.
pub struct ReviewRequest {
    pub context: String,
    pub diff: String,
    /// The files not to review (`review.exclude` / `review.include`).
    pub filters: Filters,
}

pub struct ReviewResult {
    pub outcome: Outcome,
    /// Every finding, in the order they were reported; where each lands is the caller's
    /// business (it knows the pull request's whole diff).
    pub findings: Vec<Finding>,
    /// Files reviewed, riskiest first.
    pub covered: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub summary: String,
    pub cost: CostReport,
    pub events: Vec<JobEvent>,
}

fn report_tool() -> ToolSpec {
    ToolSpec {
        name: "report_finding".into(),
        description: "Report one problem on a line of the diff's new side. Use `suggestion` for the exact replacement line(s) when the fix is concrete.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "line": {"type": "integer", "description": "line number in the new version of the file (the last line, for a finding that spans lines)"},
                "start_line": {"type": "integer", "description": "the first line, when the finding spans several lines"},
                "kind": {"type": "string", "description": "a short rule name in kebab-case, e.g. sql-injection, path-traversal, hard-coded-secret, missing-auth-check, unchecked-error"},
                "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
                "title": {"type": "string"},
                "body": {"type": "string"},
                "suggestion": {"type": "string"}
            },
            "required": ["path", "line", "severity", "title", "body"]
        }),
    }
}

fn finish_tool() -> ToolSpec {
    ToolSpec {
        name: "finish".into(),
        description: "End the review with a short overall summary.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"]
        }),
    }
}

/// Group whole files, in the order given, into chunks of at most `MAX_CHUNK_TOKENS` (a
/// larger file is skipped before it gets here).
pub(super) fn chunks(files: &[FileDiff], order: &[usize], model: &str) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for &i in order {
        let f = &files[i];
        let t = tokens::count_text_tokens(model, &f.text);
        if out.is_empty() || size + t > MAX_CHUNK_TOKENS {
            out.push(Vec::new());
            size = 0;
        }
        size += t;
        if let Some(last) = out.last_mut() {
            last.push(i);
        }
    }
    out
}

impl Orchestrator {
    /// Review a diff. Read-only: nothing is written or run.
    pub async fn review(&mut self, req: ReviewRequest) -> anyhow::Result<ReviewResult> {
        let files = diff::parse(&req.diff);
        let mut run = self.start_run("review", CancellationToken::new());
        let (sensitive, class, reason) = self.classify_diff(&files);
        self.emit(
            &mut run,
            JobEvent::Classified {
                class,
                reason: reason.clone(),
                by_model: false,
            },
        );
        let mut findings = Vec::new();
        let mut summaries = Vec::new();
        let mut covered = Vec::new();
        let model = self.worker.model().to_string();
        let (order, mut skipped) = review_scope::select(
            &files,
            &req.filters,
            &self.sensitive,
            MAX_CHUNK_TOKENS,
            |t| tokens::count_text_tokens(&model, t),
        );
        let mut outcome = Outcome::Done;
        let plan = chunks(&files, &order, &model);
        for (n, chunk) in plan.iter().enumerate() {
            let text: String = chunk.iter().map(|&i| files[i].text.as_str()).collect();
            let prompt = format!(
                "Review this change (part {} of {}). Read the surrounding code with the tools where it helps. \
                 Report each real problem with `report_finding` on a line of the new side of the diff — bugs, \
                 security issues, missing error handling, risky design; not style. Then call `finish` with a \
                 one-paragraph summary.\n\n{}\n\n{}",
                n + 1,
                plan.len(),
                req.context,
                fence_code("diff", &text)
            );
            match self.review_loop(&mut run, AgentRole::Worker, prompt).await {
                Ok((mut f, summary)) => {
                    findings.append(&mut f);
                    summaries.push(summary);
                    covered.extend(chunk.iter().map(|&i| files[i].path.clone()));
                }
                Err(Stop::Outcome(o)) => {
                    let why = o.describe();
                    outcome = o;
                    skipped.extend(plan[n..].iter().flatten().map(|&i| Skipped {
                        path: files[i].path.clone(),
                        reason: SkipReason::NotReached(why.clone()),
                    }));
                    break;
                }
            }
        }
        // Security-relevant files also go to the supervisor.
        let reviewed: Vec<&FileDiff> = sensitive
            .iter()
            .map(|&i| &files[i])
            .filter(|f| covered.contains(&f.path))
            .collect();
        if self.multi && outcome == Outcome::Done && !reviewed.is_empty() {
            match self.supervise(&mut run, &req.context, &reviewed).await {
                Ok((mut f, summary)) => {
                    findings.append(&mut f);
                    summaries.push(format!("Supervisor: {summary}"));
                }
                Err(Stop::Outcome(o)) => outcome = o,
            }
        }
        let summary = paragraphs(summaries);
        self.emit(
            &mut run,
            JobEvent::Finished {
                outcome: outcome.describe(),
                summary: summary.clone(),
            },
        );
        Ok(ReviewResult {
            outcome,
            findings,
            covered,
            skipped,
            summary,
            cost: run.costs.report(),
            events: run.events,
        })
    }

    /// The supervisor's security pass over the sensitive files the worker reviewed.
    async fn supervise(
        &self,
        run: &mut Run,
        context: &str,
        files: &[&FileDiff],
    ) -> Result<(Vec<Finding>, String), Stop> {
        let text: String = files.iter().map(|f| f.text.as_str()).collect();
        let prompt = format!(
            "These files of a pull request match the repository's sensitive paths. Review them for security problems: \
             injection, auth bypass, secrets, unsafe input handling, dangerous CI or dependency changes. \
             Report each with `report_finding`, then `finish`.\n\n{}\n\n{}",
            context,
            fence_code("diff", &text)
        );
        self.review_loop(run, AgentRole::Supervisor, prompt).await
    }

    /// Which files of the diff match the sensitive paths, and the class that makes the review.
    fn classify_diff(&self, files: &[diff::FileDiff]) -> (Vec<usize>, TaskClass, String) {
        let on_paths: Vec<usize> = (0..files.len())
            .filter(|&i| self.sensitive.is_match(&files[i].path))
            .collect();
        // Code that looks like a defect class the supervisor must see, wherever it is.
        let in_code: Vec<usize> = (0..files.len())
            .filter(|&i| !on_paths.contains(&i) && review_scope::security_relevant(&files[i]))
            .collect();
        let names = |ix: &[usize]| -> String {
            ix.iter()
                .map(|&i| files[i].path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = match (on_paths.is_empty(), in_code.is_empty()) {
            (true, true) => {
                return (
                    Vec::new(),
                    TaskClass::Routine,
                    "no sensitive path in the diff".to_string(),
                )
            }
            (false, true) => format!("the diff touches sensitive paths: {}", names(&on_paths)),
            (true, false) => format!("security-relevant code in: {}", names(&in_code)),
            (false, false) => format!(
                "the diff touches sensitive paths: {}; security-relevant code in: {}",
                names(&on_paths),
                names(&in_code)
            ),
        };
        let mut all = on_paths;
        all.extend(in_code);
        all.sort_unstable();
        (all, TaskClass::Security, reason)
    }

    /// One role's review conversation: read-only tools, `report_finding`, `finish`.
    async fn review_loop(
        &self,
        run: &mut Run,
        role: AgentRole,
        prompt: String,
    ) -> Result<(Vec<Finding>, String), Stop> {
        let root = self.toolbox.root().display().to_string();
        let system = match role {
            AgentRole::Worker => format!(
                "You are the reviewing agent of equitr-coder, reading a pull request against the repository at {root}."
            ),
            AgentRole::Supervisor => super::prompts::supervisor_system(&root),
        };
        let mut messages = vec![Message::system(system), Message::user(prompt)];
        let mut tools = self.readonly.specs();
        tools.push(report_tool());
        tools.push(finish_tool());
        let mut findings = Vec::new();
        for turn in 1..=REVIEW_TURNS {
            if turn == REVIEW_TURNS {
                messages.push(Message::user(
                    "You have used your tool turns: report what remains and call `finish` now.",
                ));
            }
            let resp = self
                .call(run, role, messages.clone(), tools.clone())
                .await?;
            messages.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: resp.tool_calls.clone(),
            });
            if resp.tool_calls.is_empty() {
                return Ok((findings, resp.content.unwrap_or_default()));
            }
            let mut finished = None;
            for call in &resp.tool_calls {
                let (content, is_error) = match call.name.as_str() {
                    "report_finding" => match serde_json::from_str::<Finding>(&call.arguments) {
                        Ok(mut f) => {
                            f.by = Some(role);
                            findings.push(f);
                            ("recorded".to_string(), false)
                        }
                        Err(e) => (format!("report_finding: {e}"), true),
                    },
                    "finish" => {
                        finished = Some(
                            super::worker::arg_str(&call.arguments, "summary").unwrap_or_default(),
                        );
                        ("ok".to_string(), false)
                    }
                    _ => self.tool(run, role, &self.readonly, call).await?,
                };
                messages.push(Message::Tool {
                    call_id: call.id.clone(),
                    content,
                    is_error,
                });
            }
            if let Some(summary) = finished {
                return Ok((findings, summary));
            }
        }
        Ok((findings, String::new()))
    }
}

/// An answer to a question about the code, with what it cost.
pub struct Answer {
    pub outcome: Outcome,
    pub text: String,
    pub cost: CostReport,
}

impl Orchestrator {
    /// The supervisor's plan for a task, with read-only tools and nothing changed — for
    /// repositories that approve plans before work starts (`implement.require_plan_approval`).
    pub async fn plan(&mut self, task: &str) -> anyhow::Result<Answer> {
        let mut run = self.start_run(task, CancellationToken::new());
        let request = super::prompts::plan_request(
            task,
            "plan-first",
            "this repository approves a plan before work starts",
        );
        let (outcome, text) = match self.consult(&mut run, request, None).await {
            Ok(text) => (Outcome::Done, text),
            Err(Stop::Outcome(o)) => (o, String::new()),
        };
        Ok(Answer {
            outcome,
            text,
            cost: run.costs.report(),
        })
    }

    /// Answer a question about the repository with read-only tools (`/equitr ask`). The
    /// question is fenced by the caller when it comes from an untrusted thread.
    pub async fn ask(&mut self, question: &str) -> anyhow::Result<Answer> {
        let mut run = self.start_run(question, CancellationToken::new());
        let root = self.toolbox.root().display().to_string();
        let mut messages = vec![
            Message::system(format!(
                "You answer questions about the repository at {root}. Read the code with the tools; \
                 answer concretely, citing files and lines. Call `finish` with your answer."
            )),
            Message::user(question.to_string()),
        ];
        let mut tools = self.readonly.specs();
        tools.push(finish_tool());
        let max = self.cfg.orchestrator.max_iterations;
        let mut text = String::new();
        let outcome = loop {
            if run.iterations >= max {
                break Outcome::IterationLimit(max);
            }
            run.iterations += 1;
            let resp = match self
                .call(&mut run, AgentRole::Worker, messages.clone(), tools.clone())
                .await
            {
                Ok(r) => r,
                Err(Stop::Outcome(o)) => break o,
            };
            messages.push(Message::Assistant {
                content: resp.content.clone(),
                tool_calls: resp.tool_calls.clone(),
            });
            if resp.tool_calls.is_empty() {
                text = resp.content.unwrap_or_default();
                break Outcome::Done;
            }
            let mut finished = false;
            for call in &resp.tool_calls {
                let (content, is_error) = if call.name == "finish" {
                    text = super::worker::arg_str(&call.arguments, "summary").unwrap_or_default();
                    finished = true;
                    ("ok".to_string(), false)
                } else {
                    match self
                        .tool(&mut run, AgentRole::Worker, &self.readonly, call)
                        .await
                    {
                        Ok(r) => r,
                        Err(Stop::Outcome(o)) => {
                            return Ok(Answer {
                                outcome: o,
                                text,
                                cost: run.costs.report(),
                            })
                        }
                    }
                };
                messages.push(Message::Tool {
                    call_id: call.id.clone(),
                    content,
                    is_error,
                });
            }
            if finished {
                break Outcome::Done;
            }
        };
        Ok(Answer {
            outcome,
            text,
            cost: run.costs.report(),
        })
    }
}

/// The non-empty summaries, one paragraph each.
fn paragraphs(summaries: Vec<String>) -> String {
    summaries
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}
