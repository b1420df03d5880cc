#!/usr/bin/env python3
"""Generates benchmark inputs: a small Secret, a 5,000-key Secret and a
fleet of tenant Secrets. Usage: gen.py OUTDIR [TENANTS]"""
import os, sys

out = sys.argv[1]
tenants = int(sys.argv[2]) if len(sys.argv) > 2 else 200
os.makedirs(os.path.join(out, "fleet"), exist_ok=True)

def secret(name, ns, pairs):
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"    name: {name}",
             f"    namespace: {ns}", "type: Opaque", "stringData:"]
    lines += [f"    {k}: {v}" for k, v in pairs]
    return "\n".join(lines) + "\n"

with open(os.path.join(out, "small.yaml"), "w") as f:
    f.write(secret("app", "apps", [("username", "admin"), ("password", "s3cr3t-p4ss")]))
with open(os.path.join(out, "big.yaml"), "w") as f:
    f.write(secret("big", "apps", [(f"key_{i:05d}", f"value-{i}-abcdefghijklmnop") for i in range(5000)]))
for t in range(tenants):
    with open(os.path.join(out, "fleet", f"tenant-{t:03d}.yaml"), "w") as f:
        f.write(secret(f"tenant-{t}-auth", f"tenant-{t}", [
            ("username", "git"), ("password", f"token-{t:04d}-xyz"),
            ("known_hosts", "github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI")]))
