use anyhow::Context;
use clap::Parser;
use daemon::cli::{Args, Command};
use daemon::{State, Targets};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return usage_error(err),
    };
    if let Some(Command::Admin(admin)) = &args.command {
        return match daemon::admin::run(admin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("glfs-iscsi admin: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
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

/// A bad command line: one line naming the value (clap's first), exit status 2; help and
/// version print as clap prints them.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let text = err.to_string();
    eprintln!(
        "glfs-iscsi: {}",
        text.lines()
            .next()
            .unwrap_or("bad command line")
            .trim_start_matches("error: ")
    );
    ExitCode::from(2)
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
    let grace = plan.server.drain_timeout;
    // When the shutdown signal came: the grace time counts from there.
    let signalled: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let targets = runtime.block_on(async {
        // The control socket comes first: a path in use fails before anything listens,
        // and whoever sees the portal accept connections also finds the socket there.
        let control = match &args.control_socket {
            Some(path) => Some((daemon::control::bind(path)?, path.clone())),
            None => None,
        };
        // The portal's address is taken now (a port in use fails at once, port 0 gets
        // its number for the targets' addresses), but it listens only once the LUNs are
        // open: until then a connect is refused, so no initiator logs in to find a LUN
        // missing or waits in its login on a slow volume mount.
        let socket = bind_portal(plan.portal)
            .with_context(|| format!("cannot listen on {}", plan.portal))?;
        let listening = socket.local_addr()?;
        let limits = iscsi::Limits {
            require_digests: plan.server.require_digests,
            ..iscsi::Limits::default()
        };
        let targets = Arc::new(Targets::with_stores(Vec::new(), listening, limits)?);
        let (portals, added) = daemon::portals::Portals::new(tokio::runtime::Handle::current());
        let portals = Arc::new(portals);
        let state = Arc::new(
            State::new(
                targets.clone(),
                plan.config_path.clone(),
                args.gfapi_library.clone(),
            )
            .with_cli_access(plan.access.clone())
            .with_settings(args.server())
            .with_portals(portals.clone())
            .with_main_portal(plan.cli_portal, plan.portal)
            .with_cli_alua(args.alua_group.is_some()),
        );
        // The command line's gateway settings win over the config file's.
        let (file_gateway, file_alua) = plan.config.gateway().context("config file")?;
        let gateway_id = args.gateway_id.clone().or(file_gateway);
        if let Some(owner) = &gateway_id {
            daemon::gateways::set_gateway(owner.clone());
        }
        let alua = match args.alua_group {
            Some(id) => {
                let own = scsi::PortGroup {
                    id,
                    state: args
                        .alua_state
                        .unwrap_or(scsi::AccessState::ActiveOptimized),
                };
                Some(scsi::Alua::new(own, args.alua_peers.clone()).context("--alua-peer")?)
            }
            None => file_alua,
        };
        let specs = plan.config.target_specs(args.gfapi_library.as_ref())?;
        // Active/passive failover: every gateway starts standby; the states follow the
        // data fence from the first round on (`daemon::failover`).
        let failover =
            args.alua_failover || (args.alua_group.is_none() && plan.config.alua_failover);
        if args.alua_stall_after.is_some() && !failover {
            anyhow::bail!(
                "--alua-stall-after needs alua failover (--alua-failover or alua_failover)"
            );
        }
        let alua = if failover {
            daemon::failover::check(gateway_id.as_ref(), alua.as_ref(), &specs)?;
            daemon::failover::enable();
            if let Some(bound) = args.alua_stall_after.or(plan.config.stall_after()?) {
                daemon::stall::set_stall_after(bound);
            }
            alua.map(|a| daemon::failover::states(&a, false, None))
        } else {
            alua
        };
        if let Some(alua) = alua {
            targets.set_alua(alua);
        }
        let luns: usize = specs.iter().map(|t| t.luns.len()).sum();
        // Each store's open is bounded by its own time limit (glfs: `timeout=`); a slow
        // one is announced, so the operator knows why the portal does not answer yet.
        let opening = tokio::task::spawn_blocking({
            let (state, config) = (state.clone(), plan.config.clone());
            move || state.start(config)
        });
        tokio::pin!(opening);
        let slow = tokio::time::sleep(SLOW_OPEN);
        tokio::pin!(slow);
        let opened = loop {
            tokio::select! {
                opened = &mut opening => break opened,
                () = &mut slow, if !slow.is_elapsed() => daemon::logging::notice(&format!(
                    "opening {luns} LUN(s) takes a while; the portal {listening} listens \
                     once they are open"
                )),
            }
        };
        opened.context("opening the LUNs")??;
        // Metrics on before the first failover round, so the LUNs it takes are counted.
        let metrics = args.metrics.map(|addr| (addr, daemon::metrics::enable()));
        // The first failover round before the portal listens: a gateway that can take the
        // fence is active when the first host logs in.
        let failover = match (&gateway_id, failover) {
            (Some(owner), true) => {
                let mut f = daemon::failover::Failover::new(owner.clone());
                let t = targets.clone();
                Some(
                    tokio::task::spawn_blocking(move || {
                        f.round(&t, Instant::now());
                        f
                    })
                    .await
                    .context("the first failover round")?,
                )
            }
            _ => None,
        };
        let listener = socket
            .listen(LISTEN_BACKLOG)
            .and_then(|l| l.into_std())
            .and_then(daemon::portals::Portals::adopt)
            .with_context(|| format!("cannot listen on {listening}"))?;
        // The main portal's connections come through the portals' channel like those of
        // the added ones, so that a changed `portal` moves it live (`State::apply`).
        portals.start(listener)?;
        // The connect hints name an address an initiator on this host can use: a wildcard
        // portal is reached through loopback.
        let portal = hint_address(listening);
        for target in &specs {
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
        let control_path = control.as_ref().map(|(_, path)| path.clone());
        if let Some((control, path)) = control {
            daemon::logging::notice(&format!(
                "administer with  glfs-iscsi admin --socket {} target list",
                path.display()
            ));
            tokio::spawn(daemon::control::serve(control, state.clone()));
        }
        tokio::spawn(reload_on_sighup(state.clone()));
        // The space of every LUN's storage: metrics, and a warning before a thin LUN's
        // volume runs full.
        tokio::spawn(daemon::space::watch(targets.clone()));
        // ROD tokens (POPULATE TOKEN) expire after their inactivity timeout.
        tokio::spawn(targets.clone().expire_rod_tokens());
        if let Some(owner) = &gateway_id {
            tokio::spawn(daemon::gateways::refresh(
                targets.clone(),
                owner.clone(),
                failover,
            ));
        }
        if let Some((addr, metrics)) = metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
            daemon::logging::notice(&format!(
                "metrics on http://{}/metrics",
                listener.local_addr()?
            ));
            tokio::spawn(daemon::metrics::serve(listener, metrics));
        }
        if let Some(cc) = plan.server.connection.tcp_congestion {
            daemon::logging::notice(&format!(
                "connections to the portals get TCP congestion control {cc}"
            ));
        }
        daemon::service::ready(&format!("serving on {listening}"));
        let at = signalled.clone();
        let stopping = state.clone();
        let signal = async move {
            shutdown_signal().await;
            let _ = at.set(Instant::now());
            // A LUN being cloned stops copying (its unfinished file removed), so the
            // runtime's end does not wait for the whole copy.
            stopping.cancel_clones();
            daemon::service::stopping();
            // No new connection on any portal while the sessions drain.
            portals.close_all();
        };
        daemon::server::serve_portals(&plan.server, None, targets.clone(), added, signal).await;
        if let Some(path) = control_path {
            let _ = std::fs::remove_file(path);
        }
        anyhow::Ok(targets)
    })?;
    // Shutting the runtime down ends the tasks still holding the targets (control socket,
    // SIGHUP reloads), so the stores' last references are the ones closed below. An admin
    // request still at work on a blocking thread (a fully provisioned LUN's allocation, a
    // volume mount that does not answer) is waited for only within the grace time: past
    // it the process goes on to close the stores and exits, ending that work with it.
    let since = signalled.get().map_or(Duration::ZERO, Instant::elapsed);
    runtime.shutdown_timeout(grace.saturating_sub(since).max(CLOSE_AT_LEAST));
    // Flush and close the stores in what is left of the grace time (at least
    // CLOSE_AT_LEAST), never waiting for a hung volume past it.
    let since = signalled.get().map_or(Duration::ZERO, Instant::elapsed);
    let limit = grace.saturating_sub(since).max(CLOSE_AT_LEAST);
    if let Err(unfinished) = daemon::shutdown::close_stores(targets, limit) {
        daemon::logging::notice(&format!(
            "exiting without waiting longer for the backing stores ({unfinished} within {limit:?})"
        ));
    }
    daemon::logging::notice("stopped");
    Ok(())
}

/// After this long opening the LUNs at start-up, the daemon says it is still at it.
const SLOW_OPEN: Duration = Duration::from_secs(1);

/// Connections waiting to be accepted (as many as `TcpListener::bind` allows).
const LISTEN_BACKLOG: u32 = 1024;

/// A socket bound to `addr` (address reuse as `TcpListener::bind`), not yet listening.
fn bind_portal(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Least time the stores get to flush and close at shutdown, even when draining the
/// connections used up the whole grace time.
const CLOSE_AT_LEAST: Duration = Duration::from_secs(1);

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

/// SIGHUP rereads the config file and applies it, logging what changed or why not.
async fn reload_on_sighup(state: Arc<State>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot catch SIGHUP; the config file is reread only at start");
        return;
    };
    while hup.recv().await.is_some() {
        let state = state.clone();
        let outcome = tokio::task::spawn_blocking(move || state.reload()).await;
        match outcome {
            Ok(Ok(changes)) => {
                tracing::info!(changes = changes.len(), "SIGHUP: config file reread")
            }
            Ok(Err(err)) => {
                tracing::error!("SIGHUP: config file not applied: {err:#}")
            }
            Err(err) => tracing::error!(%err, "SIGHUP: reload failed"),
        }
    }
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
