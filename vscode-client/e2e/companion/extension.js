// Test-only: every 500 ms, writes what VS Code's API reports about DeepLocalize to
// the file named by DEEPLOCALIZE_E2E_REPORT, so the browser-driven test can assert
// on the editor's own state (diagnostics, code actions, document text).
const fs = require("fs");
const vscode = require("vscode");

async function snapshot() {
  const docs = [];
  for (const doc of vscode.workspace.textDocuments) {
    const cell = doc.uri.scheme === "vscode-notebook-cell" ? notebookCellOf(doc) : null;
    if ((doc.uri.scheme !== "file" && !cell) || doc.languageId !== "python") continue;
    const all = vscode.languages.getDiagnostics(doc.uri);
    const diagnostics = all.filter((d) => d.source === "deeplocalize");
    const training = all.filter((d) => d.source === "training run");
    const entry = {
      path: cell ? cell.notebook.uri.fsPath : doc.uri.fsPath, cell: cell ? cell.index + 1 : null,
      notebookDirty: cell ? cell.notebook.isDirty : null, version: doc.version, dirty: doc.isDirty, text: doc.getText(),
      diagnostics: diagnostics.map((d) => ({
        line: d.range.start.line, character: d.range.start.character, severity: d.severity,
        code: typeof d.code === "object" ? String(d.code.value) : String(d.code), message: d.message,
      })),
      training: training.map((d) => ({ line: d.range.start.line, severity: d.severity, message: d.message,
        code: typeof d.code === "object" ? String(d.code.value) : String(d.code) })),
      actions: [],
    };
    if (diagnostics.length) {
      const actions = await vscode.commands.executeCommand("vscode.executeCodeActionProvider", doc.uri, diagnostics[0].range, vscode.CodeActionKind.QuickFix.value);
      entry.actions = (actions || []).map((a) => ({ title: a.title, preferred: !!a.isPreferred }));
    }
    docs.push(entry);
  }
  return { time: Date.now(), docs };
}

// A notebook cell's text document, as the notebook it belongs to and its place there (0-based).
function notebookCellOf(doc) {
  for (const notebook of vscode.workspace.notebookDocuments) {
    const cell = notebook.getCells().find((c) => c.document.uri.toString() === doc.uri.toString());
    if (cell) return { notebook, index: cell.index };
  }
  return null;
}

function activate(context) {
  const target = process.env.DEEPLOCALIZE_E2E_REPORT;
  const write = async () => {
    if (!target) return;
    try {
      const data = JSON.stringify(await snapshot());
      fs.writeFileSync(target + ".tmp", data);
      fs.renameSync(target + ".tmp", target);
    } catch (err) {
      console.error("deeplocalize-e2e:", err);
    }
  };
  const timer = setInterval(write, 500);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
  context.subscriptions.push(vscode.commands.registerCommand("deeplocalizeE2E.report", write));
}

module.exports = { activate, deactivate() {} };
