use anyhow::Context;
use clap::Parser;
use daemon::cli::Args;
use daemon::{serve, Targets};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::logging::init(&args.log, args.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line naming the problem: the error and its causes.
            daemon::logging::fatal(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    // With I/O threads the main runtime only accepts; without, it serves connections too.
    let runtime = if plan.server.io_threads > 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(plan.portal)
            .await
            .with_context(|| format!("cannot listen on {}", plan.portal))?;
        let listening = listener.local_addr()?;
        let targets = Targets::open(&plan.targets, listening, iscsi::Limits::default())?;
        targets
            .replace_access(plan.access)
            .context("access control")?;
        let targets = Arc::new(targets);
        // The connect hints name an address an initiator on this host can use: a wildcard
        // portal is reached through loopback.
        let portal = hint_address(listening);
        for target in &plan.targets {
            for lun in &target.luns {
                daemon::logging::notice(&format!(
                    "serving {} LUN {} on {listening}: iscsi://{portal}/{}/{}",
                    target.name, lun.lun, target.name, lun.lun
                ));
            }
        }
        daemon::logging::notice(&format!(
            "connect with  iscsi-ls iscsi://{portal}  or  \
             iscsiadm -m discovery -t st -p {portal}"
        ));
        if let Some(addr) = args.metrics {
            let metrics = daemon::metrics::enable();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
            daemon::logging::notice(&format!(
                "metrics on http://{}/metrics",
                listener.local_addr()?
            ));
            tokio::spawn(daemon::metrics::serve(listener, metrics));
        }
        daemon::service::ready(&format!("serving on {listening}"));
        serve(&plan.server, listener, targets, async {
            shutdown_signal().await;
            daemon::service::stopping();
        })
        .await;
        daemon::logging::notice("stopped");
        Ok(())
    })
}

/// `addr`, with a wildcard IP (0.0.0.0 or ::) replaced by loopback of the same family.
fn hint_address(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::hint_address;

    #[test]
    fn connect_hints_name_a_reachable_address() {
        let hint = |a: &str| hint_address(a.parse().unwrap()).to_string();
        assert_eq!(hint("0.0.0.0:3260"), "127.0.0.1:3260");
        assert_eq!(hint("[::]:3260"), "[::1]:3260");
        assert_eq!(hint("192.0.2.7:3261"), "192.0.2.7:3261");
    }
}

#[cfg(test)]
mod limits_in_step {
    #[test]
    fn the_iscsi_data_limit_is_the_scsi_maximum_transfer() {
        // The iSCSI layer refuses to collect data past its limit and the SCSI layer refuses
        // transfers past its maximum; a gap between them would either buffer data the SCSI
        // layer throws away, or refuse writes the SCSI layer reports in its Block Limits.
        assert_eq!(
            iscsi::Limits::default().max_command_data_out,
            scsi::MAX_TRANSFER_BYTES
        );
    }
}
