//! YAML parsing: structure from saphyr-parser, comments recovered from the
//! source text, values resolved like yaml.v3.
//!
//! Why this design: sops keeps comments (and encrypts them), so the parser
//! must report where every comment sits. serde_yaml is archived and drops
//! comments; saphyr-parser is a maintained YAML 1.2 parser that passes the
//! YAML test suite and reports positions, but no comments. So comments are
//! found by scanning the lines outside quoted and block scalars (whose
//! positions the events give), and attached to the tree by position with
//! rules that follow what yaml.v3 + sops do in practice:
//! - a comment on the same line as content goes before the entry that line
//!   starts (yaml.v3 "line comments", which sops moves above the key);
//! - a comment on its own line goes before the next entry, unless the next
//!   entry is less indented: then the comment closes the deeper blocks, each
//!   comment line at the deepest open block its column reaches.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::resolve;
use crate::sops::value::{Item, Key, Map, Text, Value};
use crate::{Error, Result};

/// Maximum nesting of collections.
const MAX_DEPTH: usize = 256;
/// Maximum number of nodes alias expansion may create (billion-laughs guard).
const MAX_EXPANDED_NODES: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Pos {
    line: usize,
    col: usize,
}

#[derive(Clone, Debug)]
enum PNode {
    Scalar {
        value: String,
        style: ScalarStyle,
        tag: Option<(String, String)>,
        pos: Pos,
    },
    Seq {
        items: Vec<PNode>,
        pos: Pos,
        cid: usize,
    },
    Map {
        entries: Vec<(PNode, PNode)>,
        pos: Pos,
        cid: usize,
    },
    Alias {
        id: usize,
        pos: Pos,
    },
}

impl PNode {
    fn pos(&self) -> Pos {
        match self {
            PNode::Scalar { pos, .. }
            | PNode::Seq { pos, .. }
            | PNode::Map { pos, .. }
            | PNode::Alias { pos, .. } => *pos,
        }
    }
}

enum Frame {
    Seq {
        items: Vec<PNode>,
        pos: Pos,
        anchor: usize,
        cid: usize,
    },
    Map {
        entries: Vec<(PNode, PNode)>,
        key: Option<PNode>,
        pos: Pos,
        anchor: usize,
        cid: usize,
    },
}

struct RawDoc {
    start: Pos,
    root: Option<PNode>,
    /// Per container id: (is flow, start position).
    containers: Vec<(bool, Pos)>,
}

fn parse_err(message: String) -> Error {
    Error::Parse {
        format: "yaml",
        message,
    }
}

fn pos_of(m: &saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col(),
    }
}

struct Events {
    docs: Vec<RawDoc>,
    anchors: HashMap<usize, PNode>,
    quoted_starts: HashMap<Pos, ScalarStyle>,
    block_starts: Vec<Pos>,
}

