//! Project tasks. Run as `cargo xtask <task>`; see `cargo xtask --help`.

mod access;
mod bench;
mod conformance;
mod demo;
mod docker;
mod fake;
mod gluster;
mod live;
mod offline;
mod target;
mod tidy;
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
    /// Build, run the workspace tests, and drive the real target on the fake gfapi with
    /// libiscsi (no cluster, no root, no Docker).
    TestOffline,
    /// The offline checks again on a live Gluster volume (a native glusterd with one brick
    /// on 127.0.0.2; needs root), plus the fake-versus-real differential tests.
    TestGluster {
        /// Where the volume comes from: docker (3-node replica in containers), native (one
        /// brick on this machine's glusterd) or auto (docker, else native).
        #[arg(long, default_value = "auto")]
        fixture: String,
    },
    /// Bring up the 3-node Gluster fixture in Docker and print its timings (then tear down).
    FixtureSmoke,
    /// Run every iscsi-test-cu SCSI.* and iSCSI.* suite against the target on each backend
    /// and compare with testdata/conformance/<backend>.txt (results may only improve).
    Conformance {
        /// Backends to run: memory, file, glfs-fake.
        #[arg(long = "backend", default_values = ["memory", "file", "glfs-fake"])]
        backends: Vec<String>,
        /// Only suites whose name starts with this (e.g. SCSI.Read10).
        #[arg(long)]
        suite: Option<String>,
        /// Record the current results as the new snapshot.
        #[arg(long)]
        bless: bool,
    },
    /// Run the target on an embedded default: a glfs LUN on a fake gfapi volume in
    /// ./demo-volumes, in the foreground.
    Demo {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:3260")]
        portal: String,
        /// Size of the demo LUN.
        #[arg(long, default_value = "1G")]
        size: String,
    },
    /// Performance goals side by side: fio gfapi ceiling, tgt and our target.
    Bench(bench::BenchOptions),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::env::set_current_dir(util::project_root())?;
    match cli.task {
        Task::BuildFake => {
            let path = fake::build()?;
            println!("{}", path.display());
        }
        Task::TestOffline => offline::run()?,
        Task::TestGluster { fixture } => live::run(&fixture)?,
        Task::FixtureSmoke => {
            for (step, took) in docker::smoke(3)? {
                println!("{step}: {took:.1?}");
            }
        }
        Task::Conformance {
            backends,
            suite,
            bless,
        } => conformance::run(&backends, suite.as_deref(), bless)?,
        Task::Demo { portal, size } => demo::run(&portal, &size)?,
        Task::Bench(opts) => bench::run(opts)?,
    }
    Ok(())
}
