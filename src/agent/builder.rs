//! Building an [`Orchestrator`]: its models, ledger, sink, toolchain and trust.

use super::*;

/// Builds an [`Orchestrator`]. Front doors replace the parts they own: the service passes
/// its database ledger, tests a fast retry policy.
pub struct OrchestratorBuilder {
    config: Config,
    repo: std::path::PathBuf,
    ledger: Option<Arc<dyn Ledger>>,
    sink: Arc<dyn EventSink>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    prices: PriceTable,
    allow_unsandboxed: bool,
    /// Why the job's context is untrusted (text from someone without write access), and
    /// whether the repository still lets commands run then.
    untrusted: Option<(String, bool)>,
    /// The repository is a fresh checkout of HEAD ([`TreeWatcher::set_pristine`]).
    pristine: bool,
    clients: Vec<(AgentRole, Arc<dyn Provider>)>,
    toolchain: Toolchain,
}

/// What `run_command` may see of toolchains installed under a hidden home directory.
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    /// Made visible read-only inside the sandbox.
    pub ro_paths: Vec<std::path::PathBuf>,
    /// Appended to the commands' PATH.
    pub path: Vec<std::path::PathBuf>,
    /// Set for commands. Never secrets: commands run model-written code.
    pub env: Vec<(String, String)>,
}

impl Toolchain {
    /// Rust's rustup toolchain under `home`, if there is one: `~/.rustup` and
    /// `~/.cargo/bin` read-only, with a scratch CARGO_HOME (the real one may hold registry
    /// credentials).
    pub fn detect_rust(home: &Path) -> Toolchain {
        let mut t = Toolchain::default();
        let rustup = home.join(".rustup");
        let cargo_bin = home.join(".cargo").join("bin");
        if rustup.is_dir() && cargo_bin.is_dir() {
            t.ro_paths = vec![rustup.clone(), cargo_bin.clone()];
            t.path = vec![cargo_bin];
            t.env = vec![
                ("RUSTUP_HOME".into(), rustup.display().to_string()),
                ("CARGO_HOME".into(), "/tmp/cargo-home".into()),
            ];
        }
        t
    }
}

impl OrchestratorBuilder {
    /// Let sandboxed commands use these toolchain directories.
    pub fn toolchain(mut self, toolchain: Toolchain) -> Self {
        self.toolchain = toolchain;
        self
    }

