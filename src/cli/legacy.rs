//! sops' legacy flag style (`sops -e file`, `sops -d -i file`, `sops file`),
//! rewritten to subcommands before clap sees the arguments.

use std::ffi::OsString;

const SUBCOMMANDS: &[&str] = &[
    "encrypt",
    "decrypt",
    "rotate",
    "updatekeys",
    "set",
    "unset",
    "edit",
    "filestatus",
    "exec-env",
    "exec-file",
    "completion",
    "keygen",
    "secret",
    "init",
    "tenant",
    "validate",
    "plugin",
    "render",
    "serve",
    "fleet",
    "demo",
    "cmp",
    "help",
    "groups",
    "keyservice",
    "publish",
];

/// sops' boolean flags (urfave/cli `BoolFlag`s), which also take
/// `--flag=true|false` with Go's `strconv.ParseBool` spellings.
const BOOL_FLAGS: &[&str] = &[
    "background",
    "decrypt",
    "disable-version-check",
    "encrypt",
    "idempotent",
    "ignore-mac",
    "in-place",
    "mac-only-encrypted",
    "no-fifo",
    "pristine",
    "rotate",
    "same-process",
    "show-master-keys",
    "value-file",
    "value-stdin",
    "verbose",
    "yes",
];

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `--flag=true` becomes `--flag` and `--flag=false` disappears, for sops'
/// boolean flags, before anything else reads the arguments (after `--`
/// everything is a file name or command).
fn boolean_values(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut literal = false;
    for a in args {
        if literal {
            out.push(a);
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--" {
            literal = true;
            out.push(a);
            continue;
        }
        let flag = s
            .strip_prefix("--")
            .and_then(|f| f.split_once('='))
            .filter(|(name, _)| BOOL_FLAGS.contains(name))
            .and_then(|(name, v)| parse_go_bool(v).map(|b| (name.to_string(), b)));
        match flag {
            Some((name, true)) => out.push(OsString::from(format!("--{name}"))),
            Some((_, false)) => {}
            None => out.push(a),
        }
    }
    out
}

/// Subcommands that print or write a YAML/JSON store and take `--indent`.
const INDENT_SUBCOMMANDS: &[&str] = &[
    "encrypt",
    "decrypt",
    "rotate",
    "set",
    "unset",
    "edit",
    "exec-file",
];

/// Rewrites legacy invocations and boolean flag values; anything else
/// passes through unchanged.
///
/// sops' `--indent N` is a global flag: before a subcommand, sops 3.11
/// ignores it and 3.13 applies it (`sops --indent 4 decrypt f`). It is moved
/// behind the subcommand when that one writes YAML/JSON, dropped otherwise.
pub fn translate(args: Vec<OsString>) -> Vec<OsString> {
    let (args, indent) = take_leading_indent(boolean_values(args));
    let mut out = translate_legacy(args);
    if indent.is_empty() {
        return out;
    }
    let at = global_flags_end(&out);
    if out
        .get(at)
        .is_some_and(|s| INDENT_SUBCOMMANDS.contains(&s.to_string_lossy().as_ref()))
    {
        out.splice(at + 1..at + 1, indent);
    }
    out
}

/// Removes `--indent N` / `--indent=N` from among the global flags before
/// the subcommand (or the legacy flags); returns the rest and the flag.
fn take_leading_indent(args: Vec<OsString>) -> (Vec<OsString>, Vec<OsString>) {
    let mut out = Vec::with_capacity(args.len());
    let mut indent = Vec::new();
    let mut it = args.into_iter().enumerate().peekable();
    let mut in_prefix = true;
    while let Some((n, a)) = it.next() {
        let s = a.to_string_lossy().into_owned();
        if n == 0 || !in_prefix {
            out.push(a);
            continue;
        }
        if s == "--indent" {
            indent.push(a);
            if let Some((_, v)) = it.next() {
                indent.push(v);
            }
        } else if s.starts_with("--indent=") {
            indent.push(a);
        } else if s == "--config" || s == "--keys-dir" {
            out.push(a);
            if let Some((_, v)) = it.next() {
                out.push(v);
            }
        } else if s.starts_with("--config=")
            || s.starts_with("--keys-dir=")
            || s == "--verbose"
            || s == "--disable-version-check"
        {
            out.push(a);
        } else {
            in_prefix = false;
            out.push(a);
        }
    }
    (out, indent)
}

