//! `instances ls --watch`: redraws the listing each time the client library's
//! [`InstanceWatch`] (a list, then blocking queries) reports a change.
//!
//! On a terminal each frame clears the screen first; otherwise a table frame after the first
//! is preceded by a separator line, and JSON frames simply follow one another (a stream of
//! JSON documents, as `jq` reads them). A failure after the first answer is reported on
//! stderr and retried with backoff; Ctrl-C or a closed stdout ends the watch successfully.

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use registry_client::{InstanceWatch, RegistryClient};
use registry_types::{Instance, InstanceFilter};
use std::io::{IsTerminal, Write};

use crate::cli::OutputFormat;
use crate::output;

/// Clears a terminal and moves the cursor home.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// Lists the instances `filter` matches, then redraws after every change until Ctrl-C.
pub(crate) async fn instances(
    client: &RegistryClient,
    format: OutputFormat,
    filter: &InstanceFilter,
) -> Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut watch = InstanceWatch::new(client.clone(), filter.clone());
    // One listener for the whole watch, so a Ctrl-C between two requests is not lost.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let first = watch.index().is_none();
        // `next` is cancel-safe: Ctrl-C may land during a request or a pause alike.
        let answer = tokio::select! {
            _ = interrupt.as_mut() => return Ok(()),
            answer = watch.next() => answer,
        };
        match answer {
            Ok(list) if list.changed => {
                let frame = frame(
                    format,
                    terminal,
                    first,
                    list.index,
                    &list.instances,
                    Utc::now(),
                )?;
                if !write_frame(&frame)? {
                    return Ok(()); // the reader went away
                }
            }
            Ok(_) => {}
            // The first failure is the command's: a bad address or token is not worth a retry.
            Err(failure) if first => return Err(failure.error.into()),
            Err(failure) => {
                let err = format!("{:#}", anyhow::Error::from(failure.error));
                eprintln!(
                    "error: {} (retrying in {} ms)",
                    crate::output::printable(&err),
                    failure.retry_in.as_millis()
                );
            }
        }
    }
}

/// One redraw: on a terminal, clear screen, a status line and the listing; elsewhere the
/// listing, after a separator line for table frames but the first.
fn frame(
    format: OutputFormat,
    terminal: bool,
    first: bool,
    index: u64,
    list: &[Instance],
    now: DateTime<Utc>,
) -> Result<String> {
    let body = match format {
        OutputFormat::Table => output::instances(list, now),
        OutputFormat::Json => output::json(list)?,
    };
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(match (terminal, format) {
        (true, _) => format!(
            "{CLEAR}{} instances at index {index}, {at} (Ctrl-C to stop)\n\n{body}",
            list.len()
        ),
        (false, OutputFormat::Table) if !first => {
            format!("--- index {index}, {at} ---\n{body}")
        }
        (false, _) => body,
    })
}

/// Writes a frame to stdout; `false` when the reader has gone away (`| head`).
fn write_frame(frame: &str) -> Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(frame.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_types::InstanceStatus;

    fn list() -> Vec<Instance> {
        vec![Instance {
            id: "inst_1".into(),
            url: "http://127.0.0.1:9000".into(),
            slug: "svc".into(),
            status: InstanceStatus::Healthy,
            ..Default::default()
        }]
    }

    #[test]
    fn terminal_frames_clear_the_screen() {
        let now = Utc::now();
        let text = frame(OutputFormat::Table, true, true, 7, &list(), now).unwrap();
        assert!(text.starts_with(CLEAR), "{text:?}");
        assert!(text.contains("1 instances at index 7"), "{text:?}");
        assert!(text.contains("inst_1"), "{text:?}");
    }

    #[test]
    fn piped_table_frames_are_separated() {
        let now = Utc::now();
        let first = frame(OutputFormat::Table, false, true, 7, &list(), now).unwrap();
        assert_eq!(first, output::instances(&list(), now));
        let next = frame(OutputFormat::Table, false, false, 8, &list(), now).unwrap();
        assert!(next.starts_with("--- index 8, "), "{next:?}");
        assert!(!next.contains('\x1b'), "{next:?}");
        assert!(next.ends_with(&first), "{next:?}");
    }

    #[test]
    fn piped_json_frames_are_plain_documents() {
        let now = Utc::now();
        let next = frame(OutputFormat::Json, false, false, 8, &list(), now).unwrap();
        let parsed: Vec<Instance> = serde_json::from_str(&next).unwrap();
        assert_eq!(parsed, list());
    }
}
