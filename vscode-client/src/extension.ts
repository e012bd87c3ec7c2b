// DeepLocalize for VS Code: starts the language server in the right interpreter,
// refuses to run user code in untrusted workspaces, and shows run state.
import * as path from "path";
import { execFile } from "child_process";
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

const SERVER_DEPS = ["pygls", "lsprotocol", "astroid", "psutil", "rich", "numpy"];
const TRAIN_DEPS = ["tensorflow"];
const PIP_NAMES: Record<string, string> = {
  pygls: '"pygls>=2.1,<3"', lsprotocol: "lsprotocol", astroid: "astroid", psutil: "psutil", rich: "rich", numpy: "numpy",
  tensorflow: "tensorflow-cpu",
};

interface Interpreter { path: string; source: string }
interface RunStatus { uri: string; phase: "running" | "verifying" | "done" | "cancelled" | "failed"; outcome: string; file: string }

let client: LanguageClient | undefined;
let log: vscode.LogOutputChannel;
let status: vscode.StatusBarItem;
let context: vscode.ExtensionContext;

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  context = ctx;
  log = vscode.window.createOutputChannel("DeepLocalize", { log: true });
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  status.name = "DeepLocalize";
  status.command = "deeplocalize.showLogs";
  setStatus("$(beaker) DeepLocalize", "DeepLocalize: starting");
  status.show();
  ctx.subscriptions.push(log, status);

  ctx.subscriptions.push(
    vscode.commands.registerCommand("deeplocalize.analyzeFile", () => runOnActive("deeplocalize.analyze")),
    vscode.commands.registerCommand("deeplocalize.cancelFile", () => runOnActive("deeplocalize.cancel")),
    vscode.commands.registerCommand("deeplocalize.showLogs", () => log.show(true)),
    vscode.commands.registerCommand("deeplocalize.restartServer", () => restart("restart requested")),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("deeplocalize.interpreter")) {
        void restart("the deeplocalize.interpreter setting changed");
      }
    }),
  );

  if (!vscode.workspace.isTrusted) {
    setStatus("$(shield) DeepLocalize: off", "DeepLocalize runs your training script to analyze it, so it is off in an untrusted workspace.");
    log.warn("Workspace not trusted: DeepLocalize will not run any user code until the workspace is trusted.");
    void vscode.window
      .showInformationMessage(
        "DeepLocalize analyzes a Keras script by running its training, so it is off in this untrusted workspace. Trust the workspace to enable it.",
        "Manage Workspace Trust",
      )
      .then((choice) => choice && vscode.commands.executeCommand("workbench.trust.manage"));
    ctx.subscriptions.push(vscode.workspace.onDidGrantWorkspaceTrust(() => void start()));
    return;
  }
  await start();
  await watchPythonExtension();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}

function setStatus(text: string, tooltip: string): void {
  status.text = text;
  status.tooltip = tooltip;
}

async function runOnActive(command: string): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== "python") {
    void vscode.window.showWarningMessage("DeepLocalize: open a Python training script first.");
    return;
  }
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

async function pythonExtensionApi(): Promise<any | undefined> {
  const ext = vscode.extensions.getExtension("ms-python.python");
  if (!ext) {
    return undefined;
  }
  try {
    return ext.isActive ? ext.exports : await ext.activate();
  } catch (err) {
    log.warn(`The Python extension could not be activated: ${err}`);
    return undefined;
  }
}

async function resolveInterpreter(): Promise<Interpreter> {
  const configured = vscode.workspace.getConfiguration("deeplocalize").get<string>("interpreter", "").trim();
  const api = await pythonExtensionApi();
  if (api?.environments) {
    try {
      const resource = vscode.window.activeTextEditor?.document.uri ?? vscode.workspace.workspaceFolders?.[0]?.uri;
      const envPath = api.environments.getActiveEnvironmentPath(resource);
      const resolved = await api.environments.resolveEnvironment(envPath);
      const exe: string | undefined = resolved?.executable?.uri?.fsPath ?? envPath?.path;
      if (exe) {
        return { path: exe, source: "the Python extension's selected interpreter" };
      }
    } catch (err) {
      log.warn(`Could not read the Python extension's interpreter: ${err}`);
    }
  }
  if (configured) {
    return { path: configured, source: "the deeplocalize.interpreter setting" };
  }
  return { path: "python3", source: "the default (python3 on PATH): no Python extension and no deeplocalize.interpreter setting" };
}

async function watchPythonExtension(): Promise<void> {
  const api = await pythonExtensionApi();
  const event = api?.environments?.onDidChangeActiveEnvironmentPath;
  if (event) {
    context.subscriptions.push(event(() => void restart("the selected Python interpreter changed")));
  }
}

