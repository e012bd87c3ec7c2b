// The training report in a webview: the server draws it (deeplocalize/report) from the last
// analysis of the document, so opening it never starts a run; it is redrawn when a new run of
// that document finishes. The page carries its own strict CSP (no script, data: images only).
import * as vscode from "vscode";
import { LanguageClient } from "vscode-languageclient/node";

interface ReportReply {
  html: string | null;
  message?: string;
  file?: string;
}

export class ReportPanels implements vscode.Disposable {
  private readonly panels = new Map<string, vscode.WebviewPanel>();

  constructor(private readonly client: () => LanguageClient | undefined, private readonly log: vscode.LogOutputChannel) {}

  /** Opens (or reveals) the report of `uri`: a file, a notebook, or a notebook cell. */
  async show(uri: string): Promise<void> {
    const reply = await this.fetch(uri);
    if (!reply) {
      return;
    }
    if (reply.html === null) {
      void vscode.window.showInformationMessage(`DeepLocalize: ${reply.message ?? "no report yet"}`);
      return;
    }
    let panel = this.panels.get(uri);
    if (!panel) {
      panel = vscode.window.createWebviewPanel("deeplocalize.report", `Training report: ${reply.file ?? "script"}`, vscode.ViewColumn.Beside,
        { enableScripts: false, enableFindWidget: true, retainContextWhenHidden: false });
      this.panels.set(uri, panel);
      panel.onDidDispose(() => this.panels.delete(uri));
    }
    panel.webview.html = reply.html;
    panel.reveal(undefined, true);
  }

  /** A run finished: redraw the report of that document if it is open. */
  async refresh(uri: string): Promise<void> {
    const panel = this.panels.get(uri);
    if (!panel) {
      return;
    }
    const reply = await this.fetch(uri);
    if (reply?.html) {
      panel.webview.html = reply.html;
    }
  }

  private async fetch(uri: string): Promise<ReportReply | undefined> {
    const client = this.client();
    if (!client) {
      void vscode.window.showWarningMessage("DeepLocalize: the server is not running; see its logs.");
      return undefined;
    }
    try {
      return await client.sendRequest<ReportReply>("deeplocalize/report", { uri });
    } catch (err) {
      this.log.error(`The training report could not be drawn: ${err}`);
      void vscode.window.showErrorMessage("DeepLocalize: the training report could not be drawn; see its logs.");
      return undefined;
    }
  }

  dispose(): void {
    for (const panel of this.panels.values()) {
      panel.dispose();
    }
  }
}
