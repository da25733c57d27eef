//! Markdown for the benchmark reports.

/// A Markdown table: a header row and rows of cells (short rows padded with empty cells).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(header.iter().map(|s| (*s).to_owned()).collect()));
    out.push_str(&line(header.iter().map(|_| "---".to_owned()).collect()));
    for row in rows {
        let mut row = row.clone();
        row.resize(header.len(), String::new());
        out.push_str(&line(row));
    }
    out
}