/// The index of the first argument after the global flags.
fn global_flags_end(args: &[OsString]) -> usize {
    let mut i = 1;
    while let Some(a) = args.get(i).map(|a| a.to_string_lossy()) {
        if a == "--config" || a == "--keys-dir" {
            i += 2;
        } else if a.starts_with("--config=")
            || a.starts_with("--keys-dir=")
            || a == "--verbose"
            || a == "--disable-version-check"
        {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn translate_legacy(args: Vec<OsString>) -> Vec<OsString> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if strs.len() < 2 {
        return args;
    }
    // Global flags that take a value may come before the subcommand.
    let i = global_flags_end(&args);
    if i >= strs.len() {
        return args;
    }
    let first = &strs[i];
    if SUBCOMMANDS.contains(&first.as_str())
        || matches!(first.as_str(), "-h" | "--help" | "-V" | "--version")
    {
        return args;
    }
    let rest: Vec<&String> = strs[i..].iter().collect();
    // `sops --set '["a"] "value"' [-i] FILE`: the one legacy form with a value.
    if let Some(pos) = rest
        .iter()
        .position(|a| *a == "--set" || a.starts_with("--set="))
    {
        let value = if let Some(v) = rest[pos].strip_prefix("--set=") {
            Some(v.to_string())
        } else {
            rest.get(pos + 1).map(|v| v.to_string())
        };
        let file = rest
            .iter()
            .enumerate()
            .filter(|(j, a)| *j != pos && *j != pos + 1 && !a.starts_with('-'))
            .map(|(_, a)| a.to_string())
            .next_back();
        if let (Some(v), Some(file)) = (value, file) {
            if let Some((path, val)) = v.split_once(' ') {
                let mut out: Vec<OsString> = args[..i].to_vec();
                out.extend(["set".into(), file.into(), path.into(), val.into()]);
                return out;
            }
        }
    }
    let has = |names: &[&str]| rest.iter().any(|a| names.contains(&a.as_str()));
    let sub = if has(&["-e", "--encrypt"]) {
        "encrypt"
    } else if has(&["-d", "--decrypt"]) {
        "decrypt"
    } else if has(&["-r", "--rotate"]) {
        "rotate"
    } else {
        "edit"
    };
    let mut out: Vec<OsString> = args[..i].to_vec();
    out.push(sub.into());
    for a in rest {
        if matches!(
            a.as_str(),
            "-e" | "--encrypt" | "-d" | "--decrypt" | "-r" | "--rotate"
        ) {
            continue;
        }
        out.push(a.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_flags_take_go_values() {
        let v = |a: &[&str]| -> Vec<String> {
            boolean_values(a.iter().map(OsString::from).collect())
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            v(&[
                "kustos",
                "decrypt",
                "--ignore-mac=false",
                "--in-place=T",
                "f"
            ]),
            ["kustos", "decrypt", "--in-place", "f"]
        );
        assert_eq!(v(&["k", "--verbose=maybe"]), ["k", "--verbose=maybe"]);
        assert_eq!(
            v(&["k", "exec-env", "f", "--", "--ignore-mac=false"]),
            ["k", "exec-env", "f", "--", "--ignore-mac=false"]
        );
    }

    fn t(a: &[&str]) -> Vec<String> {
        translate(a.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn legacy_forms() {
        assert_eq!(
            t(&["kustos", "-d", "f.yaml"]),
            ["kustos", "decrypt", "f.yaml"]
        );
        assert_eq!(
            t(&["kustos", "-i", "-e", "f.yaml"]),
            ["kustos", "encrypt", "-i", "f.yaml"]
        );
        assert_eq!(t(&["kustos", "f.yaml"]), ["kustos", "edit", "f.yaml"]);
        assert_eq!(t(&["kustos", "decrypt", "-d"]), ["kustos", "decrypt", "-d"]);
        assert_eq!(
            t(&["kustos", "--set", r#"["a"] "v w""#, "-i", "f.yaml"]),
            ["kustos", "set", "f.yaml", r#"["a"]"#, r#""v w""#]
        );
        assert_eq!(
            t(&["kustos", "--config", "c", "-d", "f"]),
            ["kustos", "--config", "c", "decrypt", "f"]
        );
    }

    #[test]
    fn global_indent_goes_behind_the_subcommand() {
        assert_eq!(
            t(&["kustos", "--indent", "4", "decrypt", "f"]),
            ["kustos", "decrypt", "--indent", "4", "f"]
        );
        assert_eq!(
            t(&[
                "kustos",
                "--verbose",
                "--indent=2",
                "--config",
                "c",
                "rotate",
                "-i",
                "f"
            ]),
            [
                "kustos",
                "--verbose",
                "--config",
                "c",
                "rotate",
                "--indent=2",
                "-i",
                "f"
            ]
        );
        assert_eq!(
            t(&["kustos", "--indent", "4", "-d", "f"]),
            ["kustos", "decrypt", "--indent", "4", "f"]
        );
        assert_eq!(
            t(&["kustos", "--indent", "4", "f.yaml"]),
            ["kustos", "edit", "--indent", "4", "f.yaml"]
        );
        // No effect on the others, as in sops.
        assert_eq!(
            t(&["kustos", "--indent", "4", "filestatus", "f"]),
            ["kustos", "filestatus", "f"]
        );
        // After the subcommand it is that subcommand's flag.
        assert_eq!(
            t(&["kustos", "decrypt", "--indent", "4", "f"]),
            ["kustos", "decrypt", "--indent", "4", "f"]
        );
    }
}
