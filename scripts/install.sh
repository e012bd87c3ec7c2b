#!/usr/bin/env bash
# Everything the product and its tests need on a fresh machine:
# the Python package (with TensorFlow for training and the test tools), then the
# editor stack for the VS Code end-to-end test, then the packaged extension.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
python3 -m pip install --quiet --disable-pip-version-check -e ".[train,test]"
bash scripts/install-editor.sh
npm run --silent package >/dev/null
echo "install: done (CLI: deeplocalize, server: deeplocalize-server, extension: deeplocalize.vsix)"
