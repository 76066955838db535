//! Classifying a task: heuristics first, the worker model when they are unsure.

use super::*;

impl Orchestrator {
    pub(super) async fn classify(&self, run: &mut Run) -> Result<Classification, Stop> {
        let c = match escalation::heuristic(&run.task, &self.sensitive) {
            Verdict::Sure { class, reason } => Classification {
                class,
                reason,
                by_model: false,
            },
            Verdict::Unsure if !self.multi => Classification {
                class: TaskClass::Routine,
                reason: "no security or architecture signal in the task (single-agent mode)".into(),
                by_model: false,
            },
            Verdict::Unsure => self.classify_by_model(run).await?,
        };
        self.emit(
            run,
            JobEvent::Classified {
                class: c.class,
                reason: c.reason.clone(),
                by_model: c.by_model,
            },
        );
        Ok(c)
    }

    pub(super) async fn classify_by_model(&self, run: &mut Run) -> Result<Classification, Stop> {
        let tool = ToolSpec {
            name: "classify".into(),
            description: "Record the task's class and a one-sentence reason.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "class": {"type": "string", "enum": ["security", "architecture", "routine"]},
                    "reason": {"type": "string"}
                },
                "required": ["class", "reason"]
            }),
        };
        let resp = self
            .call(
                run,
                AgentRole::Worker,
                vec![Message::user(prompts::classify_request(&run.task))],
                vec![tool],
            )
            .await?;
        #[derive(Deserialize)]
        struct Args {
            class: TaskClass,
            reason: String,
        }
        let parsed = resp
            .tool_calls
            .iter()
            .find(|c| c.name == "classify")
            .and_then(|c| serde_json::from_str::<Args>(&c.arguments).ok());
        Ok(match parsed {
            Some(a) => Classification {
                class: a.class,
                reason: format!("worker model: {}", a.reason.trim()),
                by_model: true,
            },
            None => Classification {
                class: TaskClass::Routine,
                reason: "the heuristics were unsure and the worker model gave no class".into(),
                by_model: true,
            },
        })
    }
}