fn collect_events(src: &str) -> Result<Events> {
    let mut docs: Vec<RawDoc> = Vec::new();
    let mut anchors = HashMap::new();
    let mut quoted_starts = HashMap::new();
    let mut block_starts = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut containers: Vec<(bool, Pos)> = Vec::new();
    let mut doc_start = Pos { line: 1, col: 0 };
    let mut root: Option<PNode> = None;

    fn attach(stack: &mut [Frame], root: &mut Option<PNode>, node: PNode) {
        match stack.last_mut() {
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
            None => *root = Some(node),
        }
    }

    let events = Parser::new_from_str(src)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            let m = e.marker();
            parse_err(format!(
                "line {} column {}: {}",
                m.line(),
                m.col() + 1,
                e.info()
            ))
        })?;
    // A block scalar that runs to the end of an input without a final line
    // break has no trailing break (libyaml/yaml.v3); saphyr adds one.
    let strip_last_break = if src.ends_with('\n') {
        None
    } else {
        events
            .iter()
            .rposition(|(ev, _)| matches!(ev, Event::Scalar(..)))
            .filter(|&i| {
                let (Event::Scalar(v, style, _, _), span) = &events[i] else {
                    return false;
                };
                let last_line = src.lines().last().unwrap_or("");
                let indent = last_line.chars().take_while(|c| *c == ' ').count();
                matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && v.ends_with('\n')
                    && !last_line.trim().is_empty()
                    && indent >= span.start.col()
            })
    };
    // Byte offset of each line, made on first need (see block_header_pos).
    let mut line_starts: Option<Vec<usize>> = None;
    for (idx, (ev, span)) in events.into_iter().enumerate() {
        let ev = match ev {
            Event::Scalar(v, style, a, t) if Some(idx) == strip_last_break => {
                let mut v = v.into_owned();
                v.pop();
                Event::Scalar(std::borrow::Cow::Owned(v), style, a, t)
            }
            other => other,
        };
        let pos = pos_of(&span.start);
        let flow = span.end.index() > span.start.index();
        match ev {
            Event::DocumentStart(_) => {
                doc_start = pos;
                root = None;
                containers = Vec::new();
            }
            Event::DocumentEnd => {
                docs.push(RawDoc {
                    start: doc_start,
                    root: root.take(),
                    containers: std::mem::take(&mut containers),
                });
            }
            Event::Scalar(value, style, anchor, tag) => {
                let blank_block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                    && value.chars().all(|c| {
                        matches!(
                            c,
                            ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'
                        )
                    });
                // A block scalar of only empty lines has no content line to
                // start its span at: saphyr reports where its scanner stopped
                // (the next entry or a comment below), which would put the
                // entry after that comment. Its header line is where it is.
                let pos = if blank_block {
                    let starts = line_starts.get_or_insert_with(|| {
                        std::iter::once(0)
                            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                            .collect::<Vec<usize>>()
                    });
                    block_header_pos(src, starts, pos)
                } else {
                    pos
                };
                match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        quoted_starts.insert(pos, style);
                    }
                    // saphyr's span starts at the first content line, at the
                    // content's indentation; a block of only empty lines has
                    // none (its span starts where the scanner stopped, which
                    // may be a comment), and nothing in it to skip.
                    ScalarStyle::Literal | ScalarStyle::Folded if !blank_block => {
                        block_starts.push(pos)
                    }
                    _ => {}
                }
                let node = PNode::Scalar {
                    value: value.into_owned(),
                    style,
                    tag: tag.map(|t| (t.handle.clone(), t.suffix.clone())),
                    pos,
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                attach(&mut stack, &mut root, node);
            }
            Event::Alias(id) => attach(&mut stack, &mut root, PNode::Alias { id, pos }),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(parse_err(format!(
                        "line {}: nesting deeper than {MAX_DEPTH} levels",
                        pos.line
                    )));
                }
                let cid = containers.len();
                containers.push((flow, pos));
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        pos,
                        anchor,
                        cid,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        pos,
                        anchor,
                        cid,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq {
                        items,
                        pos,
                        anchor,
                        cid,
                    }) => (PNode::Seq { items, pos, cid }, anchor),
                    Some(Frame::Map {
                        entries,
                        pos,
                        anchor,
                        cid,
                        ..
                    }) => (PNode::Map { entries, pos, cid }, anchor),
                    None => return Err(parse_err("unbalanced collection end".into())),
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                attach(&mut stack, &mut root, node);
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
    Ok(Events {
        docs,
        anchors,
        quoted_starts,
        block_starts,
    })
}

#[derive(Debug, Clone)]
struct Comment {
    pos: Pos,
    text: String,
    trailing: bool,
    /// The text before the `#` on its line, trimmed.
    prefix: String,
}

