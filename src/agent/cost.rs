//! The cost of a run per role, and what the same tokens would have cost on the supervisor.

use serde::Serialize;

use crate::llm::pricing::{ModelPrice, Usd};
use crate::llm::{AgentRole, Usage};

/// One role's calls, added up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleCost {
    pub role: AgentRole,
    pub model: String,
    pub calls: u32,
    pub usage: Usage,
    /// `None` when the model has no known price (possible only with no budget in force).
    #[serde(serialize_with = "ser_usd")]
    pub cost: Option<Usd>,
}

fn ser_usd<S: serde::Serializer>(v: &Option<Usd>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&u.to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    /// Supervisor first, then worker; roles that made no call are left out.
    pub roles: Vec<RoleCost>,
    pub supervisor_model: String,
    /// The cost of every call's tokens at the supervisor's prices.
    #[serde(serialize_with = "ser_usd")]
    pub supervisor_only: Option<Usd>,
}

impl CostReport {
    pub fn total(&self) -> Option<Usd> {
        self.roles.iter().map(|r| r.cost).sum()
    }

    pub fn total_usage(&self) -> Usage {
        let mut u = Usage::default();
        for r in &self.roles {
            u += r.usage;
        }
        u
    }

    pub fn cost_of(&self, role: AgentRole) -> Option<Usd> {
        self.roles
            .iter()
            .find(|r| r.role == role)
            .and_then(|r| r.cost)
    }

    /// "N× saved": the supervisor-only cost over the real one.
    pub fn savings_factor(&self) -> Option<f64> {
        let total = self.total()?;
        let cf = self.supervisor_only?;
        (total.picos() > 0).then(|| cf.picos() as f64 / total.picos() as f64)
    }

    /// The plain-text table the terminal prints (and the Action step summary quotes).
    pub fn render_table(&self) -> String {
        let money = |c: Option<Usd>| c.map(|u| u.to_string()).unwrap_or_else(|| "n/a".into());
        let mut rows: Vec<[String; 7]> = vec![[
            "role".into(),
            "model".into(),
            "calls".into(),
            "input".into(),
            "cached".into(),
            "output".into(),
            "USD".into(),
        ]];
        for r in &self.roles {
            rows.push([
                r.role.to_string(),
                r.model.clone(),
                r.calls.to_string(),
                r.usage.input_tokens.to_string(),
                r.usage.cached_input_tokens.to_string(),
                r.usage.output_tokens.to_string(),
                money(r.cost),
            ]);
        }
        let u = self.total_usage();
        rows.push([
            "total".into(),
            String::new(),
            self.roles.iter().map(|r| r.calls).sum::<u32>().to_string(),
            u.input_tokens.to_string(),
            u.cached_input_tokens.to_string(),
            u.output_tokens.to_string(),
            money(self.total()),
        ]);
        let mut widths = [0usize; 7];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(col, (cell, w))| {
                    if col >= 2 {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if i == 0 || i == rows.len() - 2 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out.push_str(&self.counterfactual_line());
        out.push('\n');
        out
    }

    /// The cost summary posted on GitHub: a markdown table per role, the total, the
    /// supervisor-only counterfactual, why the task was (not) escalated, and the month's
    /// spend against the repository's cap when one is known.
    pub fn render_markdown(&self, escalation: &str, month: Option<(Usd, Option<Usd>)>) -> String {
        let money = |c: Option<Usd>| c.map(|u| u.to_string()).unwrap_or_else(|| "n/a".into());
        let mut out = String::from(
            "| role | model | calls | input | cached | output | USD |\n|---|---|--:|--:|--:|--:|--:|\n",
        );
        for r in &self.roles {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                r.role,
                r.model,
                r.calls,
                r.usage.input_tokens,
                r.usage.cached_input_tokens,
                r.usage.output_tokens,
                money(r.cost)
            ));
        }
        let u = self.total_usage();
        out.push_str(&format!(
            "| **total** | | {} | {} | {} | {} | **{}** |\n\n",
            self.roles.iter().map(|r| r.calls).sum::<u32>(),
            u.input_tokens,
            u.cached_input_tokens,
            u.output_tokens,
            money(self.total())
        ));
        out.push_str(&format!("{}  \n", self.counterfactual_line()));
        out.push_str(&format!("Escalation: {escalation}"));
        if let Some((spent, cap)) = month {
            match cap {
                Some(cap) => out.push_str(&format!(
                    "  \nThis month: {spent} of the {cap} repository cap"
                )),
                None => out.push_str(&format!("  \nThis month: {spent} (no repository cap)")),
            }
        }
        out
    }

