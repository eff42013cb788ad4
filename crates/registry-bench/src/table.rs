//! The one output shape of every benchmark: a titled table, then the command to rerun it.

/// `title`, one aligned `name  value` row per entry, then the reproducing command.
pub fn render(title: &str, rows: &[(&str, String)], command: &str) -> String {
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("{title}\n");
    for (name, value) in rows {
        let pad = width - name.chars().count();
        out += &format!("  {name}{}  {value}\n", " ".repeat(pad));
    }
    out += &format!("reproduce with:\n{command}\n");
    out
}
