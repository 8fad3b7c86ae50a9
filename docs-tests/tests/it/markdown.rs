//! Just enough Markdown: sections, fenced blocks and table cells.

use std::path::Path;

/// A file of the workspace, such as `README.md` or `docs/http.md`.
pub(crate) fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The lines of a document with whether each is inside a fenced block
/// (fence lines count as inside).
fn lines(doc: &str) -> Vec<(&str, bool)> {
    let mut fenced = false;
    doc.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                (line, true)
            } else {
                (line, fenced)
            }
        })
        .collect()
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.chars().take_while(|c| *c == '#').count();
    (level > 0 && line[level..].starts_with(' ')).then_some(level)
}

/// The section under the heading line `heading` (such as `## Status`), up
/// to the next heading of the same or a higher level.
pub(crate) fn section(doc: &str, heading: &str) -> String {
    let level = heading_level(heading).expect("a heading");
    let mut out = Vec::new();
    let mut inside = false;
    for (line, fenced) in lines(doc) {
        if !fenced && let Some(l) = heading_level(line) {
            if inside && l <= level {
                break;
            }
            if line == heading {
                inside = true;
                continue;
            }
        }
        if inside {
            out.push(line);
        }
    }
    assert!(inside, "no heading {heading:?}");
    out.join("\n")
}

/// The ```json blocks of a section, parsed.
pub(crate) fn json_blocks(section: &str) -> Vec<serde_json::Value> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```json") => current = Some(Vec::new()),
            (Some(_), l) if l.starts_with("```") => {
                let text = current.take().unwrap().join("\n");
                let value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a JSON block does not parse: {e}\n{text}"));
                blocks.push(value);
            }
            (Some(block), _) => block.push(line),
            (None, _) => {}
        }
    }
    blocks
}

/// The rows of the section's table whose header starts with the cell
/// `first`, as cells (the header and the separator left out).
pub(crate) fn table(section: &str, first: &str) -> Vec<Vec<String>> {
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|c| c.trim().to_owned()).collect()
    };
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if !line.trim_start().starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        if !in_table {
            in_table = cells(line).first().is_some_and(|c| c == first);
            continue;
        }
        if !line.contains("---") {
            rows.push(cells(line));
        }
    }
    assert!(!rows.is_empty(), "no table headed {first:?}");
    rows
}

/// The text of the first code span of a cell: `` `lagging` `` → `lagging`.
pub(crate) fn code(cell: &str) -> &str {
    cell.split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {cell:?}"))
}

/// The double-quoted names of a cell: `` `{"status", "reason"}` `` →
/// `status`, `reason`.
pub(crate) fn quoted(cell: &str) -> Vec<&str> {
    cell.split('"').skip(1).step_by(2).collect()
}