    pub fn counterfactual_line(&self) -> String {
        match (self.supervisor_only, self.savings_factor()) {
            (Some(cf), Some(f)) => format!(
                "same tokens on {}: {} — {:.1}× saved",
                self.supervisor_model, cf, f
            ),
            (Some(cf), None) => format!("same tokens on {}: {}", self.supervisor_model, cf),
            (None, _) => format!(
                "same tokens on {}: n/a (no known price)",
                self.supervisor_model
            ),
        }
    }
}

/// Accumulates calls as they are priced.
#[derive(Debug, Clone)]
pub struct CostTracker {
    roles: Vec<RoleCost>,
    supervisor_model: String,
    supervisor_price: Option<ModelPrice>,
    supervisor_only: Option<Usd>,
}

impl CostTracker {
    pub fn new(supervisor_model: String, supervisor_price: Option<ModelPrice>) -> Self {
        CostTracker {
            roles: Vec::new(),
            supervisor_model,
            supervisor_price,
            supervisor_only: supervisor_price.map(|_| Usd::ZERO),
        }
    }

    pub fn record(&mut self, role: AgentRole, model: &str, usage: Usage, cost: Option<Usd>) {
        let idx = match self.roles.iter().position(|r| r.role == role) {
            Some(i) => i,
            None => {
                self.roles.push(RoleCost {
                    role,
                    model: model.to_string(),
                    calls: 0,
                    usage: Usage::default(),
                    cost: Some(Usd::ZERO),
                });
                self.roles.sort_by_key(|r| r.role);
                self.roles
                    .iter()
                    .position(|r| r.role == role)
                    .unwrap_or_default()
            }
        };
        let r = &mut self.roles[idx];
        r.calls += 1;
        r.usage += usage;
        r.cost = match (r.cost, cost) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        if let (Some(sum), Some(price)) = (self.supervisor_only.as_mut(), self.supervisor_price) {
            *sum += price.cost(&usage);
        }
    }

    pub fn report(&self) -> CostReport {
        CostReport {
            roles: self.roles.clone(),
            supervisor_model: self.supervisor_model.clone(),
            supervisor_only: self.supervisor_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::pricing::PriceTable;

    #[test]
    fn markdown_summary() {
        let table = PriceTable::builtin();
        let sup = table.lookup("gpt-4o");
        let mut t = CostTracker::new("gpt-4o".into(), sup);
        let usage = |i, c, o| Usage {
            input_tokens: i,
            cached_input_tokens: c,
            cache_write_tokens: 0,
            output_tokens: o,
        };
        let mini = table.lookup("gpt-4o-mini").unwrap();
        for _ in 0..3 {
            let u = usage(2000, 1000, 100);
            t.record(AgentRole::Worker, "gpt-4o-mini", u, Some(mini.cost(&u)));
        }
        let u = usage(3000, 0, 500);
        t.record(AgentRole::Supervisor, "gpt-4o", u, sup.map(|p| p.cost(&u)));
        let md = t.report().render_markdown(
            "security — the task names the sensitive path `src/auth.rs`",
            Some((
                Usd::from_picos(1_234_500_000_000),
                Some(Usd::from_picos(50_000_000_000_000)),
            )),
        );
        insta::assert_snapshot!(md);
    }
}