/** The server's environment: our bundled package on PYTHONPATH, the user's PYTHONPATH kept aside for training. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.ELECTRON_RUN_AS_NODE;
  delete env.NODE_OPTIONS;
  const bundled = path.join(context.extensionPath, "server");
  const user = process.env.PYTHONPATH ?? "";
  env.DEEPLOCALIZE_USER_PYTHONPATH = user;
  env.PYTHONPATH = user ? `${bundled}${path.delimiter}${user}` : bundled;
  env.PYTHONUNBUFFERED = "1";
  return env;
}

function missingModules(python: string, env: NodeJS.ProcessEnv): Promise<{ missing: string[]; version: string } | { error: string }> {
  const code = [
    "import importlib.util, json, sys",
    `mods = ${JSON.stringify(["deeplocalize", ...SERVER_DEPS, ...TRAIN_DEPS])}`,
    "print(json.dumps({'version': sys.version.split()[0], 'missing': [m for m in mods if importlib.util.find_spec(m) is None]}))",
  ].join("\n");
  return new Promise((resolve) => {
    execFile(python, ["-c", code], { env, timeout: 30000 }, (err, stdout, stderr) => {
      if (err) {
        resolve({ error: (err as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : `${err.message} ${stderr}`.trim() });
        return;
      }
      try {
        resolve(JSON.parse(stdout.trim().split("\n").pop() ?? "{}"));
      } catch {
        resolve({ error: `unexpected output: ${stdout}` });
      }
    });
  });
}

async function explainInterpreterProblem(interp: Interpreter, message: string, missing: string[]): Promise<void> {
  const install = `"${interp.path}" -m pip install ${missing.map((m) => PIP_NAMES[m] ?? m).join(" ")}`;
  log.error(`${message} Install with: ${install}`);
  const hasPython = !!vscode.extensions.getExtension("ms-python.python");
  const actions = [hasPython ? "Select Interpreter" : "Set Interpreter", ...(missing.length ? ["Copy Install Command"] : []), "Show Logs"];
  const choice = await vscode.window.showErrorMessage(`DeepLocalize: ${message}`, ...actions);
  if (choice === "Select Interpreter") {
    await vscode.commands.executeCommand("python.setInterpreter");
  } else if (choice === "Set Interpreter") {
    await vscode.commands.executeCommand("workbench.action.openSettings", "deeplocalize.interpreter");
  } else if (choice === "Copy Install Command") {
    await vscode.env.clipboard.writeText(install);
    void vscode.window.showInformationMessage(`Copied: ${install}`);
  } else if (choice === "Show Logs") {
    log.show(true);
  }
}

async function start(): Promise<void> {
  const interp = await resolveInterpreter();
  log.info(`Using interpreter ${interp.path} (${interp.source}).`);
  const env = serverEnv();
  const check = await missingModules(interp.path, env);
  if ("error" in check) {
    setStatus("$(error) DeepLocalize", `Cannot run ${interp.path}`);
    await explainInterpreterProblem(interp, `cannot run the interpreter ${interp.path} (${interp.source}): ${check.error}.`, []);
    return;
  }
  const serverMissing = check.missing.filter((m) => m !== "tensorflow");
  if (serverMissing.length) {
    setStatus("$(error) DeepLocalize", `Missing in ${interp.path}: ${check.missing.join(", ")}`);
    await explainInterpreterProblem(interp, `the interpreter ${interp.path} (Python ${check.version}) lacks ${check.missing.join(", ")}.`, check.missing);
    return;
  }
  if (check.missing.includes("tensorflow")) {
    void explainInterpreterProblem(interp, `the interpreter ${interp.path} has no TensorFlow, so training scripts cannot be analyzed.`, ["tensorflow"]);
  }

  const serverOptions: ServerOptions = {
    command: interp.path,
    args: ["-m", "deeplocalize.server"],
    options: { env, cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file", language: "python" }],
    outputChannel: log,
    traceOutputChannel: log,
    synchronize: { configurationSection: "deeplocalize" },
    initializationOptions: { interpreter: interp.path, workspaceTrusted: vscode.workspace.isTrusted },
  };
  client = new LanguageClient("deeplocalize", "DeepLocalize", serverOptions, clientOptions);
  client.onDidChangeState((e: { newState: State }) => {
    if (e.newState === State.Stopped) {
      setStatus("$(debug-disconnect) DeepLocalize: stopped", "The DeepLocalize server stopped; run 'DeepLocalize: Restart Server'.");
    }
  });
  try {
    await client.start();
  } catch (err) {
    setStatus("$(error) DeepLocalize", "The server failed to start");
    log.error(`The server failed to start: ${err}`);
    void vscode.window.showErrorMessage("DeepLocalize: the server failed to start; see its logs.", "Show Logs").then((c) => c && log.show(true));
    return;
  }
  client.onNotification("deeplocalize/runStatus", (p: RunStatus) => {
    if (p.phase === "running") {
      setStatus(`$(sync~spin) DeepLocalize: training ${p.file}`, `Training ${p.file}; click for logs. Cancel: 'DeepLocalize: Cancel Analysis'.`);
    } else if (p.phase === "verifying") {
      setStatus(`$(beaker~spin) DeepLocalize: verifying fixes of ${p.file}`,
        `Re-training ${p.file} with each fix applied (in memory) to verify it; the first diagnosis is shown meanwhile. Cancel: 'DeepLocalize: Cancel Analysis'.`);
    } else if (p.phase === "done") {
      const icon = p.outcome.startsWith("no faults") ? "$(check)" : "$(warning)";
      setStatus(`${icon} DeepLocalize: ${p.outcome}`, `${p.file}: ${p.outcome}`);
    } else if (p.phase === "cancelled") {
      setStatus("$(circle-slash) DeepLocalize: cancelled", `${p.file}: run cancelled`);
    } else {
      setStatus("$(error) DeepLocalize: failed", `${p.file}: ${p.outcome}`);
    }
  });
  setStatus("$(beaker) DeepLocalize", `Ready (interpreter: ${interp.path})`);
}

async function restart(reason: string): Promise<void> {
  log.info(`Restarting the server: ${reason}.`);
  const old = client;
  client = undefined;
  if (old) {
    try {
      await old.stop();
    } catch (err) {
      log.warn(`Stopping the old server: ${err}`);
    }
  }
  if (vscode.workspace.isTrusted) {
    await start();
  }
}
