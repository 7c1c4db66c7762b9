//! `junction`: one binary that runs the whole platform (`serve`) or any part of it alone.
//! This file only wires the command line to the commands.

mod cli;
mod commands;
mod config;
mod failure;
mod logging;
mod roles;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::Failure;

// The router allocates many small JSON values per request from many threads; glibc's
// allocator contends on its arena locks under that load, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("junction: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Config { action } = &cli.command {
        return commands::config_check::run(&cli, action);
    }
    if let Command::Compose { subgraphs, output } = &cli.command {
        return commands::compose::run(subgraphs, output.as_ref()).await;
    }
    let config = cli.load_config()?;
    logging::init(&config.log);
    // `gateway` and `serve` reload their configuration on SIGHUP or when a file changes: the
    // same files, read again.
    let config_file = cli
        .config
        .clone()
        .unwrap_or_else(|| config::DEFAULT_FILE.into());
    if let Command::Gateway { supergraph, .. } = &cli.command {
        let supergraph = supergraph.clone();
        return commands::gateway::run(config, supergraph, config_file, move || cli.load_config())
            .await;
    }
    if let Command::Serve { .. } = &cli.command {
        return commands::serve::run(config, config_file, move || cli.load_config()).await;
    }
    match &cli.command {
        Command::Serve { .. } | Command::Gateway { .. } => unreachable!("handled above"),
        Command::Subgraph { name, listen } => commands::subgraph::run(config, *name, *listen).await,
        Command::Dispatcher => commands::dispatcher::run(config).await,
        Command::Listen {
            key,
            router,
            port,
            event_types,
        } => {
            commands::listen::run(commands::listen::Listen {
                router: router.clone(),
                key: key.clone(),
                port: *port,
                event_types: event_types.clone(),
            })
            .await
        }
        Command::Migrate { action } => commands::migrate::run(&config, action).await,
        Command::Apikey { action } => commands::apikey::run(&config, action).await,
        Command::Tenant { action } => commands::tenant::run(&config, action).await,
        Command::Config { .. } | Command::Compose { .. } => unreachable!("handled above"),
    }
}
