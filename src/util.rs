//! Small helpers shared by the library and the CLI.

use std::fmt::Write as _;

/// Escapes control characters so a file name or key cannot inject terminal
/// escape sequences into messages (fd's `sanitize` idea).
pub fn escape_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                _ => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_controls() {
        assert_eq!(
            super::escape_for_terminal("a\x1b[31mb\n"),
            "a\\u{1b}[31mb\\n"
        );
    }
}
