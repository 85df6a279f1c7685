#!/bin/sh
# Installs the runtime into a fresh virtualenv: exactly the locked dependencies (every file
# checked against its hash, wheels only), then the project itself without dependencies.
# The image's build stage runs this, and tests/infra/test_runtime_install.py runs the same script
# outside Docker to prove the runtime starts with nothing more (no dev extras).
# Usage: install-runtime.sh <venv dir> <project dir>   (UV and PYTHON override the binaries)
set -eu
venv=$1
src=$2
uv=${UV:-uv}
"$uv" venv --quiet --python "${PYTHON:-python3}" "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" --require-hashes --only-binary :all: \
    -r "$src/requirements.lock"
"$uv" pip install --quiet --python "$venv/bin/python" --no-deps "$src"
