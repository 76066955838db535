//! The YAML file as written: every field optional, unknown keys refused.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ProviderKind, SandboxSetting};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub llm: Option<FileLlm>,
    pub orchestrator: Option<FileOrchestrator>,
    pub sandbox: Option<SandboxSetting>,
    pub github: Option<FileGithub>,
    pub server: Option<FileServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLlm {
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub budget: Option<f64>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub timeout_secs: Option<u64>,
    pub models: Option<FileModels>,
    /// Prices for models the built-in table does not know, or overrides of it.
    pub pricing: Option<BTreeMap<String, FilePricing>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModels {
    pub supervisor: Option<FileModel>,
    pub worker: Option<FileModel>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    pub provider: Option<ProviderKind>,
    pub model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub pricing: Option<FilePricing>,
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
    pub cache_write_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrchestrator {
    pub use_multi_agent: Option<bool>,
    pub max_iterations: Option<u32>,
    pub max_supervisor_calls: Option<u32>,
    pub max_wall_clock_secs: Option<u64>,
    pub max_gate_rejections: Option<u32>,
    pub command_timeout_secs: Option<u64>,
    pub sensitive_paths: Option<Vec<String>>,
}

/// Accepted now so that one file can serve `chat` and (in a later release) `serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGithub {
    pub app_id: Option<u64>,
    pub private_key_path: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub api_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub concurrency: Option<u32>,
}

/// The line of every key in a YAML document, by dotted path (`llm.models.worker.model`).
///
/// serde's YAML deserialiser reports where an error is but not where a value that parsed
/// fine came from, so `config-cmd` walks yaml-rust2's marked events for that.
pub fn key_lines(text: &str) -> BTreeMap<String, usize> {
    use yaml_rust2::parser::{Event, Parser};

    enum Frame {
        Map { key: Option<String> },
        Seq { index: usize },
    }
    let mut lines = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut parser = Parser::new_from_str(text);

    // After a value completes inside a mapping, the mapping expects a key again.
    fn value_done(stack: &mut [Frame], path: &mut Vec<String>) {
        match stack.last_mut() {
            Some(Frame::Map { key: key @ Some(_) }) => {
                *key = None;
                path.pop();
            }
            Some(Frame::Map { key: None }) => {}
            Some(Frame::Seq { index }) => {
                *index += 1;
                path.pop();
            }
            None => {}
        }
    }
    fn value_start(stack: &mut [Frame], path: &mut Vec<String>) {
        if let Some(Frame::Seq { index }) = stack.last() {
            path.push(index.to_string());
        }
    }

    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = stack.last_mut() {
                    *key = Some(value.clone());
                    path.push(value);
                    lines.insert(path.join("."), mark.line());
                } else {
                    value_start(&mut stack, &mut path);
                    value_done(&mut stack, &mut path);
                }
            }
            Event::Alias(_) => {
                value_start(&mut stack, &mut path);
                value_done(&mut stack, &mut path);
            }
            Event::MappingStart(..) => {
                value_start(&mut stack, &mut path);
                stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                value_start(&mut stack, &mut path);
                stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack, &mut path);
            }
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines_follow_nesting_and_sequences() {
        let text = "llm:\n  model: gpt-4o\n  models:\n    worker:\n      model: gpt-4o-mini\n      pricing: { input_per_mtok: 0.15, output_per_mtok: 0.6 }\norchestrator:\n  sensitive_paths:\n    - a\n    - b\n  max_iterations: 15\n";
        let lines = key_lines(text);
        assert_eq!(lines["llm.model"], 2);
        assert_eq!(lines["llm.models.worker.model"], 5);
        assert_eq!(lines["llm.models.worker.pricing.output_per_mtok"], 6);
        assert_eq!(lines["orchestrator.sensitive_paths"], 8);
        assert_eq!(lines["orchestrator.max_iterations"], 11);
    }
}
