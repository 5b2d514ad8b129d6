//! Project tasks. Run as `cargo xtask <task>`; see `cargo xtask --help`.

mod fake;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Project tasks for the gfapi iSCSI target")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the fake libgfapi.so.0 (versioned drop-in) and print its path.
    BuildFake,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::env::set_current_dir(util::project_root())?;
    match cli.task {
        Task::BuildFake => {
            let path = fake::build()?;
            println!("{}", path.display());
        }
    }
    Ok(())
}
