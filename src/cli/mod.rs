//! The subcommands. Each returns an exit code; errors are printed as one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};

/// `println!` that does not panic when stdout is gone (`equitr-coder … | head`): what
/// cannot be written is dropped.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that does not panic when stdout is gone.
macro_rules! out_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, $($t)*);
        let _ = stdout.flush();
    }};
}

mod action;
mod chat;
mod config_cmd;
mod interactive;
mod models;
mod progress;
mod render;
mod serve;
mod setup;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "equitr-coder",
    version,
    about = "A cheap worker model does the work; a strong supervisor model plans, answers and reviews."
)]
pub struct Cli {
    /// Config file (default: $EQUITR_CONFIG, else ~/.equitr/config.yaml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one task on the working tree in place.
    Chat(ChatArgs),
    /// A session: each line is a task in a continuing conversation.
    Interactive(RunFlags),
    /// Show the effective configuration and where each value comes from.
    #[command(name = "config-cmd")]
    ConfigCmd,
    /// Print the JSON Schema of a config file, for editors to complete and check it.
    #[command(name = "config-schema")]
    ConfigSchema(SchemaArgs),
    /// List the models the provider offers, with their known prices.
    Models(ModelsArgs),
    /// Run the GitHub App service (webhooks → jobs → pull requests and reviews).
    Serve,
    /// Run inside a GitHub Actions job: the event, inputs and token come from the runner's
    /// environment (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY, INPUT_*).
    Action,
    /// Create the GitHub App for `serve` with GitHub's App-manifest flow, in the browser, and
    /// write its id, private key and webhook secret (mode 0600).
    Setup(setup::SetupArgs),
}

#[derive(Debug, Args)]
pub struct RunFlags {
    /// Use the supervisor + worker pair (otherwise the worker model works alone).
    #[arg(short = 'M', long = "multi-agent")]
    pub multi_agent: bool,
    /// Model for the supervisor, and for the worker unless it has its own.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Model for the supervisor (plans, answers the worker, reviews critical changes).
    #[arg(long, value_name = "M")]
    pub supervisor_model: Option<String>,
    /// Model for the worker (reads, edits, runs the tests).
    #[arg(long, value_name = "M")]
    pub worker_model: Option<String>,
    /// USD cap for the run: no model call that could cross it is made.
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// The most worker turns a task may take (default 15, or orchestrator.max_iterations).
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<u32>,
    /// The repository to work on (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Also show each tool call, each failed tool and each model call (tokens, cost). Log
    /// lines come with RUST_LOG, not with this.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// What to do. Without a task, `chat` starts an interactive session with these flags
    /// (as the guide's `equitr-coder chat --multi-agent` does).
    #[arg(value_name = "TASK", num_args = 0..)]
    pub task: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file: `repo` (.github/equitr.yml) or `cli` (~/.equitr/config.yaml).
    #[arg(value_enum, value_name = "FILE")]
    pub file: crate::config::schema::Which,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Ask the provider's /v1/models endpoint.
    #[arg(long)]
    pub discover: bool,
    /// The provider's base URL (default: the configured one).
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,
}

impl RunFlags {
    fn overrides(&self) -> Overrides {
        Overrides {
            model: self.model.clone(),
            supervisor_model: self.supervisor_model.clone(),
            worker_model: self.worker_model.clone(),
            budget: self.budget,
            max_iterations: self.max_iterations,
            // Without -M the config decides, as the guide's `use_multi_agent: true` promises.
            multi_agent: self.multi_agent.then_some(true),
            api_base: None,
        }
    }
}

/// Load the configuration for a command.
pub(crate) fn load_config(
    flag: Option<&Path>,
    env: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let home = env.get("HOME").map(PathBuf::from);
    let file = crate::config::locate(flag, env, home.as_deref());
    let mut config = Config::load(file.as_ref().map(|(p, _)| p.as_path()), env, overrides)?;
    // With nothing naming the models, the API key in the environment picks them, as in the
    // Action: a first run needs a key and nothing else.
    let key_given = |var: &str| env.get(var).is_some_and(|v| !v.trim().is_empty());
    crate::config::defaults::default_models(
        &mut config,
        key_given("OPENAI_API_KEY"),
        key_given("ANTHROPIC_API_KEY"),
    );
    Ok(config)
}

pub async fn main(cli: Cli, env: BTreeMap<String, String>) -> u8 {
    init_tracing(&env);
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Chat(args) => chat::run(config_flag, &env, args).await,
        Command::Interactive(flags) => interactive::run(config_flag, &env, flags).await,
        Command::ConfigCmd => config_cmd::run(config_flag, &env),
        Command::ConfigSchema(args) => config_cmd::schema(args.file),
        Command::Models(args) => models::run(config_flag, &env, args).await,
        Command::Serve => serve::run(config_flag, &env).await,
        Command::Action => action::run(&env).await,
        Command::Setup(args) => setup::run(args).await,
    }
}

/// The log: warnings and errors, or what `RUST_LOG` asks for (`--verbose` shows the run's
/// steps and tool calls, not log lines). Colour only on a terminal and without `NO_COLOR`.
fn init_tracing(env: &BTreeMap<String, String>) {
    use tracing_subscriber::EnvFilter;
    let filter = env
        .get("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let ansi = progress::escapes_allowed(env);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(|| ScrubbedStderr);
    let _ = if env.get("EQUITR_LOG_FORMAT").map(String::as_str) == Some("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Standard error for the log, scrubbed of secrets: each event the formatter writes is
/// one `write` of a whole line, scrubbed before it reaches the terminal or a log file.
struct ScrubbedStderr;

impl std::io::Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::scrub::scrub(&text);
        std::io::stderr().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Print an error as one line and return the exit code for it.
pub(crate) fn fail(code: u8, message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    code
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and flag of `--help` says what it is for, and no help text sends the
    /// reader to a document they do not have.
    #[test]
    fn every_command_and_flag_has_help_naming_no_missing_document() {
        fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                match arg.get_help() {
                    None => problems.push(format!("{path} --{id}: no help")),
                    Some(h) if h.to_string().contains(".md") => {
                        problems.push(format!("{path} --{id}: names a document: {h}"))
                    }
                    Some(_) => {}
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    problems.push(format!("{name}: no description"));
                }
                walk(sub, &name, problems);
            }
        }
        let mut problems = Vec::new();
        walk(&super::Cli::command(), "equitr-coder", &mut problems);
        assert_eq!(problems, Vec::<String>::new());
    }
}