/// The position of the `|` or `>` that opens the block scalar whose
/// scanner stopped at `stop`: on the nearest line at or above `stop` with
/// anything but blanks before `stop` (the lines in between are the
/// scalar's empty content, so over a file each line is walked once), the
/// last indicator outside a comment. `line_starts` holds each line's byte
/// offset in `src`.
fn block_header_pos(src: &str, line_starts: &[usize], stop: Pos) -> Pos {
    for line_no in (1..=stop.line.min(line_starts.len())).rev() {
        let start = line_starts[line_no - 1];
        let end = line_starts.get(line_no).map_or(src.len(), |next| next - 1);
        let mut chars: Vec<char> = src[start..end].chars().collect();
        if line_no == stop.line {
            chars.truncate(stop.col);
        }
        // A comment starts at a `#` after a blank (or at the line start).
        let comment = (0..chars.len())
            .find(|&c| chars[c] == '#' && (c == 0 || matches!(chars[c - 1], ' ' | '\t')));
        if let Some(hash) = comment {
            chars.truncate(hash);
        }
        if chars.iter().all(|c| matches!(c, ' ' | '\t' | '\r')) {
            continue;
        }
        return match chars.iter().rposition(|c| matches!(c, '|' | '>')) {
            Some(col) => Pos { line: line_no, col },
            None => stop,
        };
    }
    stop
}

