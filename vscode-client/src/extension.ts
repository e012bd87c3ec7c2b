// DeepLocalize for VS Code: starts the language server in the right interpreter (python.ts),
// refuses to run user code in untrusted workspaces, and shows run state (status.ts).
import * as vscode from "vscode";
import { ExecuteCommandRequest, State } from "vscode-languageclient/node";
import { watchSelectedInterpreter } from "./python";
import { ReportPanels } from "./report";
import { Server } from "./server";
import { affectsInterpreter } from "./settings";
import { StatusItem } from "./status";
import { TrainingRuns } from "./training";

let server: Server | undefined;
let log: vscode.LogOutputChannel;

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  log = vscode.window.createOutputChannel("DeepLocalize", { log: true });
  const status = new StatusItem();
  ctx.subscriptions.push(log, status);
  const reports = new ReportPanels(() => server?.client, log);
  const training = new TrainingRuns(log);
  ctx.subscriptions.push(training, vscode.window.onDidChangeActiveTextEditor(() => training.redraw()));
  const srv = new Server(ctx, log, status, (p) => {
    if (p.phase === "done" && !p.reused) {
      void reports.refresh(p.uri);
    }
  }, (p) => training.update(p));
  server = srv;

  ctx.subscriptions.push(
    vscode.commands.registerCommand("deeplocalize.analyzeFile", () => runOnActive("deeplocalize.analyze")),
    vscode.commands.registerCommand("deeplocalize.cancelFile", () => runOnActive("deeplocalize.cancel")),
    vscode.commands.registerCommand("deeplocalize.showLogs", () => log.show(true)),
    vscode.commands.registerCommand("deeplocalize.showReport", (uri?: string) => showReport(reports, uri)),
    vscode.commands.registerCommand("deeplocalize.showTrainingReport", () => training.showReport()),
    reports,
    vscode.commands.registerCommand("deeplocalize.restartServer", () => srv.restart("restart requested")),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (affectsInterpreter(e)) {
        void srv.restart("the deeplocalize.interpreter setting changed");
      }
    }),
  );

  if (!vscode.workspace.isTrusted) {
    status.set("$(shield) DeepLocalize: off", "DeepLocalize runs your training script to analyze it, so it is off in an untrusted workspace.");
    log.warn("Workspace not trusted: DeepLocalize will not run any user code until the workspace is trusted.");
    void vscode.window
      .showInformationMessage(
        "DeepLocalize analyzes a Keras script by running its training, so it is off in this untrusted workspace. Trust the workspace to enable it.",
        "Manage Workspace Trust",
      )
      .then((choice) => choice && vscode.commands.executeCommand("workbench.trust.manage"));
    ctx.subscriptions.push(vscode.workspace.onDidGrantWorkspaceTrust(() => void srv.restart("the workspace was trusted")));
    return;
  }
  await srv.restart("activation");
  const watcher = await watchSelectedInterpreter(log, () => void srv.restart("the selected Python interpreter changed"));
  if (watcher) {
    ctx.subscriptions.push(watcher);
  }
}

export async function deactivate(): Promise<void> {
  await server?.stop();
}

async function showReport(reports: ReportPanels, uri?: string): Promise<void> {
  // From the code lens: the document's URI; from the palette: the active editor's (a notebook cell stands for its notebook).
  const target = uri ?? vscode.window.activeNotebookEditor?.notebook.uri.toString() ?? vscode.window.activeTextEditor?.document.uri.toString();
  if (!target) {
    void vscode.window.showWarningMessage("DeepLocalize: open an analyzed training script or notebook first.");
    return;
  }
  await reports.show(target);
}

async function runOnActive(command: string): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== "python") {
    void vscode.window.showWarningMessage("DeepLocalize: open a Python training script first.");
    return;
  }
  const client = server?.client;
  if (!client || client.state !== State.Running) {
    void vscode.window.showWarningMessage("DeepLocalize: the server is not running; see its logs.", "Show Logs").then(
      (c) => c && log.show(true),
    );
    return;
  }
  if (command === "deeplocalize.analyze" && editor.document.isDirty) {
    await editor.document.save(); // the analysis trains the file as saved on disk
  }
  await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [editor.document.uri.toString()] });
}
