#!/usr/bin/env bash
# Idempotent set-up: .venv with the locked Python packages, the npm packages,
# and (with --browser) what the tests need from Debian: chromium for the browser tests,
# coturn for the TURN relay tests, iproute2 and iptables for the emulated internet (netlab/),
# nginx for the TLS reverse-proxy test.
# Fast when nothing changed: each step is skipped while its inputs' hash is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
want_browser=0
[[ "${1:-}" == "--browser" ]] && want_browser=1

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v patch >/dev/null || need_apt+=(patch)
command -v node >/dev/null || need_apt+=(nodejs npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [[ $want_browser -eq 1 && ! -x /usr/bin/chromium ]]; then need_apt+=(chromium); fi
if [[ $want_browser -eq 1 ]] && ! command -v turnserver >/dev/null; then need_apt+=(coturn); fi
# the emulated internet (netlab/: network namespaces, NAT) and the TLS reverse-proxy test (nginx)
if [[ $want_browser -eq 1 ]] && ! command -v ip >/dev/null; then need_apt+=(iproute2); fi
if [[ $want_browser -eq 1 ]] && ! command -v iptables >/dev/null; then need_apt+=(iptables); fi
if [[ $want_browser -eq 1 && ! -x /usr/sbin/nginx ]]; then need_apt+=(nginx); fi
if [[ ${#need_apt[@]} -gt 0 ]]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

py_stamp=".venv/.setup-stamp-$(hash_of requirements.lock pyproject.toml)"
if [[ ! -f "$py_stamp" ]]; then
  echo "setup: creating .venv and installing locked Python packages (first run takes a few minutes)"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  rm -f .venv/.setup-stamp-*; touch "$py_stamp"
fi

# aiortc's SCTP sends a message queued after idle four packets at a time whatever its window
# (patches/aiortc-sctp-burst-after-idle.patch, proposed upstream): one exchange on a 250 ms path
# took 2.3 s instead of 0.9 s. Applied to aiortc 1.16.0 only; another release is left as it is.
sctp_patch=patches/aiortc-sctp-burst-after-idle.patch
site=$(.venv/bin/python -c 'import aiortc, os; print(os.path.dirname(os.path.dirname(aiortc.__file__)))')
aiortc_version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("aiortc"))')
if ! patch -p1 -R -s -f --dry-run -d "$site" < "$sctp_patch" >/dev/null 2>&1 \
   && ! patch -p1 -N -s -f --dry-run -d "$site" < "$sctp_patch" >/dev/null 2>&1 && [[ "$aiortc_version" == 1.16.0 ]]; then
  # neither applied nor applicable on 1.16.0: an earlier version of the patch is in; start from the release
  echo "setup: reinstalling aiortc 1.16.0 to replace an earlier version of $sctp_patch"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall aiortc==1.16.0
fi
if patch -p1 -R -s -f --dry-run -d "$site" < "$sctp_patch" >/dev/null 2>&1; then
  :  # already applied
elif patch -p1 -N -s -f --dry-run -d "$site" < "$sctp_patch" >/dev/null 2>&1; then
  echo "setup: applying $sctp_patch to aiortc in .venv"
  patch -p1 -N -s -f -d "$site" < "$sctp_patch" >/dev/null
else
  echo "setup: $sctp_patch does not apply to this aiortc (not 1.16.0?); peers work, exchanges on slow links take longer"
fi

npm_stamp="browser_peer/node_modules/.setup-stamp-$(hash_of browser_peer/package.json browser_peer/package-lock.json)"
if [[ ! -f "$npm_stamp" ]]; then
  echo "setup: installing npm packages in browser_peer/"
  (cd browser_peer && npm ci --no-audit --no-fund --loglevel=error)
  rm -f browser_peer/node_modules/.setup-stamp-*; touch "$npm_stamp"
fi

# The optional native data-channel stack (aiolibdatachannel needs Python >= 3.12): benchmarked
# beside aiortc by benchmarks/dc_rate.py. Found on PATH or under pyenv; absent, a note, no failure.
native_python=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python "$(command -v python3.12 || true)"; do
  # a pyenv shim is on PATH without being usable: take the first interpreter that runs
  if [[ -x "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    native_python=$candidate; break
  fi
done
native_stamp=".venv-native/.setup-stamp-$(hash_of requirements-native.lock)"
if [[ -n "$native_python" && ! -f "$native_stamp" ]]; then
  echo "setup: creating .venv-native ($native_python) with the native data-channel stack"
  [[ -x .venv-native/bin/python ]] || "$native_python" -m venv .venv-native
  .venv-native/bin/python -m pip install -q --disable-pip-version-check -r requirements-native.lock
  rm -f .venv-native/.setup-stamp-*; touch "$native_stamp"
elif [[ -z "$native_python" ]]; then
  echo "setup: no Python 3.12 found; the native data-channel stack (.venv-native) is not installed"
fi