/// Finds every comment outside quoted and block scalars.
fn scan_comments(lines: &[&str], ev: &Events) -> Vec<Comment> {
    let mut skip = vec![false; lines.len() + 2];
    for start in &ev.block_starts {
        let indent = start.col;
        for l in start.line..=lines.len() {
            let text = lines[l - 1].trim_end_matches('\r');
            let blank = text.chars().all(|c| c == ' ' || c == '\t');
            let lead = text.chars().take_while(|c| *c == ' ').count();
            if blank || lead >= indent {
                skip[l] = true;
            } else {
                break;
            }
        }
    }
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    for (i, raw) in lines.iter().enumerate() {
        let line_no = i + 1;
        if skip[line_no] && quote.is_none() {
            continue;
        }
        let line = raw.trim_end_matches('\r');
        // Fast path: most lines hold no comment and no quoted scalar.
        if quote.is_none() && !line.contains(['#', '"', '\'']) {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut col = 0;
        while col < chars.len() {
            let c = chars[col];
            match quote {
                Some('"') => {
                    if c == '\\' {
                        col += 1;
                    } else if c == '"' {
                        quote = None;
                    }
                }
                Some(_) => {
                    if c == '\'' {
                        if chars.get(col + 1) == Some(&'\'') {
                            col += 1;
                        } else {
                            quote = None;
                        }
                    }
                }
                None => {
                    let here = Pos { line: line_no, col };
                    let maybe_quote = c == '"' || c == '\'';
                    if let Some(style) = maybe_quote.then(|| ev.quoted_starts.get(&here)).flatten()
                    {
                        quote = Some(if *style == ScalarStyle::DoubleQuoted {
                            '"'
                        } else {
                            '\''
                        });
                    } else if c == '#' && (col == 0 || matches!(chars[col - 1], ' ' | '\t')) {
                        let prefix: String =
                            chars[..col].iter().collect::<String>().trim().to_string();
                        out.push(Comment {
                            pos: here,
                            text: chars[col + 1..].iter().collect(),
                            trailing: !prefix.is_empty(),
                            prefix,
                        });
                        break;
                    }
                }
            }
            col += 1;
        }
    }
    out
}

struct Container {
    parent: Option<usize>,
    indent: usize,
    flow: bool,
    start: Pos,
    len: usize,
}

struct Entry {
    pos: Pos,
    cid: usize,
    idx: usize,
    value_cid: Option<usize>,
    in_seq: bool,
}

struct Layout {
    containers: Vec<Option<Container>>,
    entries: Vec<Entry>,
}

fn dash_col(lines: &[&str], pos: Pos) -> usize {
    let Some(line) = lines.get(pos.line.wrapping_sub(1)) else {
        return pos.col;
    };
    let chars: Vec<char> = line.chars().collect();
    if chars.get(pos.col) == Some(&'-') {
        return pos.col;
    }
    let mut c = pos.col;
    while c > 0 {
        c -= 1;
        match chars.get(c) {
            Some(' ') => continue,
            Some('-') => return c,
            _ => break,
        }
    }
    pos.col
}

fn layout_of(doc: &RawDoc, root: &PNode, lines: &[&str]) -> Layout {
    let mut lay = Layout {
        containers: (0..doc.containers.len()).map(|_| None).collect(),
        entries: Vec::new(),
    };
    fn visit(n: &PNode, parent: Option<usize>, doc: &RawDoc, lines: &[&str], lay: &mut Layout) {
        match n {
            PNode::Map { entries, pos, cid } => {
                let (flow, start) = doc.containers[*cid];
                let indent = entries.first().map(|(k, _)| k.pos().col).unwrap_or(pos.col);
                lay.containers[*cid] = Some(Container {
                    parent,
                    indent,
                    flow,
                    start,
                    len: entries.len(),
                });
                for (idx, (k, v)) in entries.iter().enumerate() {
                    lay.entries.push(Entry {
                        pos: k.pos(),
                        cid: *cid,
                        idx,
                        value_cid: container_id(v),
                        in_seq: false,
                    });
                    visit(v, Some(*cid), doc, lines, lay);
                }
            }
            PNode::Seq { items, pos, cid } => {
                let (flow, start) = doc.containers[*cid];
                let indent = if flow { pos.col } else { dash_col(lines, *pos) };
                lay.containers[*cid] = Some(Container {
                    parent,
                    indent,
                    flow,
                    start,
                    len: items.len(),
                });
                for (idx, v) in items.iter().enumerate() {
                    lay.entries.push(Entry {
                        pos: v.pos(),
                        cid: *cid,
                        idx,
                        value_cid: container_id(v),
                        in_seq: true,
                    });
                    visit(v, Some(*cid), doc, lines, lay);
                }
            }
            _ => {}
        }
    }
    visit(root, None, doc, lines, &mut lay);
    lay
}

fn container_id(n: &PNode) -> Option<usize> {
    match n {
        PNode::Map { cid, .. } | PNode::Seq { cid, .. } => Some(*cid),
        _ => None,
    }
}

/// Where each comment goes: per container, (insert before index, text).
type Placement = HashMap<usize, Vec<(usize, String)>>;

fn place_comments(comments: &[Comment], lay: &Layout, root_cid: usize) -> Placement {
    let mut placed: Placement = HashMap::new();
    let mut put = |cid: usize, idx: usize, text: &str| {
        placed.entry(cid).or_default().push((idx, text.to_string()));
    };
    let root_len = lay.containers[root_cid].as_ref().map_or(0, |c| c.len);
    let mut run: Option<(Option<usize>, Option<usize>, usize)> = None;
    for c in comments {
        let prev = lay.entries.iter().rposition(|e| e.pos < c.pos);
        let next = lay.entries.iter().position(|e| e.pos > c.pos);
        if c.trailing {
            run = None;
            let on_line = lay
                .entries
                .iter()
                .find(|e| e.pos.line == c.pos.line && e.pos.col < c.pos.col);
            if let Some(e) = on_line {
                let flow_value = e
                    .value_cid
                    .and_then(|v| lay.containers[v].as_ref().map(|cont| (v, cont)))
                    .filter(|(_, cont)| !e.in_seq && cont.flow && cont.start.line == c.pos.line);
                match flow_value {
                    Some((v, _)) => put(v, 0, &c.text),
                    None => put(e.cid, e.idx, &c.text),
                }
                continue;
            }
            if c.prefix == "-" {
                if let Some(e) = lay.entries[next.unwrap_or(lay.entries.len())..]
                    .iter()
                    .find(|e| e.in_seq && lay.containers[e.cid].as_ref().is_some_and(|k| !k.flow))
                {
                    put(e.cid, e.idx, &c.text);
                    continue;
                }
            }
            if !c.prefix.starts_with("---") {
                if let Some(p) = prev {
                    let e = &lay.entries[p];
                    put(e.cid, e.idx, &c.text);
                    continue;
                }
            }
        }
        // A comment on its own line.
        let Some(p) = prev else {
            match next {
                Some(n) => put(lay.entries[n].cid, lay.entries[n].idx, &c.text),
                None => put(root_cid, root_len, &c.text),
            }
            continue;
        };
        let mut chain = vec![lay.entries[p].cid];
        while let Some(parent) = chain
            .last()
            .and_then(|cid| lay.containers[*cid].as_ref())
            .and_then(|c| c.parent)
        {
            chain.push(parent);
        }
        let (next_cid, next_idx, next_col) = match next {
            Some(n) => (
                lay.entries[n].cid,
                lay.entries[n].idx,
                lay.entries[n].pos.col,
            ),
            None => (root_cid, root_len, 0),
        };
        let k = chain.iter().position(|cid| *cid == next_cid);
        let Some(k) = k.filter(|k| *k > 0) else {
            put(next_cid, next_idx, &c.text);
            run = None;
            continue;
        };
        let indent = |i: usize| lay.containers[chain[i]].as_ref().map_or(0, |c| c.indent);
        let level = match run {
            Some((rp, rn, lvl)) if rp == Some(p) && rn == next => {
                (lvl..=k).find(|&i| indent(i) <= c.pos.col).unwrap_or(k)
            }
            _ => {
                if c.pos.col > next_col {
                    0
                } else {
                    (0..=k).find(|&i| indent(i) <= c.pos.col).unwrap_or(k)
                }
            }
        };
        run = Some((Some(p), next, level));
        if level == k {
            put(next_cid, next_idx, &c.text);
        } else {
            let cid = chain[level];
            let len = lay.containers[cid].as_ref().map_or(0, |c| c.len);
            put(cid, len, &c.text);
        }
    }
    placed
}

struct Builder<'a> {
    anchors: &'a HashMap<usize, PNode>,
    placed: Placement,
    budget: usize,
    check_duplicates: bool,
}

