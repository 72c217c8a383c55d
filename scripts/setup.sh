#!/usr/bin/env bash
# Set up whatever is missing: system packages, the virtual environment, the project and
# its dependencies, and Pyomo's PyNumero ASL library (needed by the cyipopt solver).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
dpkg -s libamplsolver-dev >/dev/null 2>&1 || need_apt+=(libamplsolver-dev)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# The test suite opens report.html in a real headless browser (Debian's chromium, driven by
# Selenium through chromium-driver; nothing is downloaded at test time). NFCA_NO_BROWSER=1 skips it.
if [ "${NFCA_NO_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.nfca-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing nfca and its dependencies" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi

if ! "$VENV/bin/python" -c "from pyomo.contrib.pynumero.asl import AmplInterface; import sys; sys.exit(0 if AmplInterface.available() else 1)" 2>/dev/null; then
  echo "setup: building Pyomo's PyNumero ASL library" >&2
  "$VENV/bin/python" -m pyomo.contrib.pynumero.build \
    -DASL_INCLUDE_DIR=/usr/include/ampl-netlib-solvers \
    -DASL_LIBRARY=/usr/lib/x86_64-linux-gnu/libamplsolver.so >/dev/null
fi
"$VENV/bin/python" -c "import pyomo.environ as pe; assert pe.SolverFactory('cyipopt').available(), 'cyipopt solver not available'"