    /// Use this provider for a role instead of the one its configuration names (a custom
    /// provider, or an in-process model for benchmarks). The role's model id and price still
    /// come from the configuration.
    pub fn client(mut self, role: AgentRole, client: Arc<dyn Provider>) -> Self {
        self.clients.push((role, client));
        self
    }
    /// Use this ledger (a job's, with its caps): a model with no known price is refused,
    /// as with `llm.budget`, since its calls could not be counted against them.
    pub fn ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }
    pub fn sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = sink;
        self
    }
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }
    /// Honour `sandbox: none`. Only the local CLI sets this; a service never runs commands bare.
    pub fn allow_unsandboxed(mut self, allow: bool) -> Self {
        self.allow_unsandboxed = allow;
        self
    }

    /// Untrusted-context mode (`why`: whose text it is): `run_command` is not offered unless
    /// `allow_commands`, and the supervisor reviews the final diff whatever the task's class,
    /// even in single-agent mode.
    pub fn untrusted(mut self, why: Option<String>, allow_commands: bool) -> Self {
        self.untrusted = why.map(|w| (w, allow_commands));
        self
    }

    /// The repository is a fresh checkout of HEAD (a job's clone): the first run's baseline
    /// is HEAD's tree instead of a snapshot of every file.
    pub fn pristine_checkout(mut self) -> Self {
        self.pristine = true;
        self
    }

    pub async fn build(self) -> anyhow::Result<Orchestrator> {
        let cfg = self.config;
        let multi = cfg.orchestrator.use_multi_agent;
        let http = match self.http {
            Some(h) => h,
            None => default_http()?,
        };
        let (ledger, enforced) = match self.ledger {
            Some(l) => (LedgerSource::Shared(l), true),
            None => {
                // `llm.budget` is the cap of one run: each task of a session gets its own.
                let cap = cfg.llm.budget.and_then(Usd::from_dollars_f64);
                (LedgerSource::PerRun(cap), cap.is_some())
            }
        };
        let mut prices = self.prices;
        for (model, p) in &cfg.llm.pricing {
            prices.insert(
                model,
                model::price_from_override(*p).with_context(|| format!("llm.pricing.{model}"))?,
            );
        }
        let role = |r: AgentRole| -> anyhow::Result<RoleModel> {
            let settings = cfg.resolve(r)?;
            let client = match self.clients.iter().find(|(cr, _)| *cr == r) {
                Some((_, c)) => c.clone(),
                None => {
                    // A hosted API without a key would only answer 401 after a reservation.
                    if let Some(var) = settings.missing_key() {
                        anyhow::bail!(
                            "no API key for the {r} model ({} at {}): set {var} or llm.api_key",
                            settings.provider,
                            settings.api_base,
                        );
                    }
                    model::build_client(&settings, http.clone())
                        .with_context(|| format!("the {r} model's client"))?
                }
            };
            let m = RoleModel::new(settings, &prices, client, self.retry)
                .with_context(|| format!("llm.models.{r}.pricing"))?;
            if enforced && m.price.is_none() {
                anyhow::bail!(
                    "no price is known for the {r} model `{}` and a budget is in force: set llm.models.{r}.pricing \
                     {{ input_per_mtok, output_per_mtok }} (or llm.pricing.\"{}\") in the config",
                    m.model(),
                    m.model()
                );
            }
            Ok(m)
        };
        let worker = role(AgentRole::Worker)?;
        // The supervisor's model is resolved even in single-agent mode: the cost summary
        // compares the run with what it would have cost there.
        let supervisor = role(AgentRole::Supervisor)?;

        let sandbox = match cfg.sandbox {
            SandboxSetting::None if self.allow_unsandboxed => SandboxMode::None,
            _ => SandboxMode::Bubblewrap,
        };
        let opts = |access| ToolboxOptions {
            access,
            sandbox,
            command_timeout: Duration::from_secs(cfg.orchestrator.command_timeout_secs.max(1)),
            extra_ro_paths: self.toolchain.ro_paths.clone(),
            extra_path: self.toolchain.path.clone(),
            extra_env: self.toolchain.env.clone(),
            ..ToolboxOptions::default()
        };
        let repo = self.repo;
        let access = match &self.untrusted {
            Some((_, false)) => Access::ReadWriteNoCommands,
            _ => Access::ReadWrite,
        };
        let toolbox = Toolbox::new(&repo, opts(access))
            .with_context(|| format!("opening the repository at {}", repo.display()))?;
        let readonly = Toolbox::new(&repo, opts(Access::ReadOnly))?;
        let watcher = TreeWatcher::new(toolbox.root()).await?;
        watcher.set_pristine(self.pristine);
        let sensitive = sensitive_paths(&cfg.orchestrator.sensitive_paths)?;
        let root = toolbox.root().display().to_string();
        let session_costs = CostTracker::new(supervisor.model().to_string(), supervisor.price);
        Ok(Orchestrator {
            history: vec![Message::system(prompts::worker_system(&root, multi))],
            cfg,
            worker,
            supervisor,
            multi,
            toolbox,
            readonly,
            ledger,
            sensitive,
            watcher,
            sink: self.sink,
            session_costs: Mutex::new(session_costs),
            approved_plan: None,
            untrusted: self.untrusted.map(|(why, _)| why),
        })
    }
}

impl Orchestrator {
    pub fn builder(config: Config, repo: impl AsRef<Path>) -> OrchestratorBuilder {
        OrchestratorBuilder {
            config,
            repo: repo.as_ref().to_path_buf(),
            ledger: None,
            sink: Arc::new(NoSink),
            http: None,
            retry: RetryPolicy::default(),
            prices: PriceTable::builtin(),
            allow_unsandboxed: false,
            untrusted: None,
            pristine: false,
            clients: Vec::new(),
            toolchain: Toolchain::default(),
        }
    }
}

/// The globs of `orchestrator.sensitive_paths` (or the repository's `review.sensitive_paths`).
fn sensitive_paths(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut globs = GlobSetBuilder::new();
    for p in patterns {
        globs.add(Glob::new(p).with_context(|| format!("sensitive path `{p}`"))?);
    }
    Ok(globs.build()?)
}

fn default_http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("equitr-coder/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}
