#!/usr/bin/env python3
"""Offline RustSec advisory audit against a committed snapshot.

CI has no route to the RustSec database, so the advisories that name a
crate in Cargo.lock are kept in scripts/rustsec-snapshot.json (ids,
affected version ranges, titles; the database is CC0-1.0) and checked
here on every run, with the ignore list of deny.toml. Refresh it with a
checkout of github.com/rustsec/advisory-db (work tree or bare repository):

    python3 scripts/advisories.py update PATH/TO/advisory-db

Where the network allows, `cargo deny check advisories` checks the live
database with the same deny.toml.

    python3 scripts/advisories.py check     # what scripts/check-deps.py runs
"""
import json
import os
import re
import subprocess
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPSHOT = os.path.join(HERE, "rustsec-snapshot.json")
DENY_TOML = os.path.join(HERE, "..", "deny.toml")


# --- semver ranges as RustSec writes them ("^1.2", ">= 0.9.1, < 0.10", …)

def parse_version(text):
    core, _, pre = text.strip().partition("-")
    core = core.partition("+")[0]
    parts = [int(p) for p in core.split(".")]
    return parts, pre


def key(parts, pre=""):
    full = (parts + [0, 0, 0])[:3]
    # A pre-release sorts before its release; its dot-separated fields
    # compare numerically where they are numbers (rc.9 < rc.16).
    fields = tuple((0, int(f), "") if f.isdigit() else (1, 0, f) for f in pre.split(".")) if pre else ()
    return (full[0], full[1], full[2], 0 if pre else 1, fields)


def comparator_range(op, parts, pre):
    """(low, low_inclusive, high) for one comparator; None = unbounded."""
    lo = key(parts, pre)
    if op in ("^", ""):
        if parts[0] > 0 or len(parts) == 1:
            hi = key([parts[0] + 1])
        elif len(parts) == 2 or parts[1] > 0:
            hi = key([0, parts[1] + 1])
        else:
            hi = key([0, 0, parts[2] + 1])
        return lo, True, hi
    if op == "~":
        hi = key([parts[0] + 1]) if len(parts) == 1 else key([parts[0], parts[1] + 1])
        return lo, True, hi
    if op == "=":
        if len(parts) == 3:
            return lo, True, key(parts[:2] + [parts[2] + 1])
        return comparator_range("~", parts, pre)
    if op == ">=":
        return lo, True, None
    if op == ">":
        if len(parts) < 3:
            bumped = parts[:-1] + [parts[-1] + 1]
            return key(bumped), True, None
        return lo, False, None
    if op == "<":
        return None, True, lo
    if op == "<=":
        if len(parts) < 3:
            bumped = parts[:-1] + [parts[-1] + 1]
            return None, True, key(bumped)
        return None, True, key(parts[:2] + [parts[2] + 1])
    raise ValueError(f"unknown comparator {op!r}")


def matches(req, version):
    v = key(*parse_version(version))
    for comp in req.split(","):
        m = re.fullmatch(r"\s*(>=|<=|>|<|=|\^|~)?\s*([0-9][0-9A-Za-z.+-]*)\s*", comp)
        if not m:
            raise ValueError(f"cannot read version requirement {req!r}")
        parts, pre = parse_version(m.group(2))
        lo, lo_incl, hi = comparator_range(m.group(1) or "", parts, pre)
        if lo is not None and (v < lo or (v == lo and not lo_incl)):
            return False
        if hi is not None and v >= hi:
            return False
    return True


def affected(adv, version):
    ranges = adv.get("patched", []) + adv.get("unaffected", [])
    return not any(matches(r, version) for r in ranges)


# --- the lock file and deny.toml

def locked_packages():
    with open(os.path.join(HERE, "..", "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    return [(p["name"], p["version"]) for p in lock["package"] if "source" in p]


def ignored_ids():
    with open(DENY_TOML, "rb") as f:
        deny = tomllib.load(f)
    out = {}
    for entry in deny.get("advisories", {}).get("ignore", []):
        if isinstance(entry, dict):
            out[entry["id"]] = entry.get("reason", "")
        else:
            out[entry] = ""
    return out


# --- update from a database checkout

def read_db(path):
    """(commit, [(file name, text)]) for every crates/*/*.md advisory."""
    if os.path.isdir(os.path.join(path, "crates")):
        files = []
        for root, _, names in os.walk(os.path.join(path, "crates")):
            for n in names:
                if n.endswith(".md"):
                    with open(os.path.join(root, n), encoding="utf-8") as f:
                        files.append((n, f.read()))
        git = ["git", "-C", path]
    else:
        git = ["git", "--git-dir", path]
        names = subprocess.check_output(
            git + ["ls-tree", "-r", "--name-only", "HEAD", "crates"], text=True).split()
        files = [(n, subprocess.check_output(git + ["show", f"HEAD:{n}"], text=True))
                 for n in names if n.endswith(".md")]
    try:
        commit = subprocess.check_output(git + ["log", "-1", "--format=%H %cs"], text=True).split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = ["unknown", "unknown"]
    return commit, files


def update(db):
    wanted = {name for name, _ in locked_packages()}
    (commit, date), files = read_db(db)
    advisories = []
    for name, text in files:
        m = re.search(r"```toml\n(.*?)\n```", text, re.S)
        if not m:
            continue
        meta = tomllib.loads(m.group(1))
        adv, versions = meta["advisory"], meta.get("versions", {})
        if adv["package"] not in wanted:
            continue
        title = re.search(r"^# (.+)$", text[m.end():], re.M)
        advisories.append({
            "id": adv["id"],
            "package": adv["package"],
            "date": str(adv.get("date", "")),
            "title": title.group(1).strip() if title else "",
            "informational": adv.get("informational"),
            "withdrawn": bool(adv.get("withdrawn")),
            "patched": versions.get("patched", []),
            "unaffected": versions.get("unaffected", []),
        })
    advisories.sort(key=lambda a: a["id"])
    with open(SNAPSHOT, "w") as f:
        json.dump({"source": "https://github.com/rustsec/advisory-db",
                   "commit": commit, "date": date,
                   "advisories": advisories}, f, indent=1)
        f.write("\n")
    print(f"{len(advisories)} advisories for locked crates, database {commit[:12]} of {date}")


# --- the check

def check():
    """(errors, notes) for the locked crates."""
    with open(SNAPSHOT) as f:
        snap = json.load(f)
    ignore = ignored_ids()
    by_pkg = {}
    for adv in snap["advisories"]:
        by_pkg.setdefault(adv["package"], []).append(adv)
    errors, notes = [], []
    for name, version in locked_packages():
        for adv in by_pkg.get(name, []):
            if adv["withdrawn"] or not affected(adv, version):
                continue
            line = f"{name} {version}: {adv['id']} {adv['title']}"
            if adv["id"] in ignore:
                notes.append(f"{line} (ignored: {ignore[adv['id']]})")
            else:
                errors.append(line + (f" [{adv['informational']}]" if adv["informational"] else ""))
    summary = (f"advisories: {len(snap['advisories'])} known for locked crates "
               f"(RustSec {snap['commit'][:12]}, {snap['date']})")
    return errors, notes, summary


def main(argv):
    if len(argv) == 3 and argv[1] == "update":
        update(argv[2])
        return 0
    if len(argv) == 2 and argv[1] == "check":
        errors, notes, summary = check()
        for n in notes:
            print("  " + n)
        if errors:
            print(summary + ": FAILED", file=sys.stderr)
            for e in errors:
                print("  " + e, file=sys.stderr)
            return 1
        print(summary + ", none affects Cargo.lock")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
