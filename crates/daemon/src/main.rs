use anyhow::Context;
use clap::Parser;
use daemon::cli::Args;
use daemon::{serve, Targets};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs redirected to files or journald stay plain.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line naming the problem: the error and its causes.
            eprintln!("glfs-iscsi: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(plan.portal)
            .await
            .with_context(|| format!("cannot listen on {}", plan.portal))?;
        let portal = listener.local_addr()?;
        let targets = Arc::new(Targets::open(
            &plan.targets,
            portal,
            iscsi::Limits::default(),
        )?);
        for target in &plan.targets {
            for lun in &target.luns {
                eprintln!(
                    "glfs-iscsi: serving {} LUN {} on {portal}: iscsi://{portal}/{}/{}",
                    target.name, lun.lun, target.name, lun.lun
                );
            }
        }
        eprintln!(
            "glfs-iscsi: connect with  iscsi-ls iscsi://{portal}  or  \
             iscsiadm -m discovery -t st -p {portal}"
        );
        serve(&plan.server, listener, targets, shutdown_signal()).await;
        eprintln!("glfs-iscsi: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
