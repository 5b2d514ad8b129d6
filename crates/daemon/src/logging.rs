//! The daemon's log: tracing events on stderr, as text (the default) or as JSON lines
//! (`--log-format json`), filtered by `--log` (tracing's env-filter syntax).
//!
//! Every event of a connection is inside its `session` span, which carries the peer
//! address from the start, and the initiator name, ISID, TSIH and target from login on:
//! text lines show it as `session{peer=.. initiator=..}:`, JSON lines as a `span` object.
//! Events on a store's threads (the glfs store's reconnect and hold threads) are in the
//! store's span under the `lun` span it was opened in ([`lun_span`]); one that concerns a
//! single command is logged in that command's session span. JSON lines list every span
//! of an event (`spans`), its innermost in `span`.
//! No secret is ever a field: CHAP secrets are held as redacting types.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, fields, target, and the session span.
    Json,
}

static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// A line for the operator starting the daemon (where it serves, how to connect): on
/// stderr as `glfs-iscsi: TEXT` with text logs; an info event with JSON logs, so that
/// every line of a JSON log is JSON.
pub fn notice(text: &str) {
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => eprintln!("glfs-iscsi: {text}"),
        LogFormat::Json => tracing::info!("{text}"),
    }
}

/// The one line saying why the daemon stops on an error (with JSON logs, an error event).
pub fn fatal(text: &str) {
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => eprintln!("glfs-iscsi: {text}"),
        LogFormat::Json => tracing::error!("{text}"),
    }
}

/// Installs the global subscriber; an invalid `filter` falls back to `info`.
pub fn init(filter: &str, format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only on a terminal: logs redirected to files or journald stay plain.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// The span every event of one connection is logged in; [`record_login`] fills in who
/// logged in.
pub fn session_span(peer: std::net::SocketAddr) -> tracing::Span {
    tracing::info_span!(
        "session",
        %peer,
        initiator = tracing::field::Empty,
        isid = tracing::field::Empty,
        tsih = tracing::field::Empty,
        target = tracing::field::Empty,
    )
}

/// The span a LUN's store is opened in: the store's own span (glfs: `glfs_store{volume,
/// path}`) is its child, so events on store threads, which serve every session of the LUN,
/// name the target and LUN.
pub fn lun_span(target: &str, lun: u16) -> tracing::Span {
    tracing::info_span!("lun", target, lun)
}

/// Records a completed login in the current session span.
pub fn record_login(initiator: &str, isid: [u8; 6], tsih: u16, target: &str) {
    let span = tracing::Span::current();
    span.record("initiator", initiator);
    span.record("isid", isid_hex(isid).as_str());
    span.record("tsih", tsih);
    if !target.is_empty() {
        span.record("target", target);
    }
}

/// An ISID as 12 hex digits, as initiators and tgtadm show it.
pub fn isid_hex(isid: [u8; 6]) -> String {
    isid.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn isids_print_as_twelve_hex_digits() {
        assert_eq!(
            super::isid_hex([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]),
            "801234560001"
        );
    }
}
