//! The line of a field in a YAML file, for findings that code-review tools
//! annotate. The parser keeps no positions, so this reads the text by
//! indentation: good for block-style manifests (what kustomize, Flux and
//! people write); flow style falls back to the object's first line.

/// One line, or the part of a `- key: value` line after the dash.
struct Entry {
    line: usize,
    col: usize,
    item: bool,
    text: String,
}

fn entries(lines: &[&str], from: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut col = l.len() - t.len();
        let mut rest = t;
        // `- - a: 1` nests items on one line.
        while let Some(r) = rest
            .strip_prefix("- ")
            .or(if rest == "-" { Some("") } else { None })
        {
            out.push(Entry {
                line: from + i,
                col,
                item: true,
                text: rest.to_string(),
            });
            let r2 = r.trim_start();
            col += rest.len() - r2.len();
            rest = r2;
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            out.push(Entry {
                line: from + i,
                col,
                item: false,
                text: rest.to_string(),
            });
        }
    }
    out
}

fn key_of(text: &str) -> Option<&str> {
    let (k, _) = text.split_once(':')?;
    let k = k.trim();
    Some(
        k.strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| k.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(k),
    )
}

pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            // A quoted key: ["a.b"]
            let Some(end) = r.find("\"]") else { break };
            out.push(Seg::Key(r[..end].to_string()));
            rest = r[end + 2..].trim_start_matches('.');
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            match r[..end].parse() {
                Ok(n) => out.push(Seg::Index(n)),
                Err(_) => out.push(Seg::Key(r[..end].to_string())),
            }
            rest = r[end + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Seg::Key(rest[..end].to_string()));
            rest = rest[end..].strip_prefix('.').unwrap_or(&rest[end..]);
        }
    }
    out
}

/// The range of entries under the entry at `i` (its value block).
fn block(es: &[Entry], i: usize) -> (usize, usize) {
    let c = es[i].col;
    let item = es[i].item;
    let mut j = i + 1;
    while j < es.len() {
        let e = &es[j];
        let inside = e.col > c || (!item && e.item && e.col == c);
        if !inside {
            break;
        }
        j += 1;
    }
    (i + 1, j)
}

fn find_key(es: &[Entry], (a, b): (usize, usize), key: &str) -> Option<usize> {
    let col = es[a..b].iter().filter(|e| !e.item).map(|e| e.col).min()?;
    (a..b).find(|&i| !es[i].item && es[i].col == col && key_of(&es[i].text) == Some(key))
}

fn find_item(es: &[Entry], (a, b): (usize, usize), n: usize) -> Option<usize> {
    let col = es[a..b].iter().filter(|e| e.item).map(|e| e.col).min()?;
    (a..b).filter(|&i| es[i].item && es[i].col == col).nth(n)
}

/// The 1-based line of `path` (dotted, as in findings) in the document of
/// `text` that holds `kind` named `name`; the deepest part of the path
/// found, or the document's first line.
pub fn line_of(text: &str, kind: &str, name: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    for end in (0..=lines.len()).filter(|&i| i == lines.len() || lines[i].starts_with("---")) {
        let es = entries(&lines[start..end], start);
        if let Some(top) = in_document(&es, kind, name) {
            let mut at = top;
            let mut range = (0, es.len());
            for seg in segments(path) {
                let found = match seg {
                    Seg::Key(k) => find_key(&es, range, &k),
                    Seg::Index(n) => find_item(&es, range, n),
                };
                let Some(i) = found else { break };
                at = es[i].line;
                range = block(&es, i);
            }
            return Some(at + 1);
        }
        start = end + 1;
    }
    None
}

/// The first line of the document when it holds `kind` named `name`.
fn in_document(es: &[Entry], kind: &str, name: &str) -> Option<usize> {
    let first = es.first()?;
    let top = |k: &str| {
        es.iter()
            .position(|e| e.col == 0 && !e.item && key_of(&e.text) == Some(k))
    };
    let value = |i: usize| {
        es[i]
            .text
            .split_once(':')
            .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string())
    };
    let k = top("kind")?;
    if value(k).as_deref() != Some(kind) {
        return None;
    }
    let m = top("metadata")?;
    let n = find_key(es, block(es, m), "name")?;
    (value(n).as_deref() == Some(name)).then_some(first.line)
}
