// posture console. Every view reads and changes through POST /console/api, the API's own
// actions run with the session's key (the server holds them to the key's policy and account).
// No framework: DOM built with createElement and textContent only, so nothing a server's file
// or a name holds is ever parsed as HTML.
"use strict";

const session = { csrf: "", allowed: new Set(), keyId: "", policy: "" };
let timers = [];

// ---------- DOM helpers ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const main = () => document.getElementById("main");
// Each navigation gets a number; a view that is still loading when the next one starts must
// not paint over it, nor schedule more polling.
let navigation = 0;
function current(seq) {
  return seq === navigation;
}
function paint(seq, ...nodes) {
  if (current(seq)) main().replaceChildren(...nodes);
}
function show(...nodes) {
  main().replaceChildren(...nodes);
}
// Polling for a view: its calls are marked as the page's own (they do not keep an unattended
// session alive), and it stops with its navigation.
function later(seq, fn, ms) {
  if (current(seq)) timers.push(setTimeout(() => { if (current(seq)) fn().catch(() => {}); }, ms));
}
let flash = "";
function say(text, isError) {
  const s = document.getElementById("status");
  s.className = isError ? "status error" : "status";
  s.textContent = text || "";
}
function time(ms) {
  return ms ? new Date(Number(ms)).toLocaleString() : "—";
}
function statusBadge(status) {
  const cls = /NOT_PASS|FAIL|UNVERIFIED|REJECT|OFFLINE/.test(status) ? "fail" : /PASS|VERIFIED|SUCCESS|ONLINE/.test(status) ? "pass" : "warn";
  return h("span", { class: "badge " + cls, text: status || "—" });
}
// Headers written "~Name" mark columns hidden on a narrow screen (their cells say "hide-narrow").
function table(headers, rows) {
  const th = (t) => t.startsWith("~") ? h("th", { scope: "col", class: "hide-narrow", text: t.slice(1) }) : h("th", { scope: "col", text: t });
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map(th))),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length, class: "muted", text: "Nothing to show." }))])));
}
// A labelled control: the label names the control alone (its text is the accessible name).
function field(id, label, control, ...extra) {
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, ...extra);
}
function can(action) {
  return session.allowed.has(action);
}

// ---------- the API ----------
function flatten(params, prefix, out) {
  for (const [k, v] of Object.entries(params)) {
    const name = prefix ? prefix + "." + k : k;
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((item, i) => {
      if (typeof item === "object") flatten(item, name + "." + (i + 1), out);
      else out.append(name + "." + (i + 1), String(item));
    });
    else if (typeof v === "object") flatten(v, name, out);
    else out.append(name, String(v));
  }
  return out;
}
class ApiError extends Error {
  constructor(status, body) {
    super(body.Message || "HTTP " + status);
    this.status = status;
    this.code = body.Code || "HTTP" + status;
  }
}
async function post(path, body, poll) {
  const headers = { "content-type": "application/x-www-form-urlencoded" };
  if (session.csrf) headers["x-posture-csrf"] = session.csrf;
  if (poll) headers["x-posture-poll"] = "1";
  let r;
  try {
    r = await fetch(path, { method: "POST", headers, body, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, { Code: "NetworkError", Message: "The service could not be reached" });
  }
  const json = await r.json().catch(() => ({}));
  if (!r.ok) {
    if (r.status === 401 && json.Code === "Console.SessionRequired") signedOut("Your session has ended: sign in again.");
    if (r.status === 403 && json.Code === "Console.CsrfRefused" && session.csrf) await sessionChanged();
    throw new ApiError(r.status, json);
  }
  return json;
}
function api(action, params, poll) {
  return post("/console/api", flatten(Object.assign({ Action: action, Lang: "en" }, params || {}), "", new URLSearchParams()), poll);
}

// ---------- session ----------
function signedIn(s) {
  session.csrf = s.CsrfToken;
  session.allowed = new Set(s.Allowed || []);
  session.keyId = s.AccessKeyId;
  session.policy = s.Policy;
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = s.AccessKeyId + " · " + s.Policy + " · account " + s.AccountId;
}
// The session this browser's cookie holds (GET /console/session), or null if there is none or
// the service cannot be reached.
async function currentSession() {
  const r = await fetch("/console/session", { credentials: "same-origin" }).catch(() => null);
  return r && r.ok ? r.json() : null;
}
// Another tab signed in (its cookie replaced this tab's session): take up the session in force,
// or the sign-in form if there is none.
async function sessionChanged() {
  const s = await currentSession();
  if (!s) return signedOut("Your session has ended: sign in again.");
  if (s.CsrfToken === session.csrf) return;
  signedIn(s);
  flash = "You signed in again in another tab: this tab now acts as " + s.AccessKeyId + " (" + s.Policy + ").";
  route();
}
function signedOut(message) {
  navigation++; // no view still loading paints over the sign-in form
  session.csrf = "";
  session.allowed = new Set();
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  stopTimers();
  viewSignIn(message);
}
function viewSignIn(message) {
  const id = h("input", { id: "ak", name: "AccessKeyId", autocomplete: "username", required: true });
  const secret = h("input", { id: "sk", name: "AccessKeySecret", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "field-error", id: "signin-error", role: "alert" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const s = await post("/console/session", new URLSearchParams({ AccessKeyId: id.value.trim(), AccessKeySecret: secret.value }));
      secret.value = "";
      signedIn(s);
      if (location.hash === "#/overview") route();
      else location.hash = "#/overview";
    } catch (err) {
      error.textContent = err.message + " (" + err.code + ")";
    }
  } },
  h("h1", { id: "signin-title", text: "Sign in to posture" }),
  message ? h("p", { text: message }) : null,
  field("ak", "AccessKeyId", id),
  field("sk", "AccessKeySecret", secret),
  error,
  h("button", { class: "primary", type: "submit", text: "Sign in" }),
  h("p", { class: "muted", text: "The key's policy decides what you can see and do; the console acts with it, exactly as the API does." }));
  show(form);
  id.focus();
}
async function start() {
  document.getElementById("signout").addEventListener("click", async () => {
    try {
      await post("/console/signout", "");
    } catch (e) {
      // Already ended is signed out; anything else is not, and must not look as if it were.
      if (e.code !== "Console.SessionRequired") return say("Signing out failed: " + e.message + " (" + e.code + "). You are still signed in.", true);
    }
    signedOut("You are signed out.");
  });
  window.addEventListener("hashchange", route);
  if (location.hash.includes("ticket=")) return route();
  const s = await currentSession();
  if (!s) return viewSignIn();
  signedIn(s);
  route();
}

