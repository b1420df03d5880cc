//! The scalar analysis both YAML writers share: libyaml's
//! `yaml_emitter_analyze_scalar` (block-context results), as go-yaml v3
//! (sops files) and go-yaml v2 (Flux's `--export` output) port it. The two
//! differ only in how a tab and what follows a character count.

/// Which go-yaml the output must match byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// go-yaml v2: a tab is a special character; only a space or tab (or
    /// the end) counts as whitespace after an indicator.
    V2,
    /// go-yaml v3: a tab only rules out plain and single-quoted styles;
    /// line breaks count as whitespace too.
    V3,
}

/// libyaml's `is_printable`, on characters (tab and characters above
/// U+FFFF are not).
pub fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

/// A YAML line break character.
pub fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: Option<char>) -> bool {
    matches!(c, None | Some(' ' | '\t')) || c.is_some_and(is_break)
}

/// Which styles a scalar may be written in.
#[derive(Debug, PartialEq, Eq)]
pub struct Analysis {
    /// It holds a line break.
    pub multiline: bool,
    /// Plain style is possible in block context.
    pub block_plain: bool,
    /// Single-quoted style is possible.
    pub single: bool,
    /// Literal/folded block style is possible.
    pub block: bool,
}

/// What the analysis finds for a plain word.
const WORD: Analysis = Analysis {
    multiline: false,
    block_plain: true,
    single: true,
    block: true,
};

/// Analyzes a scalar for `dialect`.
pub fn analyze(s: &str, dialect: Dialect) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    // Most keys and values are words (`password`, `tenant-a`,
    // `ENC[AES256_GCM,data:…,type:str]`): visible ASCII without blanks,
    // starting with a letter or digit. In those only a final `:` (an
    // indicator before the end) changes the analysis, and the
    // character-by-character pass below is the slow part of emitting
    // large files.
    let bytes = s.as_bytes();
    if bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(u8::is_ascii_graphic)
        && bytes.last() != Some(&b':')
    {
        return WORD;
    }
    analyze_chars(s, dialect)
}

/// The full analysis (also the reference the word shortcut is tested
/// against).
pub fn analyze_chars(s: &str, dialect: Dialect) -> Analysis {
    let chars: Vec<char> = s.chars().collect();
    let mut block_ind = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut lead_space, mut lead_break, mut trail_space, mut trail_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_ws = true;
    let n = chars.len();
    for i in 0..n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let followed_ws = match dialect {
            Dialect::V3 => is_blank(next),
            Dialect::V2 => matches!(next, None | Some(' ' | '\t')),
        };
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_ind = true,
                '?' | ':' if followed_ws => block_ind = true,
                '-' if followed_ws => block_ind = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_ws => block_ind = true,
                '#' if preceded_ws => block_ind = true,
                _ => {}
            }
        }
        if c == '\t' && dialect == Dialect::V3 {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                lead_space = true;
            }
            if i + 1 == n {
                trail_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                lead_break = true;
            }
            if i + 1 == n {
                trail_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_blank(Some(c)) || (dialect == Dialect::V2 && c == '\0');
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain: true,
        single: true,
        block: true,
    };
    if lead_space || lead_break || trail_space || trail_break {
        a.block_plain = false;
    }
    if trail_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || tabs || special {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block = false;
    }
    if line_breaks || block_ind {
        a.block_plain = false;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fast_path_agrees_with_the_full_analysis() {
        let alphabet = b"aZ09-_./+=:#,[]{}&*!|>'\"%@`?~ \t\n";
        let mut words = vec![
            "a".to_string(),
            "password".into(),
            "tenant-a".into(),
            "ENC[AES256_GCM,data:Zm9v,iv:YmFy+/==,tag:YmF6,type:str]".into(),
            "a: b".into(),
            "a #b".into(),
            "a:".into(),
            "a:b:".into(),
            "x\u{7f}".into(),
            "x\u{e9}".into(),
        ];
        // Every string of up to three characters over the fast path's alphabet.
        for &a in alphabet {
            for &b in alphabet {
                for &c in alphabet {
                    for w in [vec![a], vec![a, b], vec![a, b, c]] {
                        words.push(String::from_utf8(w).unwrap());
                    }
                }
            }
        }
        for w in &words {
            if w.as_bytes()[0].is_ascii_alphanumeric() {
                for d in [Dialect::V2, Dialect::V3] {
                    assert_eq!(analyze(w, d), analyze_chars(w, d), "{w:?}");
                }
            }
        }
    }
}
