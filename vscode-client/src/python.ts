// Which Python runs the server and the training, as the VS Code Python tools extensions
// decide it: an explicit deeplocalize.interpreter wins, then the Python extension's
// selected interpreter (its typed API), then python3 on PATH.
import * as vscode from "vscode";
import { PythonExtension } from "@vscode/python-extension";
import { configuredInterpreter } from "./settings";

export interface Interpreter {
  path: string;
  source: string; // said in logs and messages
  origin: "setting" | "python-extension" | "default"; // where the user changes it
}

async function pythonApi(log: vscode.LogOutputChannel): Promise<PythonExtension | undefined> {
  if (!vscode.extensions.getExtension("ms-python.python")) {
    return undefined;
  }
  try {
    return await PythonExtension.api();
  } catch (err) {
    log.warn(`The Python extension could not be activated: ${err}`);
    return undefined;
  }
}

export async function resolveInterpreter(log: vscode.LogOutputChannel): Promise<Interpreter> {
  const configured = configuredInterpreter();
  if (configured) {
    return { path: configured, source: "the deeplocalize.interpreter setting", origin: "setting" };
  }
  const api = await pythonApi(log);
  if (api) {
    try {
      const resource = vscode.window.activeTextEditor?.document.uri ?? vscode.workspace.workspaceFolders?.[0]?.uri;
      const envPath = api.environments.getActiveEnvironmentPath(resource);
      const resolved = await api.environments.resolveEnvironment(envPath);
      const exe = resolved?.executable?.uri?.fsPath ?? envPath?.path;
      if (exe) {
        return { path: exe, source: "the Python extension's selected interpreter", origin: "python-extension" };
      }
    } catch (err) {
      log.warn(`Could not read the Python extension's interpreter: ${err}`);
    }
  }
  return { path: "python3", source: "the default (python3 on PATH): no deeplocalize.interpreter setting and no Python extension", origin: "default" };
}

/** Calls `onChange` when the Python extension's selection changes and no explicit setting overrides it. */
export async function watchSelectedInterpreter(log: vscode.LogOutputChannel, onChange: () => void): Promise<vscode.Disposable | undefined> {
  const api = await pythonApi(log);
  return api?.environments.onDidChangeActiveEnvironmentPath(() => {
    if (!configuredInterpreter()) {
      onChange();
    }
  });
}
