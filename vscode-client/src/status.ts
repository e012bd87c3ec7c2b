// The status bar item: what the server is doing for the active script.
import * as vscode from "vscode";

export interface RunStatus {
  uri: string;
  phase: "running" | "verifying" | "done" | "skipped" | "cancelled" | "failed";
  outcome: string;
  file: string;
  status?: string; // done: ok | crashed | timeout | syntax_error
  pid?: number; // running: the training process
  provisional?: string[]; // running: codes already published while training
  reused?: boolean; // done: unchanged since the last run
  stage?: "run" | "verification"; // cancelled, failed
}

export class StatusItem implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;

  constructor() {
    this.item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
    this.item.name = "DeepLocalize";
    this.item.command = "deeplocalize.showLogs";
    this.set("$(beaker) DeepLocalize", "DeepLocalize: starting");
    this.item.show();
  }

  set(text: string, tooltip: string): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
  }

  showRun(p: RunStatus): void {
    if (p.phase === "running") {
      this.set(`$(sync~spin) DeepLocalize: training ${p.file}`, `Training ${p.file}; click for logs. Cancel: 'DeepLocalize: Cancel Analysis'.`);
    } else if (p.phase === "verifying") {
      this.set(`$(beaker~spin) DeepLocalize: verifying fixes of ${p.file}`,
        `Re-training ${p.file} with each fix applied (in memory) to verify it; the first diagnosis is shown meanwhile. Cancel: 'DeepLocalize: Cancel Analysis'.`);
    } else if (p.phase === "done") {
      const icon = p.outcome.startsWith("no faults") ? "$(check)" : "$(warning)";
      this.set(`${icon} DeepLocalize: ${p.outcome}`, `${p.file}: ${p.outcome}`);
    } else if (p.phase === "skipped") {
      this.set("$(circle-slash) DeepLocalize", `${p.file}: ${p.outcome}; nothing to run`);
    } else if (p.phase === "cancelled") {
      this.set("$(circle-slash) DeepLocalize: cancelled", `${p.file}: run cancelled`);
    } else {
      this.set("$(error) DeepLocalize: failed", `${p.file}: ${p.outcome}`);
    }
  }

  dispose(): void {
    this.item.dispose();
  }
}
