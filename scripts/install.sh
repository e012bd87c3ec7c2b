#!/usr/bin/env bash
# Everything the product and its tests need on a fresh machine, in two halves that run
# side by side: the Python package (with TensorFlow for training and the test tools) and
# the editor stack for the VS Code end-to-end test; then the packaged extension.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# The two halves share nothing: the Python download overlaps the editor's native build.
python3 -m pip install --quiet --disable-pip-version-check -e ".[train,test]" &
pip_job=$!
bash scripts/install-editor.sh
wait "$pip_job" || { echo "install: pip install failed" >&2; exit 1; }
npm run --silent package >/dev/null
echo "install: done (CLI: deeplocalize, server: deeplocalize-server, extension: deeplocalize.vsix)"
