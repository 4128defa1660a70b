// tunelab dashboard: the studies list, a study page and a trial page, read from /api/...
//
// Every value the server sends (study names, parameters, errors) goes on the page as text, with
// createElement and text nodes only: nothing from a study is ever parsed as markup.
"use strict";

const POLL_MS = 2000;
const STUDIES_POLL_MS = 5000;
const STATES = ["WAITING", "RUNNING", "PAUSED", "COMPLETE", "PRUNED", "FAILED"];
const FIGURE_TITLES = {
  history: "Optimization history",
  curves: "Learning curves",
  parallel: "Parallel coordinates",
  slice: "Slice",
  contour: "Contour",
  importance: "Parameter importance",
  intermediate: "Intermediate values",
};

// plotly.js (4.8 MB) takes a moment to run, and nothing else runs meanwhile: it is loaded when the
// first figure is drawn, after the table, so the table is never held up by it.
let plotlyLoading = null;
function loadPlotly() {
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = el("script", { src: "/static/plotly.min.js" });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error("plotly.js did not load")));
      document.head.append(script);
    });
  }
  return plotlyLoading;
}

// ---------------------------------------------------------------------------------- helpers ---

/** An element with properties and children; strings become text nodes, never markup. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const byId = (id) => document.getElementById(id);

/** GET a JSON endpoint; a failure throws an Error with the server's message. */
async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    for (const item of [].concat(value)) {
      if (item !== null && item !== undefined && item !== "") url.searchParams.append(key, item);
    }
  }
  const response = await fetch(url, { cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // a 403 from the token check is plain text
  }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

const studyUrl = (name) => "/studies/" + encodeURIComponent(name);
const trialUrl = (name, number) => studyUrl(name) + "/trials/" + number;

/** The study name (and trial number) of this page, from its own address. */
function pathParts() {
  const match = location.pathname.match(/^\/studies\/([^/]+)(?:\/trials\/(\d+))?\/?$/);
  if (!match) return null;
  return { name: decodeURIComponent(match[1]), number: match[2] === undefined ? null : Number(match[2]) };
}

function fmtNumber(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

function fmtValue(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return fmtNumber(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function fmtParams(params) {
  return Object.entries(params || {}).map(([key, value]) => `${key}=${fmtValue(value)}`).join(", ");
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function fmtTime(epochSeconds) {
  return epochSeconds === null || epochSeconds === undefined ? "–" : new Date(epochSeconds * 1000).toLocaleString();
}

function fmtCounts(counts) {
  const parts = STATES.filter((state) => counts[state]).map((state) => `${state.toLowerCase()} ${counts[state]}`);
  return parts.join(" · ") || "no trials";
}

function stateBadge(state) {
  return el("span", { className: `state state-${state}` }, state.toLowerCase());
}

function showError(message) {
  const status = byId("status");
  status.textContent = message;
  status.classList.add("failed");
}

/**
 * Ask the server for the study's revision every POLL_MS and call ``refresh`` when ``isShown(poll)``
 * says the page shows another one (it compares with what it rendered, so a change between the
 * page's first read and the first poll is not missed). One refresh at a time.
 */
function pollStudy(name, isShown, refresh) {
  let busy = false;
  setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      if (!isShown(await api("/api/study/revision", { name }))) await refresh();
    } catch (_) {
      // the server may be restarting: try again at the next tick
    } finally {
      busy = false;
    }
  }, POLL_MS);
}

// ---------------------------------------------------------------------------------- figures ---

function figureBox(kind) {
  const plot = el("div", { className: "plot placeholder" }, "Loading…");
  const box = el("figure", { className: "figure-box" }, el("figcaption", {}, FIGURE_TITLES[kind] || kind), plot);
  box.dataset.kind = kind;
  return { box, plot, kind, visible: false, drawn: false, stale: true };
}

/**
 * Figures drawn after the table, those in view first, one at a time so clicks and scrolling get
 * through between them (their data is fetched together). ``refresh()`` redraws those in view at
 * once and the others when they come into view, so a running big study costs the server only
 * the figures someone is looking at.
 */
function lazyFigures(container, kinds, params) {
  const figures = kinds.map(figureBox);
  container.replaceChildren(...figures.map((figure) => figure.box));
  let queue = Promise.resolve();
  const drawStale = async () => {
    const due = figures.filter((figure) => figure.stale && (figure.visible || !figure.drawn));
    due.sort((a, b) => b.visible - a.visible);
    const data = due.map((figure) => {
      figure.stale = false;
      return api("/api/study/figure", { ...params, kind: figure.kind }).catch((error) => error);
    });
    for (const [index, figure] of due.entries()) {
      await drawFigure(figure, await data[index]);
      figure.drawn = true;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  };
  const schedule = () => (queue = queue.then(drawStale));
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) figures.find((figure) => figure.box === entry.target).visible = entry.isIntersecting;
    schedule();
  }, { rootMargin: "200px" });
  for (const figure of figures) observer.observe(figure.box);
  schedule();
  return {
    refresh() {
      for (const figure of figures) figure.stale = true;
      return schedule();
    },
  };
}

