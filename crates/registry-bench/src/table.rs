//! The one output shape of every benchmark: a titled table, then the command to rerun it.

/// `title`, one aligned `name  value` row per entry, then the reproducing command.
pub(crate) fn render(title: &str, rows: &[(&str, String)], command: &str) -> String {
    format!("{title}\n{}", notes_and_command(rows, command))
}

/// One aligned `name  value` line per note, then the reproducing command.
fn notes_and_command(notes: &[(&str, String)], command: &str) -> String {
    let width = notes
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, value) in notes {
        let pad = width - name.chars().count();
        out += &format!("  {name}{}  {value}\n", " ".repeat(pad));
    }
    out += &format!("reproduce with:\n{command}\n");
    out
}

/// A table of rows under a header, with notes and the command that reproduces it.
pub(crate) struct Grid<'a> {
    pub title: &'a str,
    pub header: &'a [&'a str],
    pub rows: &'a [Vec<String>],
    pub notes: &'a [(&'a str, String)],
    pub command: &'a str,
}

impl Grid<'_> {
    /// The title, the rows as a Markdown table (`|` in a cell escaped), the notes as a
    /// list, then the reproducing command: ready to paste into a document.
    pub(crate) fn markdown(&self) -> String {
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let cells: Vec<String> = cells.map(|c| c.replace('|', "\\|")).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = format!("{}\n\n", self.title);
        out += &line(&mut self.header.iter().copied());
        out += &format!("|{}\n", "---|".repeat(self.header.len()));
        for row in self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        out += "\n";
        for (name, value) in self.notes {
            out += &format!("- {name}: {value}\n");
        }
        out += &format!("\nreproduce with:\n{}\n", self.command);
        out
    }

    /// The title, the rows aligned under the header (the first column to the left, the
    /// others to the right), the notes as in [`render`], then the reproducing command.
    pub(crate) fn aligned(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::from(" ");
            for (i, cell) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                out += " ";
                if i == 0 {
                    out += &format!("{cell}{pad}");
                } else {
                    out += &format!("| {pad}{cell}");
                }
                out += " ";
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = format!("{}\n", self.title);
        out += &line(self.header.to_vec());
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out += &format!("  {}\n", rule.join("--+-"));
        for row in self.rows {
            let mut cells: Vec<&str> = row.iter().map(String::as_str).collect();
            cells.resize(columns, "");
            out += &line(cells);
        }
        out + &notes_and_command(self.notes, self.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_aligns_its_columns() {
        let out = Grid {
            title: "t",
            header: &["name", "value"],
            rows: &[
                vec!["a".into(), "1 req/s".into()],
                vec!["longer".into(), "22".into()],
            ],
            notes: &[("note", "n".into())],
            command: "cmd",
        }
        .aligned();
        let expected = "t\n  name    |   value\n  --------+--------\n  a       | 1 req/s\n  longer  |      22\n  note  n\nreproduce with:\ncmd\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn a_markdown_table_escapes_its_bars() {
        let out = Grid {
            title: "t",
            header: &["what", "figure"],
            rows: &[vec!["a | b".into(), "1".into()]],
            notes: &[("load", "1.0".into())],
            command: "cmd",
        }
        .markdown();
        let expected =
            "t\n\n| what | figure |\n|---|---|\n| a \\| b | 1 |\n\n- load: 1.0\n\nreproduce with:\ncmd\n";
        assert_eq!(out, expected);
    }
}
