//! The subcommands. Each returns an exit code; errors are printed as one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};

mod action;
mod chat;
mod config_cmd;
mod interactive;
mod models;
mod render;
mod serve;

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
    /// List the models the provider offers, with their known prices.
    Models(ModelsArgs),
    /// Run the GitHub App service (webhooks → jobs → pull requests and reviews).
    Serve,
    /// Run inside a GitHub Actions job: the event, inputs and token come from the runner's
    /// environment (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY, INPUT_*).
    Action,
}

#[derive(Debug, Args)]
pub struct RunFlags {
    /// Use the supervisor + worker pair (otherwise the worker model works alone).
    #[arg(short = 'M', long = "multi-agent")]
    pub multi_agent: bool,
    /// Model for the supervisor, and for the worker unless it has its own.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    #[arg(long, value_name = "M")]
    pub supervisor_model: Option<String>,
    #[arg(long, value_name = "M")]
    pub worker_model: Option<String>,
    /// USD cap for the run: no model call that could cross it is made.
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<u32>,
    /// The repository to work on (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Print every tool call.
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
    Config::load(file.as_ref().map(|(p, _)| p.as_path()), env, overrides)
}

pub async fn main(cli: Cli, env: BTreeMap<String, String>) -> u8 {
    let verbose = matches!(&cli.command, Command::Chat(a) if a.flags.verbose)
        || matches!(&cli.command, Command::Interactive(f) if f.verbose);
    init_tracing(&env, verbose);
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Chat(args) => chat::run(config_flag, &env, args).await,
        Command::Interactive(flags) => interactive::run(config_flag, &env, flags).await,
        Command::ConfigCmd => config_cmd::run(config_flag, &env),
        Command::Models(args) => models::run(config_flag, &env, args).await,
        Command::Serve => serve::run(config_flag, &env).await,
        Command::Action => action::run(&env).await,
    }
}

fn init_tracing(env: &BTreeMap<String, String>, verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "equitr_coder=debug"
    } else {
        "warn"
    };
    let filter = env
        .get("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
