//! Project tasks. Run as `cargo xtask <task>`; see `cargo xtask --help`.

mod access;
mod bench;
mod ci_workflow;
mod conformance;
mod demo;
mod docker;
mod fake;
mod fuzz;
mod gluster;
mod package;
mod progress;
mod reliability;
mod soak;
mod target;
mod test_gluster;
mod test_offline;
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
        /// Leave the Docker fixture's containers running at the end (for reuse by the next
        /// run, which finds and reuses them); by default they are removed. Remove kept ones
        /// with `cargo xtask fixture-down`.
        #[arg(long)]
        keep_fixture: bool,
        /// Run only the reliability scenarios (fault injection under verified load), not
        /// the live tests and iscsi-test-cu suites before them.
        #[arg(long)]
        scenarios_only: bool,
        /// Run only this reliability scenario (repeatable): short-outage, brick-loss, crash,
        /// control-plane, gateway-failover, gateway-failover-brick-loss, gateway-stall.
        #[arg(long = "scenario", value_parser = clap::builder::PossibleValuesParser::new(reliability::SCENARIOS))]
        scenarios: Vec<String>,
    },
    /// Many verified sessions (default 64 at QD32) on a live glfs LUN for N minutes: 0
    /// errors, the target's memory curve, no thread or descriptor growth (not in CI).
    Soak(soak::SoakOptions),
    /// Remove the Docker Gluster fixture: its containers, their brick volumes and its network
    /// (the engine keeps running).
    FixtureDown,
    /// Bring up the 3-node Gluster fixture in Docker and print its timings (then tear down).
    FixtureSmoke,
    /// Run every iscsi-test-cu SCSI.* and iSCSI.* suite against the target on each backend
    /// and compare with testdata/conformance/<backend>.txt (results may only improve).
    Conformance {
        /// Backends to run: memory, file, glfs-fake, glfs-live (needs --live-volume).
        #[arg(long = "backend", default_values = ["memory", "file", "glfs-fake"])]
        backends: Vec<String>,
        /// The live Gluster volume (`VOLUME@HOST`) of the glfs-live backend.
        #[arg(long)]
        live_volume: Option<String>,
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
    /// Performance goals side by side: fio gfapi ceiling, tgt and our target, each
    /// workload's sides interleaved in rounds (about 20 min with the defaults).
    Bench(bench::BenchOptions),
    /// Build the Debian package (cargo-deb, installed when missing) with the systemd unit
    /// and the example configuration, check it in a scratch root and print its path.
    Package {
        /// Cargo profile of the packaged binary (dev: the test build, faster).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Also install it for real (dpkg -i, then dpkg -r and dpkg -P) in a container of
        /// the Docker fixture's Debian 12 base image (starts dockerd when needed).
        #[arg(long)]
        docker: bool,
    },
    /// Run each cargo-fuzz target (nightly) for a time budget under nice; seeds in
    /// testdata/fuzz/<target>/, failing inputs in target/fuzz/artifacts/<target>/.
    Fuzz(fuzz::FuzzOptions),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::env::set_current_dir(util::project_root())?;
    match cli.task {
        Task::BuildFake => {
            let path = fake::build()?;
            println!("{}", path.display());
        }
        Task::TestOffline => test_offline::run()?,
        Task::TestGluster {
            fixture,
            keep_fixture,
            scenarios_only,
            scenarios,
        } => test_gluster::run(&fixture, keep_fixture, scenarios_only, &scenarios)?,
        Task::FixtureDown => docker::cluster_down()?,
        Task::Soak(opts) => test_gluster::soak(&opts)?,
        Task::FixtureSmoke => {
            for (step, took) in docker::smoke(3)? {
                println!("{step}: {took:.1?}");
            }
        }
        Task::Conformance {
            backends,
            suite,
            bless,
            live_volume,
        } => conformance::run(&backends, suite.as_deref(), bless, live_volume.as_deref())?,
        Task::Demo { portal, size } => demo::run(&portal, &size)?,
        Task::Bench(opts) => bench::run(opts)?,
        Task::Package { profile, docker } => package::run(&profile, docker)?,
        Task::Fuzz(opts) => fuzz::run(&opts)?,
    }
    Ok(())
}
