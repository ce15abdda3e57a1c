//! `jinke`: the command line. `jinke serve` runs the server.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jinke::config::ServeConfig;
use jinke::server::Server;
use jinke_signaling::Role;
use tracing_subscriber::EnvFilter;

/// Jinke (金课): a real-time streaming classroom server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: REST API, web client, signaling and media.
    Serve(ServeConfig),
    /// Manage schools (tenants); works while the server runs.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Add a school: prints its new API key (stored only as a hash) and webhook secret.
    Add {
        /// The school's name.
        name: String,
        /// Where its webhooks go.
        #[arg(long)]
        webhook_url: Option<String>,
        /// Print `{"id", "api_key", "webhook_secret"}` as JSON.
        #[arg(long)]
        json: bool,
        /// The server's data folder.
        #[arg(long, env = "JINKE_DATA_DIR", default_value = "./data")]
        data_dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .init();
    let config = match Cli::parse().command {
        Command::Serve(config) => config,
        Command::Tenant(TenantCommand::Add {
            name,
            webhook_url,
            json,
            data_dir,
        }) => return add_tenant(&name, webhook_url, json, &data_dir),
    };
    let dev = config.dev;
    let server = Server::start(config).await?;
    if dev {
        print_dev_banner(&server).context("preparing the demo lesson")?;
    }
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// `--dev`: makes sure the demo lesson exists and prints the API key and join links.
fn print_dev_banner(server: &Server) -> anyhow::Result<()> {
    let state = &server.state;
    let lesson = jinke::api::demo_lesson(state)?;
    let link = |identity: &str, name: &str, role: Role| {
        let (token, _) = state.issue_token(&lesson, identity, name, role, 12 * 3600);
        state.join_url(&lesson.id, &token)
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nJinke dev mode: demo lesson {:?} ({:?})",
        lesson.title, lesson.mode
    )?;
    writeln!(out, "  API key:   {}", state.api_key)?;
    writeln!(
        out,
        "  API:       {}/api/v1/lessons/{}",
        state.public_url, lesson.id
    )?;
    writeln!(
        out,
        "  Teacher:   {}",
        link("teacher", "李老师", Role::Teacher)
    )?;
    for i in 1..=2 {
        writeln!(
            out,
            "  Student {i}: {}",
            link(&format!("student-{i}"), &format!("学员{i}"), Role::Student)
        )?;
    }
    writeln!(out, "  (links last 12 hours; add &lang=en for English)\n")?;
    Ok(())
}

/// `jinke tenant add`: creates a school in the data folder's database.
fn add_tenant(
    name: &str,
    webhook_url: Option<String>,
    json: bool,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 200,
        "the name must be 1 to 200 characters"
    );
    if let Some(u) = &webhook_url {
        let parsed = url::Url::parse(u).context("--webhook-url")?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "--webhook-url must be http or https"
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    let store = jinke::store::Store::open(&data_dir.join("jinke.sqlite3"))
        .context("opening the database")?;
    let school = jinke::store::School {
        id: jinke::api::random_id(),
        name: name.to_owned(),
        webhook_url,
        webhook_secret: jinke::random_secret(),
        embed_origins: Vec::new(),
        created_at: jinke::unix_now(),
    };
    let api_key = jinke::random_secret();
    store
        .insert_school(&school, &api_key)
        .context("storing the school")?;
    let mut out = std::io::stdout().lock();
    if json {
        let body = serde_json::json!({
            "id": school.id,
            "api_key": api_key,
            "webhook_secret": school.webhook_secret,
        });
        writeln!(out, "{body}")?;
    } else {
        writeln!(out, "school {:?} added: id {}", school.name, school.id)?;
        writeln!(out, "  API key:        {api_key}")?;
        writeln!(out, "  webhook secret: {}", school.webhook_secret)?;
        writeln!(out, "(the key is stored only as a hash: keep it now)")?;
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
