//! JSON Schemas of the two config files, generated from the types that parse them, so an
//! editor (with `# yaml-language-server: $schema=…` on the file's first line) completes and
//! checks exactly the keys the parser takes. The checked-in copies under `schema/` are
//! compared with these by the tests.

/// The file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// `.github/equitr.yml`, in each repository.
    Repo,
    /// `~/.equitr/config.yaml`, for the command line and `serve`.
    Cli,
}

/// Where the schemas are published, for the `$schema` line.
pub const BASE_URL: &str = "https://raw.githubusercontent.com/equitr/equitr-coder/main/schema";

/// The schema as pretty JSON, with its `$id`.
pub fn json(which: Which) -> String {
    let (mut schema, file) = match which {
        Which::Repo => (
            schemars::schema_for!(super::repo::RepoConfig),
            "equitr.schema.json",
        ),
        Which::Cli => (
            schemars::schema_for!(super::file::FileConfig),
            "config.schema.json",
        ),
    };
    schema.insert("$id".into(), format!("{BASE_URL}/{file}").into());
    // Serialising a JSON value cannot fail.
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
