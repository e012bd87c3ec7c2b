// Test-only stand-in for ms-python.python: the part of its typed API (@vscode/python-extension)
// that DeepLocalize reads. Its selected interpreter does not exist, so a server started with
// it fails visibly: the e2e test sees which interpreter the extension chose.
const vscode = require("vscode");

const SELECTED = "/nonexistent/python-extension-selection/bin/python";

function activate() {
  const changed = new vscode.EventEmitter();
  return {
    environments: {
      getActiveEnvironmentPath: () => ({ id: "standin", path: SELECTED }),
      resolveEnvironment: async () => undefined,
      onDidChangeActiveEnvironmentPath: changed.event,
    },
  };
}

module.exports = { activate, SELECTED };
