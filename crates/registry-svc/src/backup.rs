//! `registry-svc backup FILE` and `registry-svc restore FILE`.
//!
//! A backup is written to a temporary file beside FILE (mode 0600: it holds token hashes),
//! checked complete against its header, made durable, and only then renamed over FILE, so
//! FILE is never a partial backup, whatever happens to the connection or the machine.

use anyhow::{bail, Context, Result};
use registry_client::RegistryClient;
use registry_types::{BackupHeader, RestoreSummary};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::cli::OutputFormat;
use crate::commands::emit;
use crate::output;

/// Downloads a backup into `file` ('-': stdout).
pub(crate) async fn save(client: &RegistryClient, format: OutputFormat, file: &str) -> Result<()> {
    let mut download = client.backup().await?;
    let mut tally = Tally::default();
    if file == "-" {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = download.chunk().await? {
            tally.add(&chunk);
            stdout.write_all(&chunk).context("cannot write to stdout")?;
        }
        stdout.flush().context("cannot write to stdout")?;
        tally.finish()?;
        return Ok(());
    }
    let path = Path::new(file);
    let temporary = temporary_path(path);
    let written = async {
        let mut out = create_private(&temporary)?;
        while let Some(chunk) = download.chunk().await? {
            tally.add(&chunk);
            out.write_all(&chunk)?;
        }
        let header = tally.finish()?;
        out.sync_all()?;
        anyhow::Ok(header)
    }
    .await
    .with_context(|| format!("cannot write the backup to {file}"));
    let header = match written {
        Ok(header) => header,
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
    };
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {file}"))?;
    sync_directory_of(path);
    match format {
        OutputFormat::Table => emit(&format!(
            "backed up {} definitions, {} instances, {} nodes and {} tokens (revision {}) to {file}\n",
            header.definitions, header.instances, header.nodes, header.tokens, header.revision
        )),
        OutputFormat::Json => emit(&output::json(&header)?),
    }
}

/// Loads the backup in `file` ('-': stdin) into the registry.
pub(crate) async fn restore(
    client: &RegistryClient,
    format: OutputFormat,
    file: &str,
) -> Result<()> {
    let mut text = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("cannot read the backup from stdin")?;
    } else {
        File::open(file)
            .and_then(|mut f| f.read_to_end(&mut text))
            .with_context(|| format!("cannot read {file}"))?;
    }
    let summary: RestoreSummary = client.restore(text).await?;
    match format {
        OutputFormat::Table => emit(&format!(
            "restored {} definitions, {} instances and {} tokens ({} node records skipped)\n",
            summary.definitions, summary.instances, summary.tokens, summary.nodes_skipped
        )),
        OutputFormat::Json => emit(&output::json(&summary)?),
    }
}

/// `.<name>.partial-<pid>` beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// A new file only its owner may read.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a rename in `path`'s directory durable, where the platform allows it.
fn sync_directory_of(path: &Path) {
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(directory) {
        let _ = dir.sync_all();
    }
}

/// Counts the lines of a backup as it streams by, to tell a whole one from a cut one.
#[derive(Default)]
struct Tally {
    /// The header line, until its newline has been seen.
    first_line: Vec<u8>,
    lines: u64,
}

impl Tally {
    fn add(&mut self, chunk: &[u8]) {
        if self.lines == 0 {
            let end = chunk
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(chunk.len());
            self.first_line.extend_from_slice(&chunk[..end]);
        }
        self.lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }

    /// The header, once the backup has every line it promises.
    fn finish(self) -> Result<BackupHeader> {
        let header: BackupHeader = serde_json::from_slice(&self.first_line)
            .context("the registry sent something that is not a backup")?;
        let expected = header.objects() + 1;
        if self.lines != expected {
            bail!(
                "the backup ended early: {} of {expected} lines arrived",
                self.lines
            );
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"format":"registry-svc-backup","version":1,"revision":7,"takenAt":"2026-12-01T00:00:00Z","node":"http://127.0.0.1:1","definitions":0,"instances":2,"nodes":0,"tokens":0}"#;

    #[test]
    fn a_backup_is_whole_only_with_every_line_its_header_promises() {
        let whole = format!("{HEADER}\n{{\"instance\":{{}}}}\n{{\"instance\":{{}}}}\n");
        let mut tally = Tally::default();
        // Split inside the header, as a network read may.
        let (a, b) = whole.as_bytes().split_at(20);
        tally.add(a);
        tally.add(b);
        assert_eq!(tally.finish().unwrap().instances, 2);

        let cut = &whole[..whole.len() - 5];
        let mut tally = Tally::default();
        tally.add(cut.as_bytes());
        let err = tally.finish().unwrap_err().to_string();
        assert!(err.contains("2 of 3 lines"), "{err}");
    }

    #[test]
    fn the_partial_file_sits_beside_the_target() {
        let partial = temporary_path(Path::new("/backups/today.ndjson"));
        assert_eq!(partial.parent(), Some(Path::new("/backups")));
        let name = partial.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".today.ndjson.partial-"), "{name}");
    }
}
