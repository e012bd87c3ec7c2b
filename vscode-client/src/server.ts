// The language server's lifecycle: check the interpreter, start, and restart one at a time.
import * as fs from "fs";
import * as path from "path";
import { execFile } from "child_process";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from "vscode-languageclient/node";
import { Interpreter, resolveInterpreter } from "./python";
import { RunStatus, StatusItem } from "./status";
import { TrainingRun } from "./training";

// What the training needs beyond the server (what to install for it) and, for each module needed by one
// feature only, what is lost without it: the server starts anyway and says so once.
const TRAIN_DEPS: Record<string, string> = { tensorflow: "tensorflow-cpu" };
const OPTIONAL: Record<string, string> = {
  tensorflow: "so training scripts cannot be analyzed",
  matplotlib: "so the training report cannot be drawn",
};

/** The server's Python dependencies, import name -> pip requirement, read from the one list the
 *  package itself is built from (pyproject.toml reads the same file). */
function serverDependencies(extensionPath: string): Record<string, string> {
  const deps: Record<string, string> = {};
  const file = path.join(extensionPath, "server", "deeplocalize", "requirements.txt");
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.split("#")[0].trim();
    const name = /^[A-Za-z0-9_.-]+/.exec(line)?.[0];
    if (name) deps[name.toLowerCase().replace(/-/g, "_")] = /[<>=!~,]/.test(line) ? `"${line}"` : line;
  }
  return deps;
}

