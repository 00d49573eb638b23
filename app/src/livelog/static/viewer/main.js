// The viewer: the run list, one run's log, and the Socket.IO connection (the official client, vendored from npm).
//
// The URL's fragment says what is open: #run=<id>&line=<seq>&token=<viewer token>. The token is kept for this
// tab's session (sessionStorage) and removed from the address bar at once, so a copied link never carries it.
import {io} from "./socket.io.esm.min.js";
import {Api, Unauthorized} from "./api.js";
import {LogView} from "./logview.js";
import {RunStream} from "./stream.js";

const RUNS_EVERY_MS = 3000;  // the run list is polled: simple, and it works through any proxy
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;  // models.RUN_ID_PATTERN: the API answers 422 to any other
const $ = (id) => document.getElementById(id);
const el = {
  connection: $("connection"), ask: $("ask"), tokenInput: $("token-input"), runs: $("runs"), runsEmpty: $("runs-empty"),
  run: $("run"), title: $("run-title"), meta: $("run-meta"), follow: $("follow"), top: $("top"), bottom: $("bottom"),
  search: $("search"), matches: $("matches"), prev: $("prev"), next: $("next"), filter: $("filter"), level: $("level"),
  relative: $("relative"), wrap: $("wrap"), download: $("download"), notice: $("notice"), log: $("log"),
  space: $("log-space"), rows: $("log-rows"), newLines: $("new-lines"),
};

function fragment() {
  return new URLSearchParams(location.hash.slice(1));
}

function takeToken() {
  const params = fragment();
  if (params.has("token")) {
    sessionStorage.setItem("livelog-token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem("livelog-token");
}

let api = new Api(takeToken());
let runs = [];
let open = null;  // {runId, run, view, stream}
let runsTimer = 0;

function status(text) {
  el.connection.textContent = text;
}

function notice(text) {
  el.notice.textContent = text;
}

function askForToken(reason) {
  status(reason);
  el.ask.hidden = false;
  el.tokenInput.focus();
}

// -- the connection ------------------------------------------------------------------------------------------------

const socket = io({
  auth: (send) => send({token: api.token}),
  transports: ["websocket", "polling"],  // WebSocket first; long-polling where a proxy refuses it
  tryAllTransports: true,
});

function showTransport() {
  const engine = socket.io.engine;
  el.connection.dataset.transport = engine && engine.transport ? engine.transport.name : "";
}

socket.on("connect", () => {
  showTransport();
  socket.io.engine.on("upgrade", showTransport);
  status("live");
  if (open) open.stream.connected();
});
socket.on("disconnect", (reason) => {
  if (open) open.stream.disconnected();
  status("reconnecting…");
  if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);  // e.g. the token expired
});
socket.on("connect_error", (error) => {
  if (!socket.active) {
    sessionStorage.removeItem("livelog-token");
    askForToken(`refused: ${error.message}`);
  } else {
    status("reconnecting…");
  }
});
socket.io.on("reconnect_attempt", (attempt) => status(`reconnecting… (attempt ${attempt})`));
socket.on("logs", (lines) => {
  if (open) open.stream.received(lines);
});

// -- the run list --------------------------------------------------------------------------------------------------

function duration(run) {
  const seconds = Math.max(0, (run.finished || Date.now() / 1000) - run.created);
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function started(run) {
  return new Date(run.created * 1000).toLocaleString();
}

function drawRuns() {
  el.runsEmpty.hidden = runs.length > 0;
  const items = runs.map((run) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#run=${encodeURIComponent(run.run_id)}`;
    link.className = `run ${run.status}`;
    if (open && open.runId === run.run_id) link.setAttribute("aria-current", "page");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${run.workflow} · ${run.run_id}`;
    const state = document.createElement("span");
    state.className = "status";
    state.textContent = run.status;
    const facts = document.createElement("span");
    facts.className = "facts";
    facts.textContent = `${started(run)} · ${duration(run)} · ${run.lines} lines`;
    link.append(name, state, facts);
    item.append(link);
    return item;
  });
  el.runs.replaceChildren(...items);
}

async function refreshRuns() {
  clearTimeout(runsTimer);
  try {
    runs = await api.runs();
    drawRuns();
    if (open) {
      const run = runs.find((candidate) => candidate.run_id === open.runId);
      if (run) describe(run);
      if (run && run.status !== "running") open.stream.ended(run.lines);
    }
  } catch (error) {
    if (error instanceof Unauthorized) {
      askForToken("the viewer token was refused or has expired");
      return;
    }
    status(`run list: ${error.message}`);
  }
  runsTimer = setTimeout(refreshRuns, RUNS_EVERY_MS);
}

// -- one run -------------------------------------------------------------------------------------------------------

function describe(run) {
  open.run = run;
  el.meta.textContent = `${run.workflow} · ${run.status} · started ${started(run)} · ${duration(run)}`
    + (run.error ? ` · ${run.error}` : "");
}

function showMatches(current, total) {
  el.matches.textContent = el.search.value.trim() ? `${total ? current + 1 : 0} of ${total}` : "";
}

function showNewLines(count) {
  el.newLines.hidden = count === 0;
  el.newLines.textContent = `${count} new line${count === 1 ? "" : "s"} ↓`;
}

async function openRun(runId, line) {
  if (open && open.runId === runId) {
    if (line) open.view.goToSeq(line);
    return;
  }
  if (open) {
    open.stream.close();
    open.view.destroy();
  }
  el.run.hidden = false;
  el.title.textContent = runId;
  el.meta.textContent = "";
  notice("");
  el.rows.replaceChildren();
  delete el.log.dataset.loaded;
  const view = new LogView({
    scroller: el.log, space: el.space, rows: el.rows, runId, started: 0,
    onFollow: (follow) => el.follow.setAttribute("aria-pressed", String(follow)),
    onNewLines: showNewLines, onMatches: showMatches,
  });
  const stream = new RunStream({
    api, socket, runId,
    onLines: (lines) => view.add(lines),
    onNotice: notice,
    onTrimmed: (count) => notice(`Lines 1–${count} of this run were removed by retention; the log starts at line ${count + 1}.`),
    onResumed: (count) => status(`resumed, +${count} line${count === 1 ? "" : "s"}`),
  });
  open = {runId, run: null, view, stream};
  showNewLines(0);
  view.setFollow(!line);
  view.search(el.search.value, el.filter.checked);
  view.setFloor(el.level.value);
  view.setRelative(el.relative.getAttribute("aria-pressed") === "true");
  view.setWrap(el.wrap.getAttribute("aria-pressed") === "true");
  drawRuns();
  try {
    const run = await api.run(runId);
    if (!open || open.stream !== stream) return;
    view.started = run.created;
    describe(run);
  } catch (error) {
    notice(error instanceof Unauthorized ? "the viewer token was refused" : `run ${runId}: ${error.message}`);
    return;
  }
  await stream.open();
  if (!open || open.stream !== stream) return;
  await new Promise((done) => requestAnimationFrame(done));
  performance.mark("livelog:run-loaded");
  el.log.dataset.loaded = "true";
  if (line && !view.goToSeq(line)) notice(`line ${line} is not in this run's stored log`);
}

function route() {
  const params = fragment();
  if (params.has("token")) {  // a token pasted into the address bar of an open page
    api = new Api(takeToken());
    if (open) open.stream.api = api;  // the open run reads with the new token too
    socket.disconnect().connect();
  }
  const runId = params.get("run");
  const line = Number(params.get("line")) || 0;
  if (runId && !RUN_ID.test(runId)) notice(`"${runId}" is not a run id (letters, digits, _.:-)`);
  else if (runId) openRun(runId, line);
}

// -- controls ------------------------------------------------------------------------------------------------------

function toggle(button) {
  const on = button.getAttribute("aria-pressed") !== "true";
  button.setAttribute("aria-pressed", String(on));
  return on;
}

let searchTimer = 0;
function searchSoon() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    if (open) {
      open.view.search(el.search.value, el.filter.checked);
      if (el.search.value.trim()) open.view.step(1);
    }
  }, 150);
}

