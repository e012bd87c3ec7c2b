// The extension's own settings (the server reads the rest through workspace/configuration).
import * as vscode from "vscode";

export const SECTION = "deeplocalize";

/** The explicit interpreter setting, or "" when the user left it to the defaults. */
export function configuredInterpreter(): string {
  return vscode.workspace.getConfiguration(SECTION).get<string>("interpreter", "").trim();
}

export function affectsInterpreter(e: vscode.ConfigurationChangeEvent): boolean {
  return e.affectsConfiguration(`${SECTION}.interpreter`);
}