impl Builder<'_> {
    fn spend(&mut self) -> Result<()> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| parse_err("too many nodes after alias expansion".into()))?;
        Ok(())
    }

    fn comments_at(&self, cid: usize, idx: usize, with: bool) -> Vec<String> {
        if !with {
            return Vec::new();
        }
        self.placed
            .get(&cid)
            .map(|v| {
                v.iter()
                    .filter(|(i, _)| *i == idx)
                    .map(|(_, t)| t.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn scalar(
        value: &str,
        style: ScalarStyle,
        tag: &Option<(String, String)>,
        pos: Pos,
    ) -> Result<Value> {
        match tag {
            Some((handle, suffix)) if handle == "tag:yaml.org,2002:" => {
                resolve::resolve_tagged(suffix, value)
                    .map_err(|e| parse_err(format!("line {}: {e}", pos.line)))
            }
            // `!` (non-specific) and unknown tags: yaml.v3 keeps the string.
            Some(_) => Ok(if style == ScalarStyle::Plain {
                resolve::resolve_plain(value)
            } else {
                Value::Str(Text::from(value))
            }),
            None if style == ScalarStyle::Plain => Ok(resolve::resolve_plain(value)),
            None => Ok(Value::Str(Text::from(value))),
        }
    }

    fn node(&mut self, n: &PNode, with_comments: bool, depth: usize) -> Result<Value> {
        self.spend()?;
        if depth > MAX_DEPTH {
            return Err(parse_err("nesting too deep after alias expansion".into()));
        }
        match n {
            PNode::Scalar {
                value,
                style,
                tag,
                pos,
            } => Self::scalar(value, *style, tag, *pos),
            PNode::Alias { id, pos } => {
                let target = self
                    .anchors
                    .get(id)
                    .ok_or_else(|| parse_err(format!("line {}: unknown anchor", pos.line)))?
                    .clone();
                self.node(&target, false, depth + 1)
            }
            PNode::Seq { items, cid, .. } => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    for c in self.comments_at(*cid, i, with_comments) {
                        out.push(Value::Comment(Text::from(c)));
                    }
                    out.push(self.node(item, with_comments, depth + 1)?);
                }
                for c in self.comments_at(*cid, items.len(), with_comments) {
                    out.push(Value::Comment(Text::from(c)));
                }
                Ok(Value::Seq(out))
            }
            PNode::Map { entries, cid, .. } => {
                Ok(Value::Map(self.map(entries, *cid, with_comments, depth)?))
            }
        }
    }

    fn map(
        &mut self,
        entries: &[(PNode, PNode)],
        cid: usize,
        with_comments: bool,
        depth: usize,
    ) -> Result<Map> {
        let mut m = Map(Vec::with_capacity(entries.len()));
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, (k, v)) in entries.iter().enumerate() {
            for c in self.comments_at(cid, i, with_comments) {
                m.0.push(Item::comment(c));
            }
            let key = match k {
                PNode::Scalar {
                    value,
                    style,
                    tag,
                    pos,
                } => match Self::scalar(value, *style, tag, *pos)? {
                    Value::Str(t) => {
                        if self.check_duplicates && !seen.insert(value.as_str()) {
                            return Err(parse_err(format!(
                                "line {}: mapping key {:?} already defined",
                                pos.line,
                                crate::error::escape_for_terminal(value)
                            )));
                        }
                        Key::Str(t.to_str_lossy().into_owned())
                    }
                    _ => Key::Other(value.clone()),
                },
                PNode::Alias { .. } => match self.node(k, false, depth + 1)? {
                    Value::Str(t) => Key::Str(t.to_str_lossy().into_owned()),
                    _ => Key::Other("alias".into()),
                },
                _ => {
                    return Err(parse_err(format!(
                        "line {}: collections as mapping keys are not supported",
                        k.pos().line
                    )))
                }
            };
            let value = self.node(v, with_comments, depth + 1)?;
            m.0.push(Item { key, value });
        }
        for c in self.comments_at(cid, entries.len(), with_comments) {
            m.0.push(Item::comment(c));
        }
        Ok(m)
    }
}