/** Draw Plotly JSON in the figure's box, or the reason it could not be made (an Error). */
async function drawFigure(figure, fig) {
  const plot = figure.plot;
  try {
    if (fig instanceof Error) throw fig;
    await loadPlotly();
    if (plot.classList.contains("placeholder") || plot.classList.contains("figure-error")) plot.textContent = "";
    plot.classList.remove("placeholder", "figure-error");
    await Plotly.react(plot, fig.data, fig.layout, { responsive: true, displaylogo: false });
  } catch (error) {
    if (window.Plotly) Plotly.purge(plot);
    plot.classList.remove("placeholder");
    plot.classList.add("figure-error");
    plot.textContent = error.message;
  }
}

// ----------------------------------------------------------------------------- studies page ---

async function studiesPage() {
  const render = async () => {
    const { studies } = await api("/api/studies");
    document.querySelector("#studies tbody").replaceChildren(...studies.map(studyRow));
    byId("studies").hidden = studies.length === 0;
    byId("status").textContent = studies.length
      ? `${studies.length} ${studies.length === 1 ? "study" : "studies"}`
      : "No studies in this storage yet.";
  };
  await render();
  setInterval(() => render().catch(() => {}), STUDIES_POLL_MS);
}

function studyRow(study) {
  const best = study.best;
  return el(
    "tr",
    {},
    el("td", {}, el("a", { href: studyUrl(study.name) }, study.name)),
    el("td", {}, study.direction),
    el("td", {}, study.metric),
    el("td", { className: "num" }, study.n_trials),
    el("td", {}, fmtCounts(study.counts)),
    el("td", { className: "num" }, best ? fmtNumber(best.value) : "–"),
    el("td", { className: "num" }, best ? el("a", { href: trialUrl(study.name, best.number) }, `#${best.number}`) : "–"),
  );
}

// ------------------------------------------------------------------------------- study page ---

async function studyPage() {
  const { name } = pathParts();
  document.title = `${name} · tunelab`;
  byId("title").textContent = name;
  const table = { sort: "number", order: "asc", states: new Set(), q: "", offset: 0, limit: 25, seq: 0 };
  let summary = await api("/api/study", { name });
  renderSummary(summary);
  buildFilters(table, () => loadTable(name, table, summary));
  await loadTable(name, table, summary);
  byId("status").textContent = "";
  const figures = lazyFigures(byId("figures"), summary.figures, { name });
  const isShown = (poll) => poll.revision === summary.revision && poll.has_result === (summary.result !== null);
  pollStudy(name, isShown, async () => {
    summary = await api("/api/study", { name });
    renderSummary(summary);
    await loadTable(name, table, summary);
    await figures.refresh();
  });
}

function renderSummary(summary) {
  const best = summary.best;
  const lines = [
    el("p", {}, `${summary.direction === "maximize" ? "Maximizes" : "Minimizes"} `, el("b", {}, summary.metric),
      ` · ${summary.n_trials} trials: ${fmtCounts(summary.counts)}`),
    best
      ? el("p", {}, "Best: ", el("a", { href: trialUrl(summary.name, best.number) }, `trial #${best.number}`),
          ` with ${summary.metric} = ${fmtNumber(best.value)}`,
          summary.validated_on ? ` (${summary.validated_on})` : "", el("br"), el("span", { className: "params" }, fmtParams(best.params)))
      : el("p", {}, "No trial has completed yet."),
  ];
  if (summary.lr_range) lines.push(el("p", { className: "lr-range" }, summary.lr_range));
  const result = summary.result;
  if (result) {
    const metrics = Object.entries(result.test_metrics || {}).map(([key, value]) => `${key} = ${fmtNumber(value)}`);
    const about = [
      result.trial === null || result.trial === undefined ? null : `trial #${result.trial}`,
      result.retrained_on ? `retrained on ${result.retrained_on}` : null,
    ].filter(Boolean).join(", ");
    lines.push(el("p", { className: "result" }, `Final test result${about ? ` (${about})` : ""}: ${metrics.join(", ") || "–"}`));
  }
  byId("summary").replaceChildren(...lines);
}

