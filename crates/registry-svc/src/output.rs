//! Renders results for a person (aligned tables, `key: value` blocks) or for scripts (JSON).

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use registry_types::{Definition, Instance, Node, TokenInfo, Usage};
use serde::Serialize;
use std::borrow::Cow;

/// `text` safe to print on a terminal: line breaks and tabs become spaces, so a row stays
/// one line, and other control characters, which could move the cursor, clear or retitle
/// the terminal, are shown escaped (`\u{1b}`). Every value that came from the registry
/// (and so possibly from another of its callers) passes through here before a person
/// sees it; JSON output escapes them by itself.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Pretty-printed JSON with a final newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Columns padded to their widest cell, two spaces apart. Empty cells show as `-`.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is made [`printable`].
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "row width");
        let cells = cells
            .into_iter()
            .map(|cell| {
                let cell = printable(&cell);
                if cell.trim().is_empty() {
                    "-".to_string()
                } else {
                    cell.into_owned()
                }
            })
            .collect();
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let headers = self
            .headers
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>();
        let mut out = String::new();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned. Empty values show as `-`.
fn fields(pairs: &[(String, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = if value.is_empty() {
            "-".into()
        } else {
            printable(value)
        };
        let pad = width - key.chars().count();
        out.push_str(&format!("{key}:{}  {value}\n", " ".repeat(pad)));
    }
    out
}

/// How long ago `then` was, coarsely: `12s ago`, `3m ago`, `5h ago`, `2d ago`; `-` if never.
pub(crate) fn age(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> String {
    let Some(then) = then else {
        return "-".to_string();
    };
    // A clock a little ahead of ours still reads as "now", not as the future.
    let secs = (now - then).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

pub(crate) fn definitions(list: &[Definition]) -> String {
    let mut table = Table::new(&["ID", "SOURCE", "PORTS"]);
    for definition in list {
        let source = match (&definition.image, &definition.repository) {
            (Some(image), _) => image.name.clone(),
            (None, Some(repository)) => repository.url.clone(),
            (None, None) => String::new(),
        };
        let ports = definition
            .ports
            .iter()
            .map(|p| format!("{}:{}", p.host, p.internal))
            .collect::<Vec<_>>()
            .join(",");
        table.row(vec![definition.id.clone(), source, ports]);
    }
    table.render()
}

pub(crate) fn instances(list: &[Instance], now: DateTime<Utc>) -> String {
    let mut table = Table::new(&[
        "ID",
        "SLUG",
        "URL",
        "STATUS",
        "DETAILS",
        "HEARTBEAT",
        "TAGS",
    ]);
    for instance in list {
        table.row(vec![
            instance.id.clone(),
            instance.slug.clone(),
            instance.url.clone(),
            instance.status.to_string(),
            instance.details.clone(),
            age(now, instance.last_heartbeat),
            instance.tags.join(","),
        ]);
    }
    table.render()
}

pub(crate) fn nodes(list: &[Node], now: DateTime<Utc>) -> String {
    let mut table = Table::new(&[
        "ID",
        "URL",
        "REGION",
        "ZONE",
        "STATUS",
        "CPU%",
        "MEM%",
        "DISK%",
        "GPUS",
        "HEARTBEAT",
    ]);
    for node in list {
        table.row(vec![
            node.id.clone(),
            node.url.clone(),
            node.region.clone(),
            node.availability_zone.clone(),
            node.status.to_string(),
            percent(&node.usage.cpu),
            percent(&node.usage.memory),
            percent(&node.usage.disk),
            node.gpus.len().to_string(),
            age(now, node.last_heartbeat),
        ]);
    }
    table.render()
}

/// One node as a `key: value` block, with its resources and GPUs spelled out.
pub(crate) fn node(node: &Node, now: DateTime<Utc>) -> String {
    let usage = &node.usage;
    let mut pairs = vec![
        ("ID".to_string(), node.id.clone()),
        ("URL".to_string(), node.url.clone()),
        ("Region".to_string(), node.region.clone()),
        ("Zone".to_string(), node.availability_zone.clone()),
        ("Status".to_string(), node.status.to_string()),
        ("Heartbeat".to_string(), age(now, node.last_heartbeat)),
        (
            "CPU".to_string(),
            format!(
                "{}% of {} cores",
                percent(&usage.cpu),
                usage.cpu.total as f64 / 1000.0
            ),
        ),
        ("Memory".to_string(), amount(&usage.memory)),
        ("Disk".to_string(), amount(&usage.disk)),
        ("GPUs".to_string(), node.gpus.len().to_string()),
    ];
    for gpu in &node.gpus {
        pairs.push((
            format!("GPU {}", gpu.intra_node_id),
            format!(
                "{}, {:.0}% busy, {}/{} MiB, {:.0}°C, {:.0}/{:.0} W, CUDA {}",
                gpu.name,
                gpu.gpu_utilization,
                gpu.memory_usage,
                gpu.memory_total,
                gpu.temperature,
                gpu.power_usage,
                gpu.power_cap,
                if gpu.cuda_version.is_empty() {
                    "-"
                } else {
                    &gpu.cuda_version
                },
            ),
        ));
    }
    fields(&pairs)
}

pub(crate) fn tokens(list: &[TokenInfo]) -> String {
    let mut table = Table::new(&["ID", "SLUG", "ROLE", "CREATED"]);
    for token in list {
        table.row(vec![
            token.id.clone(),
            token.slug.clone(),
            token.role.to_string(),
            token.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        ]);
    }
    table.render()
}

/// `12.5`, or empty (shown as `-`) when the total is unknown.
fn percent(usage: &Usage) -> String {
    if usage.total == 0 {
        String::new()
    } else {
        format!("{:.1}", usage.percent)
    }
}

/// `40.0% (6.4 GiB of 16.0 GiB)` for a byte count.
fn amount(usage: &Usage) -> String {
    if usage.total == 0 {
        return String::new();
    }
    format!(
        "{}% ({} of {})",
        percent(usage),
        bytes(usage.used),
        bytes(usage.total)
    )
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use registry_types::{ImageSpec, PortMapping};

    #[test]
    fn control_characters_from_the_registry_never_reach_the_terminal() {
        let hostile = "blue\u{1b}[2J\u{1b}]0;owned\u{7}\nnext\u{9b}";
        let shown = printable(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "blue\\u{1b}[2J\\u{1b}]0;owned\\u{7} next\\u{9b}");
        assert!(matches!(printable("plain é"), Cow::Borrowed("plain é")));
        let mut table = Table::new(&["TAG"]);
        table.row(vec![hostile.to_string()]);
        assert!(!table
            .render()
            .trim_end()
            .chars()
            .any(|c| c.is_control() && c != '\n'));
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn table_pads_columns_and_marks_empty_cells() {
        let mut table = Table::new(&["ID", "NAME", "TAGS"]);
        table.row(vec!["a".into(), "longer-name".into(), "x,y".into()]);
        table.row(vec!["bbbb".into(), "".into(), "line\nbreak".into()]);
        assert_eq!(
            table.render(),
            "ID    NAME         TAGS\n\
             a     longer-name  x,y\n\
             bbbb  -            line break\n"
        );
    }

    #[test]
    fn table_without_rows_prints_headers_and_no_trailing_spaces() {
        let mut table = Table::new(&["ID", "URL"]);
        assert_eq!(table.render(), "ID  URL\n");
        table.row(vec!["x".into(), "".into()]);
        assert_eq!(table.render(), "ID  URL\nx   -\n");
    }

    #[test]
    fn table_width_counts_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["é°".into(), "z".into()]);
        assert_eq!(table.render(), "A   B\né°  z\n");
    }

    #[test]
    fn age_is_coarse_and_never_negative() {
        let now = at(0);
        assert_eq!(age(now, None), "-");
        assert_eq!(age(now, Some(at(0))), "0s ago");
        assert_eq!(age(now, Some(at(-12))), "12s ago");
        assert_eq!(age(now, Some(at(-59))), "59s ago");
        assert_eq!(age(now, Some(at(-60))), "1m ago");
        assert_eq!(age(now, Some(at(-3 * 60 - 59))), "3m ago");
        assert_eq!(age(now, Some(at(-3600))), "1h ago");
        assert_eq!(age(now, Some(at(-2 * 86400 - 5))), "2d ago");
        assert_eq!(age(now, Some(at(30))), "0s ago");
    }

    #[test]
    fn definitions_show_source_and_host_to_internal_ports() {
        let definition = Definition {
            id: "test-a".into(),
            image: Some(ImageSpec {
                name: "hashicorp/http-echo".into(),
                internal_ports: vec![8080],
            }),
            repository: None,
            api_specs: vec![],
            clients: vec![],
            envars: vec![],
            ports: vec![PortMapping {
                internal: 8080,
                host: 8887,
            }],
        };
        let bare = Definition {
            id: "bare".into(),
            image: None,
            ports: vec![],
            ..definition.clone()
        };
        assert_eq!(
            definitions(&[definition, bare]),
            "ID      SOURCE               PORTS\n\
             test-a  hashicorp/http-echo  8887:8080\n\
             bare    -                    -\n"
        );
    }

    #[test]
    fn node_block_aligns_keys() {
        let node = Node {
            id: "node-1".into(),
            url: "http://127.0.0.1:58231".into(),
            usage: registry_types::ResourceUsage {
                cpu: Usage {
                    used: 2000,
                    total: 8000,
                    percent: 25.0,
                },
                memory: Usage {
                    used: 1 << 30,
                    total: 4 << 30,
                    percent: 25.0,
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let text = super::node(&node, at(0));
        assert!(
            text.starts_with("ID:         node-1\nURL:        http://127.0.0.1:58231\n"),
            "{text}"
        );
        assert!(text.contains("CPU:        25.0% of 8 cores\n"), "{text}");
        assert!(
            text.contains("Memory:     25.0% (1.0 GiB of 4.0 GiB)\n"),
            "{text}"
        );
        assert!(text.contains("Disk:       -\n"), "{text}");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 << 30), "16.0 GiB");
    }
}