export class Server {
  client: LanguageClient | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly log: vscode.LogOutputChannel,
    private readonly status: StatusItem,
    private readonly onRun: (p: RunStatus) => void = () => {},
    private readonly onTrainingRun: (p: TrainingRun) => void = () => {},
  ) {}

  /** Start or restart; calls are serialized, so two quick restarts never run two servers. */
  restart(reason: string): Promise<void> {
    this.queue = this.queue.then(() => this.doRestart(reason)).catch((err) => this.log.error(`Restart failed: ${err}`));
    return this.queue;
  }

  async stop(): Promise<void> {
    const old = this.client;
    this.client = undefined;
    if (old) {
      try {
        await old.stop();
      } catch (err) {
        this.log.warn(`Stopping the server: ${err}`);
      }
    }
  }

  private async doRestart(reason: string): Promise<void> {
    if (this.client) {
      this.log.info(`Restarting the server: ${reason}.`);
    }
    await this.stop();
    if (vscode.workspace.isTrusted) {
      await this.start();
    }
  }

  private async start(): Promise<void> {
    const interp = await resolveInterpreter(this.log);
    this.log.info(`Using interpreter ${interp.path} (${interp.source}).`);
    const env = this.serverEnv();
    if (!(await this.checkInterpreter(interp, env))) {
      return;
    }
    const serverOptions: ServerOptions = {
      command: interp.path,
      args: ["-m", "deeplocalize.server"],
      options: { env, cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath },
    };
    const clientOptions: LanguageClientOptions = {
      // Python files, and the Python cells of Jupyter notebooks (synced as notebooks: the server analyzes the saved .ipynb).
      documentSelector: [{ scheme: "file", language: "python" }, { notebook: "jupyter-notebook", language: "python" }],
      outputChannel: this.log,
      traceOutputChannel: this.log,
      synchronize: { configurationSection: "deeplocalize" },
      // The server trains in the same interpreter unless the setting says otherwise.
      // showReport: this client has the report panel, so the server may offer its code lens.
      initializationOptions: { interpreter: interp.path, workspaceTrusted: vscode.workspace.isTrusted, showReport: true },
    };
    const client = new LanguageClient("deeplocalize", "DeepLocalize", serverOptions, clientOptions);
    client.onDidChangeState((e: { newState: State }) => {
      if (e.newState === State.Stopped && this.client === client) {
        this.status.set("$(debug-disconnect) DeepLocalize: stopped", "The DeepLocalize server stopped; run 'DeepLocalize: Restart Server'.");
      }
    });
    try {
      await client.start();
    } catch (err) {
      this.status.set("$(error) DeepLocalize", "The server failed to start");
      this.log.error(`The server failed to start: ${err}`);
      void vscode.window.showErrorMessage("DeepLocalize: the server failed to start; see its logs.", "Show Logs").then((c) => c && this.log.show(true));
      return;
    }
    this.client = client;
    client.onNotification("deeplocalize/runStatus", (p: RunStatus) => {
      this.status.showRun(p);
      this.onRun(p);
    });
    client.onNotification("deeplocalize/trainingRun", (p: TrainingRun) => this.onTrainingRun(p));
    this.status.set("$(beaker) DeepLocalize", `Ready (interpreter: ${interp.path})`);
  }

  /** The server's environment: our bundled package on PYTHONPATH, the user's PYTHONPATH kept aside for training. */
  private serverEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.ELECTRON_RUN_AS_NODE;
    delete env.NODE_OPTIONS;
    const bundled = path.join(this.context.extensionPath, "server");
    const user = process.env.PYTHONPATH ?? "";
    env.DEEPLOCALIZE_USER_PYTHONPATH = user;
    env.PYTHONPATH = user ? `${bundled}${path.delimiter}${user}` : bundled;
    env.PYTHONUNBUFFERED = "1";
    return env;
  }

  /** False (with one notification that helps) when the interpreter cannot run the server. */
  private async checkInterpreter(interp: Interpreter, env: NodeJS.ProcessEnv): Promise<boolean> {
    const deps = { ...serverDependencies(this.context.extensionPath), ...TRAIN_DEPS };
    const check = await missingModules(interp.path, env, Object.keys(deps));
    if ("error" in check) {
      this.status.set("$(error) DeepLocalize", `Cannot run ${interp.path}`);
      await this.explain(interp, `cannot run the interpreter ${interp.path} (${interp.source}): ${check.error}.`, []);
      return false;
    }
    const install = (missing: string[]) => missing.map((m) => deps[m] ?? m);
    if (check.missing.some((m) => !(m in OPTIONAL))) {
      this.status.set("$(error) DeepLocalize", `Missing in ${interp.path}: ${check.missing.join(", ")}`);
      await this.explain(interp, `the interpreter ${interp.path} (Python ${check.version}) lacks ${check.missing.join(", ")}.`, install(check.missing));
      return false;
    }
    if (check.missing.length) {
      const lost = check.missing.map((m) => `${m}, ${OPTIONAL[m]}`).join("; ");
      void this.explain(interp, `the interpreter ${interp.path} has no ${lost}.`, install(check.missing));
    }
    return true;
  }

  private async explain(interp: Interpreter, message: string, missing: string[]): Promise<void> {
    const install = `"${interp.path}" -m pip install ${missing.join(" ")}`;
    this.log.error(`${message} Install with: ${install}`);
    // Offer the control that changes this interpreter: the setting when it came from there.
    const viaPython = interp.origin === "python-extension" || (interp.origin === "default" && !!vscode.extensions.getExtension("ms-python.python"));
    const actions = [viaPython ? "Select Interpreter" : "Set Interpreter", ...(missing.length ? ["Copy Install Command"] : []), "Show Logs"];
    const choice = await vscode.window.showErrorMessage(`DeepLocalize: ${message}`, ...actions);
    if (choice === "Select Interpreter") {
      await vscode.commands.executeCommand("python.setInterpreter");
    } else if (choice === "Set Interpreter") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "deeplocalize.interpreter");
    } else if (choice === "Copy Install Command") {
      await vscode.env.clipboard.writeText(install);
      void vscode.window.showInformationMessage(`Copied: ${install}`);
    } else if (choice === "Show Logs") {
      this.log.show(true);
    }
  }
}

function missingModules(python: string, env: NodeJS.ProcessEnv, modules: string[]): Promise<{ missing: string[]; version: string } | { error: string }> {
  const code = [
    "import importlib.util, json, sys",
    `mods = ${JSON.stringify(["deeplocalize", ...modules])}`,
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