el.follow.addEventListener("click", () => open && open.view.setFollow(!open.view.follow));
el.top.addEventListener("click", () => open && open.view.top());
el.bottom.addEventListener("click", () => open && open.view.setFollow(true));
el.newLines.addEventListener("click", () => open && open.view.setFollow(true));
el.search.addEventListener("input", searchSoon);
el.search.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && open) {
    event.preventDefault();
    open.view.step(event.shiftKey ? -1 : 1);
  }
});
el.filter.addEventListener("change", () => open && open.view.search(el.search.value, el.filter.checked));
el.prev.addEventListener("click", () => open && open.view.step(-1));
el.next.addEventListener("click", () => open && open.view.step(1));
el.level.addEventListener("change", () => open && open.view.setFloor(el.level.value));
el.relative.addEventListener("click", () => {
  const on = toggle(el.relative);
  if (open) open.view.setRelative(on);
});
el.wrap.addEventListener("click", () => {
  const on = toggle(el.wrap);
  if (open) open.view.setWrap(on);
});
el.download.addEventListener("click", async () => {
  if (!open) return;
  try {
    await api.download(open.runId);
  } catch (error) {
    notice(`download: ${error.message}`);
  }
});
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, select, textarea");
  if (event.key === "/" && !typing) {
    event.preventDefault();
    el.search.focus();
    el.search.select();
  } else if (event.key === "End" && !typing && open) {
    event.preventDefault();
    open.view.setFollow(true);
  } else if (event.key === "Escape" && event.target === el.search) {
    el.search.value = "";
    searchSoon();
  }
});
el.ask.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = el.tokenInput.value.trim();
  if (!token) return;
  sessionStorage.setItem("livelog-token", token);
  el.tokenInput.value = "";
  el.ask.hidden = true;
  api = new Api(token);
  if (open) open.stream.api = api;
  status("connecting…");
  socket.connect();
  refreshRuns();
  if (open) {
    const runId = open.runId;
    open.stream.close();
    open.view.destroy();
    open = null;
    openRun(runId, 0);
  }
});
window.addEventListener("hashchange", route);

// the page's state, read-only, for the console and the browser tests
window.livelog = {
  state: () => ({
    run: open ? open.runId : null,
    lines: open ? open.view.lines.length : 0,
    shown: open ? open.view.count : 0,
    last: open ? open.stream.last : 0,
    follow: open ? open.view.follow : null,
    rows: el.rows.children.length,
  }),
  seqs: () => (open ? open.view.lines.map((line) => line.seq) : []),
};

refreshRuns();
route();