function buildFilters(table, reload) {
  const box = byId("states");
  for (const state of STATES) {
    const input = el("input", { type: "checkbox", value: state });
    input.addEventListener("change", () => {
      if (input.checked) table.states.add(state);
      else table.states.delete(state);
      table.offset = 0;
      reload();
    });
    box.append(el("label", { className: "check" }, input, state.toLowerCase()));
  }
  let typing = null;
  byId("q").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      table.q = event.target.value;
      table.offset = 0;
      reload();
    }, 250);
  });
  byId("limit").addEventListener("change", (event) => {
    table.limit = Number(event.target.value);
    table.offset = 0;
    reload();
  });
  byId("prev").addEventListener("click", () => {
    table.offset = Math.max(0, table.offset - table.limit);
    reload();
  });
  byId("next").addEventListener("click", () => {
    table.offset += table.limit;
    reload();
  });
}

/** Fetch and show the table's current page; an answer to an older request is dropped. */
async function loadTable(name, table, summary) {
  const seq = ++table.seq;
  let page;
  try {
    page = await api("/api/study/trials", {
      name, sort: table.sort, order: table.order, state: [...table.states].join(","), q: table.q,
      offset: table.offset, limit: table.limit,
    });
  } catch (error) {
    if (seq === table.seq) showError(error.message);
    return;
  }
  if (seq !== table.seq) return;
  renderTable(name, table, summary, page, () => loadTable(name, table, summary));
}

function renderTable(name, table, summary, page, reload) {
  const columns = [
    { label: "#", sort: "number", cell: (row) => el("a", { href: trialUrl(name, row.number) }, row.number), num: true },
    { label: "State", sort: "state", cell: (row) => stateBadge(row.state) },
    { label: summary.metric, sort: "value", cell: (row) => fmtNumber(row.value), num: true },
    { label: "Duration", sort: "duration", cell: (row) => fmtDuration(row.duration_s), num: true },
    { label: "Steps", cell: (row) => row.steps, num: true },
    ...summary.params.map((param) => ({
      label: param, sort: `param:${param}`, num: true,
      cell: (row) => fmtValue(row.params ? row.params[param] : undefined),
    })),
    { label: "Error", cell: (row) => errorCell(row.error) },
  ];
  const head = el("tr", {}, ...columns.map((column) => headerCell(column, table, reload)));
  document.querySelector("#trials thead").replaceChildren(head);
  const rows = page.rows.map((row) =>
    el("tr", {}, ...columns.map((column) => el("td", { className: column.num ? "num" : "" }, column.cell(row)))));
  document.querySelector("#trials tbody").replaceChildren(...rows);
  const last = Math.min(page.offset + page.rows.length, page.total);
  byId("range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "No trials match.";
  byId("prev").disabled = page.offset === 0;
  byId("next").disabled = page.offset + page.limit >= page.total;
}

function headerCell(column, table, reload) {
  if (!column.sort) return el("th", {}, column.label);
  const active = table.sort === column.sort;
  const arrow = active ? (table.order === "asc" ? " ▲" : " ▼") : "";
  const button = el("button", { type: "button", className: "sort", title: `Sort by ${column.label}` }, column.label + arrow);
  button.dataset.sort = column.sort;
  button.addEventListener("click", () => {
    table.order = active && table.order === "asc" ? "desc" : "asc";
    table.sort = column.sort;
    table.offset = 0;
    reload();
  });
  return el("th", { className: active ? "sorted" : "" }, button);
}

function errorCell(error) {
  if (!error) return "";
  const last = error.trim().split("\n").pop(); // a traceback ends with the exception's message
  return el("span", { className: "error-text", title: error }, last.length > 80 ? last.slice(0, 79) + "…" : last);
}

// ------------------------------------------------------------------------------- trial page ---

async function trialPage() {
  const { name, number } = pathParts();
  document.title = `${name} #${number} · tunelab`;
  byId("crumb").append(" / ", el("a", { href: studyUrl(name) }, name));
  byId("title").textContent = `Trial #${number}`;
  let shown = null;
  const show = async () => {
    const trial = await api("/api/study/trial", { name, number });
    renderTrial(name, trial);
    shown = trial.revision;
  };
  await show();
  byId("status").textContent = "";
  const curves = lazyFigures(byId("figures"), ["curves"], { name, numbers: number });
  pollStudy(name, (poll) => poll.revision === shown, async () => {
    await show();
    await curves.refresh();
  });
}

function factRows(pairs) {
  return pairs.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, value)));
}