/// Parses a YAML stream into one mapping per document.
///
/// `check_duplicates` rejects repeated keys (sops does for plaintext input).
pub fn parse(input: &[u8], check_duplicates: bool) -> Result<Vec<Map>> {
    let src = std::str::from_utf8(input).map_err(|e| {
        let line = 1 + input[..e.valid_up_to()]
            .iter()
            .filter(|c| **c == b'\n')
            .count();
        parse_err(format!("line {line}: invalid UTF-8"))
    })?;
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    // YAML treats CR, LF and CRLF alike as line breaks; normalising them keeps
    // the comment scanner's lines identical to the parser's.
    let normalized;
    let src = if src.contains('\r') {
        normalized = src.replace("\r\n", "\n").replace('\r', "\n");
        normalized.as_str()
    } else {
        src
    };
    let ev = collect_events(src)?;
    let lines: Vec<&str> = src.split('\n').collect();
    let comments = scan_comments(&lines, &ev);
    let doc_starts: Vec<Pos> = ev.docs.iter().map(|d| d.start).collect();
    let mut out = Vec::with_capacity(ev.docs.len());
    for (di, doc) in ev.docs.iter().enumerate() {
        let mine: Vec<Comment> = comments
            .iter()
            .filter(|c| {
                let after_start = di == 0 || c.pos >= doc_starts[di];
                let before_next = doc_starts.get(di + 1).is_none_or(|n| c.pos < *n);
                after_start && before_next
            })
            .cloned()
            .collect();
        let empty_root = PNode::Map {
            entries: Vec::new(),
            pos: doc.start,
            cid: doc.containers.len(),
        };
        let mut containers = doc.containers.clone();
        let root = match &doc.root {
            None => &empty_root,
            Some(PNode::Scalar {
                value,
                style,
                tag,
                pos,
            }) => {
                if matches!(Builder::scalar(value, *style, tag, *pos)?, Value::Null) {
                    &empty_root
                } else {
                    return Err(parse_err(
                        "YAML documents that are values are not supported".into(),
                    ));
                }
            }
            Some(PNode::Seq { .. }) => {
                return Err(parse_err(
                    "YAML documents that are sequences are not supported".into(),
                ))
            }
            Some(PNode::Alias { .. }) => {
                return Err(parse_err(
                    "YAML documents that are aliases are not supported".into(),
                ))
            }
            Some(m @ PNode::Map { .. }) => m,
        };
        if std::ptr::eq(root, &empty_root) {
            containers.push((false, doc.start));
        }
        let raw = RawDoc {
            start: doc.start,
            root: None,
            containers,
        };
        let lay = layout_of(&raw, root, &lines);
        let root_cid = container_id(root).unwrap_or(0);
        let placed = place_comments(&mine, &lay, root_cid);
        let mut b = Builder {
            anchors: &ev.anchors,
            placed,
            budget: MAX_EXPANDED_NODES,
            check_duplicates,
        };
        match b.node(root, true, 0)? {
            Value::Map(m) => out.push(m),
            _ => return Err(parse_err("the document is not a mapping".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(m: &Map, depth: usize, out: &mut String) {
        for item in &m.0 {
            let pad = "  ".repeat(depth);
            match (&item.key, &item.value) {
                (Key::Comment(c), _) => out.push_str(&format!("{pad}#{}\n", c.to_str_lossy())),
                (Key::Str(k), Value::Map(sub)) => {
                    out.push_str(&format!("{pad}{k}:\n"));
                    render(sub, depth + 1, out);
                }
                (Key::Str(k), Value::Seq(items)) => {
                    out.push_str(&format!("{pad}{k}:\n"));
                    for i in items {
                        match i {
                            Value::Comment(c) => {
                                out.push_str(&format!("{pad}  -#{}\n", c.to_str_lossy()))
                            }
                            Value::Map(sub) => {
                                out.push_str(&format!("{pad}  - map\n"));
                                render(sub, depth + 2, out);
                            }
                            _ => out.push_str(&format!("{pad}  - v\n")),
                        }
                    }
                }
                (Key::Str(k), _) => out.push_str(&format!("{pad}{k}\n")),
                (Key::Other(k), _) => out.push_str(&format!("{pad}?{k}\n")),
            }
        }
    }

    fn shape(src: &str) -> String {
        let docs = parse(src.as_bytes(), true).unwrap();
        let mut out = String::new();
        for d in docs {
            render(&d, 0, &mut out);
            out.push_str("---\n");
        }
        out
    }

    // Placements observed with the real sops 3.11 (see research notes).
    #[test]
    fn comment_placement_matches_sops() {
        let src = "a:\n    b:\n        c: 1\n        # deep foot 8\n    # mid foot 4\n  # odd 2\n# top 0\nd:\n# head at 0 inside d\n    e: 1\n            # very deep\n    f: 2\ng:\n    h:\n        i: 1\n    # at4 after deeper\nj: [1, 2] # flow line\nk: {x: 1} # flow map line\nl: |\n    block\n    # not a comment\n# after block\nn: # comment on empty value\no:\n    - a: 1 # in item\n      # in item map\n      b: 2\n    # seq level\n    - c\n";
        assert_eq!(
            shape(src),
            "a:\n  b:\n    c\n    # deep foot 8\n  # mid foot 4\n# odd 2\n# top 0\nd:\n  # head at 0 inside d\n  e\n  # very deep\n  f\ng:\n  h:\n    i\n    # at4 after deeper\nj:\n  -# flow line\n  - v\n  - v\nk:\n  # flow map line\n  x\nl\n# after block\n# comment on empty value\nn\no:\n  -# in item\n  - map\n    a\n    # in item map\n    b\n  -# seq level\n  - v\n---\n"
        );
    }

    // Found by the yaml fuzz target: a block scalar of only empty lines
    // hid the comment after it. sops keeps it (as the item map's foot).
    #[test]
    fn comment_after_an_empty_block_scalar_is_kept() {
        for src in [
            "a:\n    - b: |2+\n\n      #c\nx: 1\n",
            "a:\n    - b: |+\n\n      #c\nx: 1\n",
        ] {
            assert_eq!(
                shape(src),
                "a:\n  - map\n    b\n    #c\nx\n---\n",
                "{src:?}"
            );
        }
    }

    #[test]
    fn values_and_errors() {
        let docs = parse(b"a: 1\nb: '2'\nc: [x, {d: ~}]\n---\ne: &x f\ng: *x\n", true).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("a"), Some(&Value::Int(1)));
        assert_eq!(docs[1].get("g"), Some(&Value::str("f")));
        assert!(parse(b"a: 1\na: 2\n", true).is_err());
        assert!(parse(b"a: 1\na: 2\n", false).is_ok());
        assert!(parse(b"- 1\n", true).is_err());
        assert!(parse(b"a: [1, 2\n", true).is_err());
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        assert!(parse(bomb.as_bytes(), true).is_err());
    }
}
