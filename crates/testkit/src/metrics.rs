//! Reading `glfs-iscsi --metrics`: one GET of `/metrics` and the samples of the
//! Prometheus text format it answers (`name{labels} value` lines; `#` lines are comments).
//! Used by the daemon's metrics tests and by `cargo xtask bench`.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GET /metrics from `addr` (`host:port`): the body.
pub fn scrape(addr: &str) -> Result<String> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no HTTP response from {addr}: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET /metrics from {addr}: {}",
            head.lines().next().unwrap_or(head)
        );
    }
    Ok(body.to_string())
}

/// Every sample of a scraped body: the series (name and labels as exposed) and its value.
pub fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
}

/// The value of the sample `series` (name and labels exactly as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    samples(text).find_map(|(s, v)| (s == series).then_some(v))
}

/// The sum of every sample of the metric `name`, whatever its labels; `None` when it has
/// none.
pub fn sum_of(text: &str, name: &str) -> Option<f64> {
    samples(text)
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The text exposition format's shape (prometheus.io "Exposition formats": a HELP and a
    // TYPE comment, then one sample per line, labels in braces, the value after a space).
    const BODY: &str = "# HELP glfs_iscsi_lun_command_duration_seconds From command start to its answer.\n\
# TYPE glfs_iscsi_lun_command_duration_seconds histogram\n\
glfs_iscsi_lun_command_duration_seconds_sum{target=\"iqn.x:t\",lun=\"0\",kind=\"read\"} 0.5\n\
glfs_iscsi_lun_command_duration_seconds_count{target=\"iqn.x:t\",lun=\"0\",kind=\"read\"} 1000\n\
glfs_iscsi_lun_command_duration_seconds_sum{target=\"iqn.x:t\",lun=\"0\",kind=\"write\"} 1.25\n\
glfs_iscsi_lun_command_duration_seconds_count{target=\"iqn.x:t\",lun=\"0\",kind=\"write\"} 500\n\
glfs_iscsi_lun_command_duration_seconds_bucket{target=\"iqn.x:t\",lun=\"0\",kind=\"write\",le=\"+Inf\"} 500\n\
glfs_iscsi_target_sessions{target=\"iqn.x:t\"} 1\n\
# EOF\n";

    #[test]
    fn a_sample_is_found_by_its_whole_series() {
        assert_eq!(
            sample(BODY, "glfs_iscsi_target_sessions{target=\"iqn.x:t\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                BODY,
                "glfs_iscsi_lun_command_duration_seconds_count{target=\"iqn.x:t\",lun=\"0\",kind=\"write\"}"
            ),
            Some(500.0)
        );
        assert_eq!(
            sample(BODY, "glfs_iscsi_target_sessions"),
            None,
            "labels are part of it"
        );
    }

    #[test]
    fn a_metric_sums_over_its_labels_and_not_over_its_neighbours() {
        assert_eq!(
            sum_of(BODY, "glfs_iscsi_lun_command_duration_seconds_sum"),
            Some(1.75)
        );
        assert_eq!(
            sum_of(BODY, "glfs_iscsi_lun_command_duration_seconds_count"),
            Some(1500.0)
        );
        assert_eq!(
            sum_of(BODY, "glfs_iscsi_lun_command_duration_seconds"),
            None
        );
        assert_eq!(sum_of(BODY, "glfs_iscsi_lun_commands_total"), None);
    }
}