function renderTrial(name, trial) {
  byId("facts").tBodies[0].replaceChildren(...factRows([
    ["State", stateBadge(trial.state)],
    [trial.metric, fmtNumber(trial.value)],
    ["Seed", fmtValue(trial.seed)],
    ["Source", trial.source],
    ["Started", fmtTime(trial.started_at)],
    ["Finished", fmtTime(trial.finished_at)],
    ["Duration", fmtDuration(trial.duration_s)],
    ["Retries", trial.retries],
    ["Steps reported", trial.steps],
    ["Last step", fmtValue(trial.last_step)],
  ]));
  byId("params").tBodies[0].replaceChildren(
    ...factRows(Object.entries(trial.params || {}).map(([key, value]) => [key, fmtValue(value)])));
  byId("metrics").tBodies[0].replaceChildren(
    ...factRows(Object.entries(trial.metrics || {}).map(([key, value]) => [key, fmtNumber(value)])));
  const stopped = trial.stopped;
  byId("stopped-section").hidden = !stopped;
  if (stopped) {
    byId("stopped").textContent =
      `${fmtValue(stopped.decision)} at step ${fmtValue(stopped.step)} by ${fmtValue(stopped.by)}: ${fmtValue(stopped.why)}`;
  }
  byId("warnings-section").hidden = !trial.warnings.length;
  byId("warnings").replaceChildren(...trial.warnings.map((warning) => el("li", {}, warning)));
  byId("error-section").hidden = !trial.error;
  byId("error").textContent = trial.error || "";
  renderIntermediate(trial.intermediate);
  renderFiles(name, trial.number, trial.artifacts);
}

function renderIntermediate(reports) {
  const names = [...new Set(reports.flatMap((report) => Object.keys(report.metrics)))];
  document.querySelector("#intermediate thead").replaceChildren(
    el("tr", {}, el("th", { className: "num" }, "Step"), ...names.map((metric) => el("th", { className: "num" }, metric))));
  document.querySelector("#intermediate tbody").replaceChildren(...reports.map((report) =>
    el("tr", {}, el("td", { className: "num" }, report.step),
      ...names.map((metric) => el("td", { className: "num" }, fmtNumber(report.metrics[metric]))))));
}

function renderFiles(name, number, artifacts) {
  const files = artifacts.files;
  byId("folder").textContent = files.length
    ? `In ${artifacts.folder}${artifacts.truncated ? ` (the first ${files.length} files)` : ""}`
    : `No files${artifacts.folder ? ` in ${artifacts.folder}` : ""}.`;
  document.querySelector("#files thead").replaceChildren(
    files.length ? el("tr", {}, el("th", {}, "File"), el("th", { className: "num" }, "Size")) : "");
  document.querySelector("#files tbody").replaceChildren(...files.map((file) => {
    const url = new URL("/api/study/file", location.origin);
    url.search = new URLSearchParams({ name, number, path: file.path }).toString();
    return el("tr", {}, el("td", {}, el("a", { href: url.pathname + url.search }, file.path)),
      el("td", { className: "num" }, fmtSize(file.size)));
  }));
}

function fmtSize(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let size = bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit ? `${size.toFixed(1)} ${units[unit]}` : `${size} B`;
}

// ------------------------------------------------------------------------------------ start ---

const PAGES = { studies: studiesPage, study: studyPage, trial: trialPage };
PAGES[document.body.dataset.page]().catch((error) => showError(error.message));
