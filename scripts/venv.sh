# Sourced by scripts/test and scripts/quickstart: makes (or reuses) the project's virtual environment in .venv
# and installs the package into it with the extras given in VPLAN_EXTRAS. Works with Debian's own python3
# (PEP 668: nothing is installed into the system Python); installs python3-venv through apt-get when missing.
VENV="${VPLAN_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Debian packages: python3-venv"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
  fi
  python3 -m venv "$VENV"
fi
stamp="$VENV/.vplan-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ -n "${VPLAN_EXTRAS:-}" ] && [ "$(cat "$stamp")" != "${VPLAN_EXTRAS}" ]; }; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  if [ -n "${VPLAN_EXTRAS:-}" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${VPLAN_EXTRAS}]"
  else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
  fi
  printf '%s' "${VPLAN_EXTRAS:-}" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