// ---------- router ----------
function stopTimers() {
  timers.forEach(clearTimeout);
  timers = [];
}
function parseHash() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), query: new URLSearchParams(query || "") };
}
// A one-time sign-in link (`serve --demo`) carries its ticket in the fragment, which no server
// log sees; it is taken out of the address at once.
function ticketInAddress() {
  if (!location.hash.includes("ticket=")) return null;
  const m = /^#ticket=([0-9a-f]{64})$/.exec(location.hash);
  // Whatever the fragment, a ticket leaves the address bar and the history at once.
  history.replaceState(null, "", location.pathname + "#/overview");
  return m ? m[1] : "malformed";
}
async function useTicket(ticket) {
  // A link signs in as its key: the session in force (perhaps another key's, perhaps of a tab
  // opened before) ends first.
  if (!session.csrf) {
    const s = await currentSession();
    if (s) session.csrf = s.CsrfToken;
  }
  if (session.csrf) {
    try { await post("/console/signout", ""); } catch (e) { /* ended already */ }
    signedOut();
  }
  if (ticket === "malformed") return signedOut("The sign-in link is incomplete: copy all of it, or sign in with your AccessKey.");
  try {
    signedIn(await post("/console/session", new URLSearchParams({ Ticket: ticket })));
    return route();
  } catch (e) {
    return signedOut("The sign-in link was not accepted (each link works once): sign in with your AccessKey.");
  }
}
async function route() {
  const ticket = ticketInAddress();
  if (ticket) return useTicket(ticket);
  if (!session.csrf) return;
  stopTimers();
  const seq = ++navigation;
  say(flash);
  flash = "";
  const { parts, query } = parseHash();
  const section = parts[0] || "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (section === "items" && parts[1]) await viewItem(seq, Number(parts[1]), query);
    else if (section === "items") await viewItems(seq, query);
    else if (section === "tasks" && parts[1]) await viewRoot(seq, parts[1], {});
    else if (section === "tasks") await viewTasks(seq, query);
    else if (section === "assets") await viewAssets(seq, query);
    else await viewOverview(seq);
  } catch (e) {
    if (session.csrf) paint(seq, h("h1", { text: "Something went wrong" }), h("p", { class: "fail", text: e.message + " (" + (e.code || "error") + ")" }));
  }
  if (current(seq)) main().focus({ preventScroll: true });
}

