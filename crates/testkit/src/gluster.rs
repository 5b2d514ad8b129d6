//! Files on a live Gluster volume that a test or task made, removed through gfapi (the
//! system's libgfapi) when it is done: for `cargo xtask` (test-gluster, soak, the
//! reliability scenarios) and the live tests that make files of their own.

use anyhow::{Context, Result};

/// Files a task made on a live volume, removed through gfapi (the system's libgfapi) when
/// this is dropped, so test runs leave nothing behind on the fixture volumes. A file already
/// gone is fine; any other failure is printed, never fatal (it is cleanup).
#[derive(Debug)]
pub struct RemoveOnDrop {
    volume: String,
    host: String,
    paths: Vec<String>,
    /// A brick directory on this machine and a name prefix and suffix: files there that
    /// match when this is dropped are removed too (names not known in advance).
    matching: Option<(std::path::PathBuf, String, String)>,
}

impl RemoveOnDrop {
    /// `spec` is `volume@host[,host...]` (the first host is used); `paths` are paths on the
    /// volume.
    pub fn new(spec: &str, paths: impl IntoIterator<Item = String>) -> RemoveOnDrop {
        let (volume, hosts) = spec.split_once('@').unwrap_or((spec, ""));
        RemoveOnDrop {
            volume: volume.to_string(),
            host: hosts.split(',').next().unwrap_or_default().to_string(),
            paths: paths.into_iter().collect(),
            matching: None,
        }
    }

    /// Also removes, when dropped, the files of the volume's top directory whose names
    /// start with `prefix` and end with `suffix`, as brick directory `brick` lists them
    /// (a brick on this machine; elsewhere nothing is listed): the temporary files of
    /// metadata writes a killed gateway left, whose names are its own.
    pub fn with_matching(mut self, brick: &std::path::Path, prefix: &str, suffix: &str) -> Self {
        self.matching = Some((brick.to_path_buf(), prefix.to_string(), suffix.to_string()));
        self
    }

    /// One more file to remove.
    pub fn push(&mut self, path: String) {
        self.paths.push(path);
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some((brick, prefix, suffix)) = &self.matching {
            let found = std::fs::read_dir(brick).into_iter().flatten().flatten();
            for name in found.filter_map(|e| e.file_name().into_string().ok()) {
                if name.starts_with(prefix.as_str()) && name.ends_with(suffix.as_str()) {
                    self.paths.push(name);
                }
            }
        }
        if let Err(e) = remove_files(&self.volume, &self.host, &self.paths) {
            eprintln!(
                "could not remove {} from volume {}: {e:#}",
                self.paths.join(", "),
                self.volume
            );
        }
    }
}

/// Unlinks `paths` on `volume` through a gfapi mount of its own; a missing file is not an
/// error.
pub fn remove_files(volume: &str, host: &str, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let lib = gfapi::Gfapi::load(None).context("load libgfapi to remove test files")?;
    let log = std::path::Path::new("/dev/null");
    let vol = gfapi::Volume::connect(&lib, volume, &[gfapi::Server::tcp(host)], Some(log), 3)
        .with_context(|| format!("mount {volume}@{host}"))?;
    for path in paths {
        match vol.unlink(path) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("unlink {path}")),
        }
    }
    Ok(())
}
