// Real training runs (`deeplocalize run`) in the editor: the server watches their run folders and
// puts their findings on the script's lines (source "training run"); it tells us each run's state
// (`deeplocalize/trainingRun`). A status bar item shows a live run (epoch, findings) and opens its
// training report, which is redrawn as the run writes it. The page is the run's own report.html:
// self-contained, with its strict CSP (no script, data: images only).
import * as vscode from "vscode";

export interface TrainingRun {
  uri: string;
  folder: string;
  state: string; // live | finished | crashed | interrupted | stopped | failed | killed
  live: boolean;
  epoch: number | null;
  epochs: number | null;
  findings: number;
  serious: number;
  report: string | null;
  label: string;
}

export class TrainingRuns implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly runs = new Map<string, TrainingRun>();
  private panel: vscode.WebviewPanel | undefined;
  private panelRun: string | undefined; // the folder the panel shows
  private panelStamp = 0;

  constructor(private readonly log: vscode.LogOutputChannel) {
    this.item = vscode.window.createStatusBarItem("deeplocalize.trainingRun", vscode.StatusBarAlignment.Left, 49);
    this.item.name = "DeepLocalize training run";
    this.item.command = "deeplocalize.showTrainingReport";
  }

  update(run: TrainingRun): void {
    this.runs.set(run.uri, run);
    this.redraw();
    if (this.panel && this.panelRun === run.folder) {
      void this.draw(run);
    }
  }

  /** The run shown: the active editor's, else a live one. */
  current(): TrainingRun | undefined {
    const active = vscode.window.activeTextEditor?.document.uri.toString();
    const mine = active ? this.runs.get(active) : undefined;
    return mine ?? [...this.runs.values()].find((r) => r.live);
  }

  redraw(): void {
    const run = this.current();
    if (!run) {
      this.item.hide();
      return;
    }
    const file = vscode.Uri.parse(run.uri).path.split("/").pop();
    const epoch = run.epochs ? `epoch ${run.epoch ?? 0}/${run.epochs}` : `epoch ${run.epoch ?? 0}`;
    const found = run.serious ? `, ${run.serious} finding${run.serious === 1 ? "" : "s"}` : "";
    const icon = run.live ? "$(pulse)" : run.serious ? "$(warning)" : "$(check)";
    this.item.text = `${icon} ${run.live ? "Training" : `Training run ${run.state}:`} ${file} ${epoch}${found}`;
    this.item.tooltip = `${run.label}. Click to open its training report (${run.folder}).`;
    this.item.show();
  }

  async showReport(): Promise<void> {
    const run = this.current();
    if (!run) {
      void vscode.window.showInformationMessage("DeepLocalize: no training run of this script was found (start one with `deeplocalize run`).");
      return;
    }
    if (!this.panel) {
      this.panel = vscode.window.createWebviewPanel("deeplocalize.trainingRun", "Training run", vscode.ViewColumn.Beside,
        { enableScripts: false, enableFindWidget: true, retainContextWhenHidden: false });
      this.panel.onDidDispose(() => (this.panel = undefined));
    }
    this.panelRun = run.folder;
    this.panelStamp = 0;
    if (!run.report) {
      // Drawn by the run within 30 s of its start, or as soon as it has a finding: shown here then.
      this.panel.title = `Training run: ${vscode.Uri.parse(run.uri).path.split("/").pop()} (${run.live ? "live" : run.state})`;
      this.panel.webview.html = `<!DOCTYPE html><html><body><p>${escapeHtml(run.label)}: the run has not drawn its training report yet. ` +
        "It does within 30 s of its start, or as soon as it has a finding; this panel shows it then.</p></body></html>";
    }
    await this.draw(run);
    this.panel.reveal(undefined, true);
  }

  private async draw(run: TrainingRun): Promise<void> {
    if (!this.panel || !run.report) {
      return;
    }
    try {
      const uri = vscode.Uri.file(run.report);
      const stat = await vscode.workspace.fs.stat(uri);
      if (stat.mtime === this.panelStamp) {
        return;
      }
      this.panelStamp = stat.mtime;
      const html = new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
      this.panel.title = `Training run: ${vscode.Uri.parse(run.uri).path.split("/").pop()} (${run.live ? "live" : run.state})`;
      this.panel.webview.html = html;
    } catch (err) {
      this.log.warn(`The training run's report could not be read: ${err}`);
    }
  }

  dispose(): void {
    this.item.dispose();
    this.panel?.dispose();
  }
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