// ---------- overview ----------
async function viewOverview(seq) {
  const [summary, trend, runs] = await Promise.all([
    api("GetCheckSummary", {}),
    api("DescribeCheckTrend", { Count: 30 }),
    api("ListOperationProcess", { PageSize: 1 }).catch(() => ({ Processes: [] })),
  ]);
  const o = summary.OverallStatistic || {};
  const cards = h("div", { class: "cards" },
    card("Items passing", o.PassCount, "pass"), card("Items failing", o.NotPassCount, "fail"),
    card("Failing, high risk", o.NotPassHighCount, "fail"), card("Failing, medium risk", o.NotPassMediumCount, "warn"),
    card("Failing, low risk", o.NotPassLowCount, ""), card("Not checked", o.NotCheckCount, "muted"));
  const standards = [];
  for (const t of summary.Summarys || []) for (const s of t.Standards || []) {
    standards.push(h("tr", {}, h("td", { text: s.ShowName }), h("td", { class: "pass", text: s.PassCount }), h("td", { class: "fail", text: s.FailCount }),
      h("td", { text: s.RiskLevelHighCount }), h("td", { text: s.RiskLevelMediumCount }), h("td", { text: s.RiskLevelLowCount })));
  }
  const runBox = h("div", { id: "last-run" });
  const last = (runs.Processes || [])[0];
  const checkNow = can("SubmitCheck") ? h("button", { class: "primary", type: "button", id: "check-now", text: "Check now", onclick: async (e) => {
    e.target.disabled = true;
    try {
      const r = await api("SubmitCheck", {});
      say("Check run " + r.TaskId + " started.");
      followRun(seq, runBox, r.TaskId, e.target);
    } catch (err) {
      say(err.message + " (" + err.code + ")", true);
      e.target.disabled = false;
    }
  } }) : null;
  followRun(seq, runBox, last ? last.TaskId : null, checkNow);
  paint(seq, h("h1", { text: "Overview" }), cards,
    h("h2", { text: "Last check run" }), runBox, checkNow,
    h("h2", { text: "Trend" }), trendChart(trend.Points || []),
    h("h2", { text: "By standard" }), table(["Standard", "Passing", "Failing", "High", "Medium", "Low"], standards));
}
function card(label, n, cls) {
  return h("div", { class: "card" }, h("div", { class: "n " + cls, text: n === undefined ? "—" : n }), h("div", { class: "muted", text: label }));
}
// Shows one check run's progress in `box`, polling until it ends; following another run stops
// following this one. "Check now" stays off while the run it follows checks.
function followRun(seq, box, runId, button) {
  box.dataset.run = runId || "";
  renderRun(seq, box, runId, false, button).catch((e) => say(e.message + " (" + e.code + ")", true));
}
async function renderRun(seq, box, runId, poll, button) {
  if (box.dataset.run !== (runId || "")) return;
  if (!runId) { box.replaceChildren(h("p", { class: "muted", text: "No check run yet." })); return; }
  const p = await api("GetCheckProcess", { TaskId: runId }, poll);
  if (box.dataset.run !== runId) return;
  if (String(p.StatusCode) === "5") { box.replaceChildren(h("p", { class: "muted", text: "The last check run is no longer known." })); return; }
  const total = Number(p.TotalCount) || 0, done = Number(p.FinishCount) || 0;
  const finished = ["2", "4", "5"].includes(String(p.StatusCode));
  const pct = total ? Math.round((100 * done) / total) : finished ? 100 : 0;
  const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "Check run progress" }, h("div"));
  bar.firstChild.style.width = pct + "%";
  box.replaceChildren(h("p", {}, "Run ", h("code", { text: runId }), ": ", finished ? "completed" : "checking", ", " + done + " of " + total + " instances."), bar);
  if (button) button.disabled = !finished;
  if (!finished) later(seq, () => renderRun(seq, box, runId, true, button), 1500);
}
function trendChart(points) {
  if (!points.length) return h("p", { class: "muted", text: "The trend starts with the first completed check run." });
  return h("div", { class: "charts" },
    lineChart(points, "FailCount", "#b42318", "Failing results"),
    lineChart(points, "PassCount", "#1a7f37", "Passing results"),
    lineChart(points, "FailingCheckCount", "#8a5300", "Items failing somewhere"));
}
// One series over the runs, its axis fitted to its own range (a fleet's counts move by a few
// percent, which a zero-based axis would flatten).
function lineChart(points, key, color, label) {
  const ns = "http://www.w3.org/2000/svg", W = 320, H = 150, left = 44, pad = 14;
  const values = points.map((p) => Number(p[key]) || 0);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo = Math.max(0, lo - 1); hi = hi + 1; }
  const x = (i) => left + (points.length === 1 ? (W - left - pad) / 2 : (i * (W - left - pad)) / (points.length - 1));
  const y = (v) => H - pad - ((v - lo) * (H - 2 * pad)) / (hi - lo);
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "trend", role: "img",
    "aria-label": `${label} at the last ${points.length} check runs: from ${values[0]} to ${values[values.length - 1]}.` });
  svg.append(el("line", { x1: left, y1: pad, x2: left, y2: H - pad, stroke: "#8c959f" }));
  svg.append(el("text", { x: left - 4, y: pad + 4, "font-size": 11, "text-anchor": "end" }, String(hi)));
  svg.append(el("text", { x: left - 4, y: H - pad, "font-size": 11, "text-anchor": "end" }, String(lo)));
  svg.append(el("polyline", { points: values.map((v, i) => `${x(i)},${y(v)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2.5 }));
  values.forEach((v, i) => {
    const dot = el("circle", { cx: x(i), cy: y(v), r: 3.5, fill: color });
    dot.append(el("title", {}, `${time(points[i].EndTime)}: ${v}`));
    svg.append(dot);
  });
  return h("figure", { class: "chart" }, svg, h("figcaption", { class: "legend" }, label + ": ", h("strong", { text: String(values[values.length - 1]) }), ` now, over the last ${points.length} completed check runs`));
}

// ---------- check items ----------
const STATUSES = ["NOT_PASS", "PASS", "WHITELIST", "NOT_CHECK", "CHECKING"];
function select(name, label, options, value) {
  const id = "f-" + name;
  const el = h("select", { id, name }, h("option", { value: "", text: "Any" }), options.map(([v, t]) => h("option", { value: v, text: t, selected: v === value })));
  return field(id, label, el);
}
async function viewItems(seq, q) {
  const page = Number(q.get("page")) || 1;
  const params = { CurrentPage: page, PageSize: 20 };
  if (q.get("status")) params.Statuses = [q.get("status")];
  if (q.get("risk")) params.RiskLevels = [q.get("risk")];
  if (q.get("vendor")) params.Vendors = [q.get("vendor")];
  if (q.get("standard")) params.StandardIds = [q.get("standard")];
  if (q.get("q")) params.CheckKey = q.get("q");
  if (q.get("sort")) params.SortTypes = [q.get("sort")];
  const [list, standards] = await Promise.all([api("ListCheckResult", params), api("ListCheckStandard", {}).catch(() => ({ Standards: [] }))]);
  const text = h("input", { id: "f-q", name: "q", value: q.get("q") || "", type: "search" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter check items", onsubmit: (e) => {
    e.preventDefault();
    const f = new URLSearchParams();
    for (const el of e.target.elements) if (el.name && el.value) f.set(el.name, el.value);
    location.hash = "#/items?" + f.toString();
  } },
  select("status", "Status", STATUSES.map((s) => [s, s]), q.get("status")),
  select("risk", "Risk", [["HIGH", "High"], ["MEDIUM", "Medium"], ["LOW", "Low"]], q.get("risk")),
  select("vendor", "Vendor", [["AWS", "AWS"], ["ALIYUN", "Alibaba Cloud"], ["TENCENT", "Tencent"], ["MICROSOFT", "Microsoft"]], q.get("vendor")),
  select("standard", "Standard", (standards.Standards || []).map((s) => [String(s.Id), s.ShowName]), q.get("standard")),
  field("f-q", "Name contains", text),
  select("sort", "Sort by", [["RISK_LEVEL", "Risk"], ["STATUS", "Status"]], q.get("sort")),
  h("button", { type: "submit", class: "primary", text: "Apply" }));
  const rows = (list.Checks || []).map((c) => h("tr", {},
    h("td", {}, h("a", { href: "#/items/" + c.CheckId, text: c.CheckShowName })),
    h("td", {}, statusBadge(c.Status)), h("td", { text: c.RiskLevel }), h("td", { class: "hide-narrow", text: c.Vendor }),
    h("td", { class: "hide-narrow", text: c.OperationType === "SUPPORT_REPAIR" ? "yes" : "no" }), h("td", { class: "hide-narrow", text: time(c.LastCheckTime) })));
  paint(seq, h("h1", { text: "Check items" }), form,
    table(["Item", "Status", "Risk", "~Vendor", "~Repairable", "~Last checked"], rows),
    pager(list.PageInfo, page, (p) => { q.set("page", p); location.hash = "#/items?" + q.toString(); }));
}
function pager(info, page, go) {
  const total = Number(info && info.TotalCount) || 0, size = Number(info && info.PageSize) || 20;
  const pages = Math.max(1, Math.ceil(total / size));
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", text: "Previous", disabled: page <= 1, onclick: () => go(page - 1) }),
    h("span", { text: `Page ${page} of ${pages} (${total} in all)` }),
    h("button", { type: "button", text: "Next", disabled: page >= pages, onclick: () => go(page + 1) }));
}

// ---------- item detail ----------
async function viewItem(seq, checkId, q) {
  const page = Number(q.get("page")) || 1;
  const [detail, list, failing, whitelist] = await Promise.all([
    api("GetCheckDetail", { CheckId: checkId }),
    api("ListCheckResult", { CheckIds: [checkId], PageSize: 1 }),
    api("ListCheckInstanceResult", { CheckId: checkId, Statuses: ["NOT_PASS"], CurrentPage: page, PageSize: 20 }),
    api("ListCheckWhiteList", { CheckId: checkId }).catch(() => ({ Rules: [] })),
  ]);
  const item = (list.Checks || [])[0] || { CheckShowName: "Check item " + checkId };
  const repair = detail.RepairSetting || {};
  const rows = (failing.BasicData || []).map((r) => h("tr", {},
    h("td", {}, h("code", { text: r.InstanceId })), h("td", { text: r.InstanceName }), h("td", { class: "hide-narrow", text: r.RegionId }),
    h("td", {}, statusBadge(r.Status)),
    h("td", {}, ((r.InstanceInfo || {}).Config || []).map((c) => h("div", {}, h("strong", { text: (c.ShowName || c.Name) + ": " }), h("code", { text: c.Value })))),
    h("td", { class: "hide-narrow", text: r.StatusMessage || "" }),
    can("AddCheckInstanceResultWhiteList") ? h("td", {}, h("button", { type: "button", text: "Accept risk…", "aria-label": "Accept the risk on " + r.InstanceId,
      onclick: () => acceptRiskDialog(checkId, r) })) : null));
  const mayRemove = can("RemoveCheckResultWhiteList");
  const rules = (whitelist.Rules || []).map((r) => h("tr", {},
    h("td", { text: r.InstanceCount ? r.InstanceIds.join(", ") + (r.InstanceCount > r.InstanceIds.length ? " …" : "") : "every instance" }),
    h("td", { text: r.Reason || r.Remark || "—" }), h("td", { text: r.ExpireTime ? time(r.ExpireTime) : "never" }),
    mayRemove ? h("td", {}, h("button", { type: "button", class: "danger", text: "Remove", "aria-label": "Remove the rule for " + (r.InstanceIds.join(", ") || "every instance"),
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          await api("RemoveCheckResultWhiteList", { RuleId: r.RuleId });
          flash = "The rule was removed: the instances are judged again from their last results.";
          route();
        } catch (err) { say(err.message + " (" + err.code + ")", true); e.target.disabled = false; }
      } })) : null));
  const fixable = repair.RepairSupport && can("SubmitOperationTask");
  paint(seq,
    h("p", {}, h("a", { href: "#/items", text: "← Check items" })),
    h("h1", { text: item.CheckShowName }),
    h("p", {}, statusBadge(item.Status), " ", h("span", { text: "Risk " + (item.RiskLevel || "—") }), detail.Cis ? h("span", { text: " · CIS " + detail.Cis + (detail.Benchmark ? " (" + detail.Benchmark + ")" : "") }) : null),
    h("h2", { text: "What it checks" }), h("p", { text: (detail.Description || {}).Value || "" }),
    h("h2", { text: "How it is judged" }), ruleOf(detail.Rule || []),
    (detail.AssistInfo || {}).Value ? h("p", { class: "muted", text: detail.AssistInfo.Value }) : null,
    h("h2", { text: "How to fix it" }), h("p", { text: (detail.Solution || {}).Value || "" }),
    repair.RepairSupport ? h("ol", {}, (repair.FlowStep || []).map((s) => h("li", { text: s.ShowText }))) : h("p", { class: "muted", text: "posture does not repair this item." }),
    fixable ? h("button", { class: "primary", type: "button", id: "fix", text: "Fix…", onclick: () => fixDialog(checkId, item, detail) }) : null,
    h("h2", { text: "Failing instances" }),
    table(["Instance", "Name", "~Region", "Result", "Current values (evidence)", "~Message", ...(can("AddCheckInstanceResultWhiteList") ? ["Whitelist"] : [])], rows),
    pager(failing.PageInfo, page, (p) => { location.hash = "#/items/" + checkId + "?page=" + p; }),
    h("h2", { text: "Whitelist (accepted risk)" }),
    table(["Instances", "Reason", "Expires", ...(mayRemove ? ["Remove"] : [])], rules));
}

// Whitelisting one failing instance: why the risk is accepted (required, so the record says)
// and until when (optional).
function acceptRiskDialog(checkId, r) {
  const reason = h("input", { id: "wl-reason", maxlength: 1000, "aria-describedby": "wl-error", "aria-required": "true" });
  const until = h("input", { id: "wl-until", type: "date" });
  const error = h("p", { class: "field-error", id: "wl-error", role: "alert" });
  const dialog = h("dialog", { "aria-labelledby": "wl-title" },
    h("h2", { id: "wl-title", text: "Accept the risk on " + r.InstanceId }),
    h("p", { class: "muted", text: "The instance then counts as WHITELIST for this item, and no repair touches it." }),
    h("form", { method: "dialog", onsubmit: async (e) => {
      e.preventDefault();
      if (!reason.value.trim()) { error.textContent = "Say why the risk is accepted."; reason.focus(); return; }
      const params = { CheckId: checkId, InstanceIds: [r.InstanceId], Reason: reason.value.trim() };
      if (until.value) params.ExpireTime = new Date(until.value + "T23:59:59").getTime();
      try {
        await api("AddCheckInstanceResultWhiteList", params);
        dialog.close();
        flash = "The risk on " + r.InstanceId + " is accepted" + (until.value ? " until " + until.value : "") + ".";
        route();
      } catch (err) { error.textContent = err.message + " (" + err.code + ")"; }
    } },
    field("wl-reason", "Reason", reason),
    field("wl-until", "Until (optional; none: until removed)", until),
    error,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: "Accept risk" }), h("button", { type: "button", text: "Close", onclick: () => dialog.close() }))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  reason.focus();
}

// The item's rule as a list: every condition must hold for PASS (the account's thresholds).
const OPERATORS = { eq: "is", in: "is one of", le: "is at most", ge: "is at least", le_duration: "is at most (seconds)",
  mode_at_most: "grants no more than mode", no_wildcard_addr: "lists no wildcard address", present: "is set",
  absent: "is not set", all_of: "includes all of", none_of: "includes none of", mask_at_least: "masks at least",
  fields_le: "is field by field at most", audit_rules: "records at least the audit rules" };
function ruleOf(rule) {
  if (!rule.length) return h("p", { class: "muted", text: "—" });
  return h("ul", {}, rule.map((c) => h("li", {},
    h("code", { text: c.Key }), " " + (OPERATORS[c.Operator] || c.Operator) + " ",
    c.Value ? h("code", { text: c.Value }) : null, (c.Values || []).length ? h("code", { text: c.Values.join(", ") }) : null,
    c.Default ? h("span", { class: "muted", text: " (when not set: " + c.Default + ")" }) : null)));
}

// Checks a value against a repair parameter's TypeDefine as it is typed: the format only (the
// server's check, which also refuses values that would defeat the fix, is the last word).
function validator(typeDefine) {
  let t = {};
  try { t = JSON.parse(typeDefine || "{}"); } catch (e) { t = {}; }
  const ipv4 = (s) => /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s) && s.split(".").every((p) => Number(p) <= 255 && String(Number(p)) === p);
  const ipv6 = (s) => s.includes(":") && /^[0-9a-fA-F:.]+$/.test(s) && (() => { try { return new URL("http://[" + s + "]/").hostname.length > 2; } catch (e) { return false; } })();
  const ip = (s) => ipv4(s) || ipv6(s);
  const port = (s) => /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535;
  switch (t.type) {
    case "IP": return (v) => ip(v) ? "" : "Enter an IPv4 or IPv6 address, such as 127.0.0.1.";
    case "PORT": return (v) => port(v) ? "" : "Enter a port from 1 to 65535.";
    case "IP:PORT": return (v) => {
      const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) || /^([^:\[\]]+):(\d+)$/.exec(v);
      return m && ip(m[1]) && port(m[2]) ? "" : "Enter an address and port, such as 127.0.0.1:6379 or [::1]:6379.";
    };
    case "CIDR": return (v) => {
      const [addr, bits, extra] = v.split("/");
      const max = ipv4(addr || "") ? 32 : ipv6(addr || "") ? 128 : -1;
      return extra === undefined && max > 0 && /^\d{1,3}$/.test(bits || "") && Number(bits) <= max ? "" : "Enter a network such as 10.0.0.0/8.";
    };
    case "NUMBER": return (v) => {
      const [lo, hi] = t.range || [-Infinity, Infinity];
      return /^-?\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi ? "" : `Enter a whole number from ${lo} to ${hi}.`;
    };
    case "ENUM": return (v) => (t.values || []).includes(v) ? "" : "Choose one of: " + (t.values || []).join(", ") + ".";
    case "BOOL": return (v) => /^(true|false)$/i.test(v) ? "" : "Enter true or false.";
    case "STRING": return (v) => { try { return new RegExp("^(?:" + t.pattern + ")$").test(v) ? "" : "The value does not have the expected form."; } catch (e) { return ""; } };
    default: return () => "";
  }
}

// The failing instances the dialog lists to choose from (at most 1,000; "all failing" is sent
// as DimensionType CHECK_ID, which the server resolves whatever their number), and how many
// fail in all.
async function failingInstances(checkId) {
  const out = [];
  let total = 0;
  for (let page = 1; page <= 10; page++) {
    const r = await api("ListCheckInstanceResult", { CheckId: checkId, Statuses: ["NOT_PASS"], CurrentPage: page, PageSize: 100 });
    total = Number((r.PageInfo || {}).TotalCount) || 0;
    out.push(...(r.BasicData || []));
    if ((r.BasicData || []).length < 100) break;
  }
  return { listed: out, total };
}

async function fixDialog(checkId, item, detail) {
  const configs = ((detail.RepairSetting || {}).RepairConfigs || []).filter((c) => c.UsageType !== "1");
  const { listed: failing, total: failingTotal } = await failingInstances(checkId);
  const fields = configs.map((c) => {
    const id = "p-" + c.Name, errId = id + "-error";
    const input = h("input", { id, name: c.Name, value: c.Value || c.DefaultValue || "", "aria-describedby": errId, autocomplete: "off",
      required: c.EmptyParamSwitch === "1" });
    const error = h("span", { class: "field-error", id: errId });
    const check = validator(c.TypeDefine);
    const validate = () => {
      const msg = input.value === "" ? (c.EmptyParamSwitch === "1" ? "A value is required." : "") : check(input.value.trim());
      error.textContent = msg;
      input.setAttribute("aria-invalid", msg ? "true" : "false");
      return !msg;
    };
    input.addEventListener("input", validate);
    return { c, input, error, validate, el: field(id, (c.ShowName || c.Name) + " (" + c.Name + ")", input, error) };
  });
  const picks = failing.map((r) => ({ r, box: h("input", { type: "checkbox", checked: true, "aria-label": "Repair " + r.InstanceId }) }));
  const mode = (v, label, checked) => h("label", { class: "inline" }, h("input", { type: "radio", name: "scope", value: v, checked }), label);
  const filterInput = h("input", { id: "scope-filter", placeholder: "instance id or name contains", "aria-label": "Instance id or name contains" });
  const result = h("div", { id: "fix-result", "aria-live": "polite" });
  const chosen = async (dialog) => {
    const scope = dialog.querySelector("input[name=scope]:checked").value;
    if (scope === "hand") return picks.filter((p) => p.box.checked).map((p) => p.r);
    if (scope === "filter") {
      const k = filterInput.value.trim().toLowerCase();
      return failing.filter((r) => r.InstanceId.toLowerCase().includes(k) || (r.InstanceName || "").toLowerCase().includes(k));
    }
    return failing;
  };
  const request = async (dialog) => {
    if (!fields.map((f) => f.validate()).every(Boolean)) throw new Error("Correct the highlighted values first.");
    const params = { RepairTempParam: fields.map((f) => ({ Name: f.c.Name, Value: f.input.value.trim() })).filter((p) => p.Value !== "") };
    // Every failing instance: the server picks them (whitelisted ones left out), however many.
    if (dialog.querySelector("input[name=scope]:checked").value === "all") return Object.assign({ CheckId: checkId, Type: "REPAIR", DimensionType: "CHECK_ID" }, params);
    const instances = await chosen(dialog);
    if (!instances.length) throw new Error("Choose at least one instance.");
    return Object.assign({ CheckId: checkId, Type: "REPAIR", OperationTaskInstances: instances.map((r) => ({ InstanceId: r.InstanceId, RegionId: r.RegionId })) }, params);
  };
  // A refusal that names a parameter is shown at its field.
  const showError = (err) => {
    const name = (err.code || "").split(".").slice(1).join(".");
    const f = fields.find((x) => x.c.Name === name);
    if (f) { f.error.textContent = err.message; f.input.setAttribute("aria-invalid", "true"); f.input.focus(); }
    result.replaceChildren(h("p", { class: "fail", role: "alert", text: err.message + (err.code ? " (" + err.code + ")" : "") }));
  };
  const dialog = h("dialog", { "aria-labelledby": "fix-title" },
    h("h2", { id: "fix-title", text: "Fix: " + item.CheckShowName }),
    h("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
      fields.length ? h("fieldset", {}, h("legend", { text: "Repair parameters" }), fields.map((f) => f.el)) : h("p", { class: "muted", text: "This repair takes no parameters." }),
      h("fieldset", {}, h("legend", { text: "Instances (" + failingTotal + " failing" + (failingTotal > failing.length ? ", the first " + failing.length + " listed" : "") + ")" }),
        mode("all", "All failing instances", true), mode("filter", "Failing instances matching ", false), filterInput, mode("hand", "Chosen below", false),
        h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {}, picks.map((p) => h("tr", {}, h("td", {}, p.box), h("td", {}, h("code", { text: p.r.InstanceId })), h("td", { text: p.r.InstanceName }))))))),
      result,
      h("div", { class: "row" },
        can("PreviewOperationTask") ? h("button", { type: "button", id: "preview", text: "Preview changes", onclick: async () => {
          try {
            const r = await api("PreviewOperationTask", await request(dialog));
            const shown = (r.Instances || []).length, total = Number((r.PageInfo || {}).TotalCount) || shown;
            result.replaceChildren(h("h3", { text: "What the repair would change" }),
              total > shown ? h("p", { class: "muted", text: `The first ${shown} of ${total} instances:` }) : null,
              ...(r.Instances || []).map(previewOf));
          } catch (err) { showError(err); }
        } }) : null,
        h("button", { type: "button", class: "primary", id: "submit-fix", text: "Repair", onclick: async () => {
          try {
            const r = await api("SubmitOperationTask", await request(dialog));
            dialog.close();
            location.hash = "#/tasks/" + r.RootTaskId;
          } catch (err) { showError(err); }
        } }),
        h("button", { type: "button", text: "Close", onclick: () => dialog.close() }))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  (fields[0] ? fields[0].input : dialog.querySelector("#submit-fix")).focus();
}
function previewOf(p) {
  const head = h("p", {}, h("code", { text: p.InstanceId }), " ", statusBadge(p.Outcome), p.SkipCode ? " " + p.SkipCode : "", p.SkipMessage ? ": " + p.SkipMessage : "");
  const changes = (p.Changes || []).map((c) => h("div", {},
    h("p", {}, h("strong", { text: c.File || c.Aspect || "" }), c.Kind === "FILE_MODE" ? ` mode ${c.Before} → ${c.After}` : c.Created ? " (created)" : ""),
    c.Diff ? h("pre", { text: c.Diff }) : null,
    c.Kind === "CLOUD_STATE" ? h("pre", { text: JSON.stringify(c.Before, null, 2) + "\n→\n" + JSON.stringify(c.After, null, 2) }) : null));
  return h("div", { class: "card" }, head, changes);
}

// ---------- tasks ----------
const REPAIR_STEPS = ["INIT", "IN_BACKUP", "BACKED_UP", "REPAIRING", "REPAIR_SUCCESS", "REPAIR_SUCCESS_VERIFYING", "REPAIR_SUCCESS_VERIFIED"];
const ROLLBACK_STEPS = ["ROLL_BACK_INIT", "ROLL_BACKING", "ROLL_BACKED", "ROLL_BACK_VERIFYING", "ROLL_BACK_VERIFIED"];
const FINAL = /VERIFIED$|UNVERIFIED$|FAIL$|CANCELLED$/;
function steps(t) {
  const path = t.Type === "ROLLBACK" ? ROLLBACK_STEPS : REPAIR_STEPS;
  const at = path.indexOf(t.Status);
  if (at < 0) return null; // no path to show (waiting, cancelled, failed): the badge says it
  return h("ol", { class: "steps", "aria-label": "Progress: " + t.Status },
    path.map((s, i) => h("li", { class: i < at ? "done" : i === at ? (FINAL.test(s) ? "done" : "now") : "", text: s.replace(/_/g, " ").toLowerCase(), "aria-current": i === at ? "step" : null })));
}
async function viewTasks(seq, q) {
  const page = Number(q.get("page")) || 1;
  const list = await api("ListOperationTask", { CurrentPage: page, PageSize: 20 });
  const rows = (list.OperationTasks || []).map((t) => h("tr", {},
    h("td", { class: "hide-narrow", text: time(t.DealTime) }),
    h("td", {}, h("a", { href: "#/tasks/" + t.RootTaskId, text: t.CheckShowName })),
    h("td", {}, h("code", { text: t.InstanceId })), h("td", { text: t.Type }), h("td", {}, statusBadge(t.Status)),
    h("td", { class: "hide-narrow", text: t.ErrorCode || "" })));
  paint(seq, h("h1", { text: "Tasks" }), table(["~Last change", "Item", "Instance", "Type", "Status", "~Error"], rows),
    pager(list.PageInfo, page, (p) => { location.hash = "#/tasks?page=" + p; }));
}
// A root task's page. It is polled while its tasks move: redrawn only when a status changes,
// with the ticked boxes and the focused control kept; every 1.5 s while a step runs, every 10 s
// while tasks only wait (for approval, or for an earlier change), and not after 30 minutes
// without a change (the page says so).
async function viewRoot(seq, rootId, state, poll) {
  const list = await api("ListOperationTask", { RootTaskId: rootId, PageSize: 100 }, poll);
  if (!current(seq)) return;
  const tasks = list.OperationTasks || [];
  const now = Date.now();
  const signature = tasks.map((t) => t.TaskId + ":" + t.Status + ":" + t.SupportRollBack).join(",");
  const busy = tasks.some((t) => !FINAL.test(t.Status));
  const running = tasks.some((t) => !FINAL.test(t.Status) && !["WAIT_APPROVAL", "THROTTLING"].includes(t.Status));
  if (signature !== state.signature) {
    state.signature = signature;
    state.changed = now;
    renderRoot(seq, rootId, tasks, busy, state);
  }
  const quiet = now - state.changed > 30 * 60 * 1000;
  if (busy && quiet) {
    const note = document.getElementById("live");
    if (note) note.textContent = " · no change for 30 minutes: updates paused (reload to resume)";
  } else if (busy) {
    later(seq, () => viewRoot(seq, rootId, state, true), running ? 1500 : 10000);
  }
}
function renderRoot(seq, rootId, tasks, busy, state) {
  const focused = document.activeElement && document.activeElement.id;
  const ticked = new Set([...document.querySelectorAll("input[data-rollback]:checked")].map((b) => b.dataset.rollback));
  const picks = tasks.map((t) => ({ t, box: t.SupportRollBack && can("SubmitOperationTask")
    ? h("input", { type: "checkbox", id: "rb-" + t.TaskId, "data-rollback": t.TaskId, checked: ticked.has(t.TaskId), "aria-label": "Roll back " + t.InstanceId }) : null }));
  const rows = picks.map(({ t, box }) => h("tr", { "data-task": t.TaskId },
    h("td", {}, box || ""), h("td", {}, h("code", { text: t.InstanceId })), h("td", { text: t.Type }),
    h("td", {}, statusBadge(t.Status), steps(t)),
    h("td", { text: [t.ErrorCode, t.ErrorMsg].filter(Boolean).join(": ") }),
    h("td", { class: "hide-narrow", text: time(t.DealTime) })));
  const waiting = tasks.filter((t) => t.Status === "WAIT_APPROVAL");
  // The submitter of a root cannot approve it (the two-person rule): no button that would be refused.
  const mayDecide = waiting.some((t) => !t.Approval || t.Approval.SubmittedBy !== session.keyId);
  const act = async (label, fn) => {
    const buttons = [...document.querySelectorAll(".row button")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await fn();
      flash = label;
      route();
    } catch (err) {
      say(err.message + " (" + err.code + ")", true);
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  const rollback = picks.some((p) => p.box) ? h("button", { type: "button", class: "danger", id: "rollback", text: "Roll back selected", onclick: async (e) => {
    const chosen = picks.filter((p) => p.box && p.box.checked).map((p) => p.t);
    if (!chosen.length) return say("Select the repairs to roll back.", true);
    e.target.disabled = true;
    try {
      const byCheck = new Map();
      for (const t of chosen) (byCheck.get(t.CheckId) || byCheck.set(t.CheckId, []).get(t.CheckId)).push(t);
      let last = null;
      for (const [checkId, ts] of byCheck) {
        last = await api("SubmitOperationTask", { CheckId: checkId, Type: "ROLLBACK", OperationTaskInstances: ts.map((t) => ({ InstanceId: t.InstanceId, RegionId: t.RegionId, TaskId: t.TaskId })) });
      }
      flash = "Rollback submitted.";
      location.hash = "#/tasks/" + last.RootTaskId;
    } catch (err) {
      say(err.message + " (" + err.code + ")", true);
      e.target.disabled = false;
    }
  } }) : null;
  const cancel = busy && can("CancelOperationTask") ? h("button", { type: "button", class: "danger", id: "cancel", text: "Cancel", onclick: () => act("Cancel requested.", () => api("CancelOperationTask", { RootTaskId: rootId })) }) : null;
  const approve = mayDecide && can("ApproveOperationTask") ? h("button", { type: "button", id: "approve", text: "Approve", onclick: () => act("Approved.", () => api("ApproveOperationTask", { RootTaskId: rootId })) }) : null;
  const reject = mayDecide && can("RejectOperationTask") ? h("button", { type: "button", id: "reject", text: "Reject", onclick: () => act("Rejected.", () => api("RejectOperationTask", { RootTaskId: rootId })) }) : null;
  const first = tasks[0] || {};
  paint(seq, h("p", {}, h("a", { href: "#/tasks", id: "back", text: "← Tasks" })),
    h("h1", { text: (first.Type === "ROLLBACK" ? "Rollback: " : "Repair: ") + (first.CheckShowName || rootId) }),
    h("p", { class: "muted" }, "Root task ", h("code", { text: rootId }), h("span", { id: "live", text: busy ? " · updating live" : " · finished" })),
    first.CheckId ? h("p", {}, h("a", { href: "#/items/" + first.CheckId, id: "open-item", text: "Open the check item" })) : null,
    table(["Select", "Instance", "Type", "Status", "Error", "~Last change"], rows),
    h("div", { class: "row" }, rollback, cancel, approve, reject));
  const again = focused && document.getElementById(focused);
  if (again) again.focus();
}

// ---------- assets ----------
async function viewAssets(seq, q) {
  const page = Number(q.get("page")) || 1;
  const [instances, agents, clouds, keys] = await Promise.all([
    api("ListInstances", { CurrentPage: page, PageSize: 20, InstanceIdKey: q.get("q") || "" }),
    api("DescribeAgents", {}).catch(() => ({ Agents: [] })),
    api("DescribeCloudVendorAccountAKList", {}).catch(() => ({ CloudVendorAccountAKs: [] })),
    can("DescribeAccessKeys") ? api("DescribeAccessKeys", {}) : Promise.resolve(null),
  ]);
  const agentOf = new Map((agents.Agents || []).map((a) => [a.InstanceId, a]));
  const rows = (instances.Instances || []).map((i) => {
    const a = agentOf.get(i.InstanceId);
    return h("tr", {}, h("td", {}, h("code", { text: i.InstanceId })), h("td", { text: i.InstanceName }), h("td", { class: "hide-narrow", text: i.RegionId }),
      h("td", { text: i.Vendor }), h("td", { text: a ? (a.Online ? "agent online" : "agent offline") : i.ThroughAgent ? "agent (not enrolled)" : i.Connector }));
  });
  const search = h("input", { id: "a-q", type: "search", value: q.get("q") || "" });
  const sections = [h("h1", { text: "Assets" }),
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); location.hash = "#/assets?q=" + encodeURIComponent(search.value); } },
      field("a-q", "Instance id or name contains", search), h("button", { type: "submit", text: "Search" })),
    h("h2", { text: "Servers and cloud resources" }),
    table(["Instance", "Name", "~Region", "Vendor", "Reached through"], rows),
    pager(instances.PageInfo, page, (p) => { q.set("page", p); location.hash = "#/assets?" + q.toString(); }),
    h("h2", { text: "Agents" }),
    table(["Agent", "Instance", "State", "Version", "Last heard"], (agents.Agents || []).map((a) => h("tr", {},
      h("td", {}, h("code", { text: a.AgentId })), h("td", { text: a.InstanceId }), h("td", {}, statusBadge(a.Online ? "ONLINE" : "OFFLINE")),
      h("td", { text: a.Version || "" }), h("td", { text: time(a.LastSeenAt) })))),
    h("h2", { text: "Cloud accounts" }),
    table(["Id", "Vendor", "AccessKey", "Alias", "State"], (clouds.CloudVendorAccountAKs || []).map((c) => h("tr", {},
      h("td", { text: c.AuthId }), h("td", { text: c.Vendor }), h("td", {}, h("code", { text: c.SecretId })), h("td", { text: c.VendorAuthAlias || "" }),
      h("td", { text: c.ServiceStatus === 0 ? "in use" : c.Message || "exception" }))))];
  if (can("AddCloudVendorAccountAK")) sections.push(addCloudForm());
  if (keys) {
    const acc = keys.Account || {};
    sections.push(h("h2", { text: "Account and keys" }),
      h("p", {}, "Account ", h("code", { text: acc.AccountId }), ` (${acc.Name}) · repairs allowed: ${acc.RepairQuota === null ? "unlimited" : acc.RepairQuota}` +
        ` · instances per submission: ${acc.MaxSubmissionInstances === null ? "no limit" : acc.MaxSubmissionInstances}`),
      table(["AccessKeyId", "Policy", "State", "Created"], (keys.AccessKeys || []).map((k) => h("tr", {},
        h("td", {}, h("code", { text: k.AccessKeyId })), h("td", { text: k.Policy }), h("td", { text: k.Enabled ? "enabled" : "disabled" }), h("td", { text: time(k.CreateTime) })))),
      h("p", { class: "muted", text: "Keys and accounts are created and disabled with `posture keys` and `posture accounts` on the server." }));
  }
  paint(seq, ...sections);
}
function addCloudForm() {
  const f = (id, label, attrs) => { const input = h("input", Object.assign({ id, name: id }, attrs || {})); return [field(id, label, input), input]; };
  const [idL, id] = f("c-id", "AWS access key id", { required: true, autocomplete: "off" });
  const [secretL, secret] = f("c-secret", "Secret access key (never shown again)", { type: "password", required: true, autocomplete: "new-password" });
  const [regionsL, regions] = f("c-regions", "Regions (comma-separated)", { value: "us-east-1", required: true });
  const [aliasL, alias] = f("c-alias", "Alias");
  const out = h("p", { "aria-live": "polite" });
  return h("form", { class: "filters", "aria-label": "Add an AWS account", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api("AddCloudVendorAccountAK", { Vendor: "AWS", SecretId: id.value.trim(), SecretKey: secret.value, VendorAuthAlias: alias.value,
        Regions: regions.value.split(",").map((r) => r.trim()).filter(Boolean) });
      secret.value = "";
      flash = "The AWS account was added; its resources are discovered at the next check run.";
      route();
    } catch (err) { secret.value = ""; out.textContent = err.message + " (" + err.code + ")"; out.className = "fail"; }
  } }, h("h3", { text: "Add an AWS account" }), idL, secretL, regionsL, aliasL, h("button", { type: "submit", text: "Add" }), out);
}

start();
