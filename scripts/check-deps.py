#!/usr/bin/env python3
"""Offline dependency policy check (runs in scripts/test.sh).

Every crate in Cargo.lock must come from crates.io, be a released version
(no release candidates), be the only version of it if it is cryptographic,
and carry a license expression that is
satisfiable with the allow-list below. This is a small,
network-free subset of `cargo deny check licenses sources`. Advisories are
checked offline too, against the committed RustSec snapshot
(scripts/advisories.py, scripts/rustsec-snapshot.json) with deny.toml's
ignore list; `cargo deny check advisories` checks the live database where
the network allows it.
"""
import json
import re
import subprocess
import sys

import advisories

ALLOWED = {
    "MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-1-Clause",
    "BSD-2-Clause", "BSD-3-Clause", "0BSD", "ISC", "Zlib", "Unicode-3.0",
    "Unicode-DFS-2016", "Unlicense", "BSL-1.0", "CC0-1.0", "MPL-2.0",
    "CDLA-Permissive-2.0",
    # sequoia-openpgp and buffered-reader: LGPL, linked statically. Allowed
    # by decision (see README, "Licenses"); nothing else may add LGPL/GPL.
    "LGPL-2.0-or-later",
}
# Crates that may use a license outside the permissive set above.
LGPL_CRATES = {"sequoia-openpgp", "buffered-reader"}
# MIT-0 is MIT without the attribution clause; allowed for the one crate
# that needs it (fluent-uri's, under the jsonschema validator) rather than
# for any new dependency.
CRATE_LICENSES = {"borrow-or-share": {"MIT-0"}}
ALLOWED_SOURCE = "registry+https://github.com/rust-lang/crates.io-index"
# Release candidates and other pre-releases: a semver pre-release part
# (after "-", before any "+build" metadata, which is not one).
PRERELEASE = re.compile(r"^[^+]*-")
# Cryptographic crates that may appear in one version only: two
# generations of a primitive mean twice the code to audit and a second
# place for the same bug. (rand/getrandom are OS-randomness plumbing, and
# age and Sequoia each pick theirs.)
ONE_VERSION = {
    "aes", "aes-gcm", "aws-lc-rs", "aws-lc-sys", "block-buffer", "chacha20",
    "chacha20poly1305", "cipher", "crypto-bigint", "crypto-common",
    "curve25519-dalek", "digest", "ecdsa", "ed25519", "ed25519-dalek",
    "elliptic-curve", "hkdf", "hmac", "keccak", "p256", "p384", "p521",
    "pbkdf2", "poly1305", "rsa", "scrypt", "sha1", "sha2", "sha3",
    "signature", "subtle", "x25519-dalek", "zeroize",
}


def tokens(expr):
    expr = expr.replace("/", " OR ")
    return re.findall(r"\(|\)|[A-Za-z0-9.+-]+(?: WITH [A-Za-z0-9.+-]+)?", expr)


def satisfiable(toks, ok):
    """Recursive-descent over OR (lowest) / AND / parentheses."""
    pos = 0

    def term():
        nonlocal pos
        if toks[pos] == "(":
            pos += 1
            value = disjunction()
            pos += 1  # ')'
            return value
        tok = toks[pos]
        pos += 1
        return ok(tok)

    def conjunction():
        nonlocal pos
        value = term()
        while pos < len(toks) and toks[pos] == "AND":
            pos += 1
            value = term() and value
        return value

    def disjunction():
        nonlocal pos
        value = conjunction()
        while pos < len(toks) and toks[pos] == "OR":
            pos += 1
            value = conjunction() or value
        return value

    return disjunction()


def shipped_versions():
    """Name -> versions of the crates linked into kustos on any target
    (build scripts' and tests' own dependencies are not shipped)."""
    out = subprocess.check_output(
        ["cargo", "tree", "--locked", "-e", "normal", "--target", "all",
         "--prefix", "none", "--format", "{p}"], text=True)
    versions = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            versions.setdefault(parts[0], set()).add(parts[1][1:])
    return versions


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"]))
    problems = []
    versions = shipped_versions()
    for name in sorted(ONE_VERSION):
        if len(versions.get(name, ())) > 1:
            problems.append(f"{name}: {len(versions[name])} versions "
                            f"({', '.join(sorted(versions[name]))}); one generation only")
    for pkg in meta["packages"]:
        name, source = pkg["name"], pkg.get("source")
        if source is None:
            continue  # this crate
        if source != ALLOWED_SOURCE:
            problems.append(f"{name} {pkg['version']}: source {source} is not crates.io")
        if PRERELEASE.search(pkg["version"]):
            problems.append(f"{name} {pkg['version']}: a pre-release; only released versions ship")
        lic = pkg.get("license")
        if not lic:
            problems.append(f"{name} {pkg['version']}: no SPDX license expression")
            continue

        def ok(tok, name=name):
            if tok.startswith("LGPL") and name not in LGPL_CRATES:
                return False
            return tok in ALLOWED or tok in CRATE_LICENSES.get(name, ())

        if not satisfiable(tokens(lic), ok):
            problems.append(f"{name} {pkg['version']}: license '{lic}' not allowed")
    if problems:
        print("dependency policy: FAILED", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"dependency policy: {len(meta['packages']) - 1} crates from crates.io, licenses OK")
    return advisories.main(["advisories.py", "check"])


if __name__ == "__main__":
    sys.exit(main())
