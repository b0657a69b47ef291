"""The dashboard's one page (HTML, CSS and script in one string, no files to ship).

The script polls the JSON API of ``node/dashboard.py`` about once a second: the tree,
the events after the last one shown, and the open agent's page (``#/agent/NAME``). It
builds every element with ``textContent``: what agents put in their state, messages and
logs is shown, never run. The page carries no data and needs no token: its script
takes the token from the address's fragment (``#token=T``, which browsers never send to
a server), keeps it in the tab's ``sessionStorage`` (per origin: host and port), drops it
from the address bar, and sends it as ``Authorization: Bearer`` with every request.
``__LOOKS__`` is replaced by the status -> look table of
``dashboard.look_of``, so Python decides how a status is painted.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>beamish dashboard</title>
<style>
:root { --bg:#fbfbfa; --fg:#1d1d1b; --mute:#6b6b66; --line:#e2e2dc; --up:#1f8a4c;
  --asleep:#5865a8; --moving:#c07a00; --down:#7d7d78; --failed:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:1em; align-items:baseline; padding:.6em 1em;
  border-bottom:1px solid var(--line); background:#fff; }
header h1 { font-size:1.1em; margin:0; }
header .node { color:var(--mute); }
#conn { margin-left:auto; font-size:.9em; }
#conn.lost { color:var(--failed); font-weight:600; }
main { display:grid; grid-template-columns: minmax(16em, 1fr) 2.2fr; gap:0; }
section { padding: .8em 1em; }
#left { border-right:1px solid var(--line); min-height: calc(100vh - 3em); }
h2 { font-size:1em; margin:.2em 0 .5em; }
h3 { font-size:.95em; margin:1.2em 0 .4em; }
ul.tree, ul.tree ul { list-style:none; margin:0; padding-left:1.1em; }
ul.tree { padding-left:0; }
.row { display:flex; gap:.5em; align-items:baseline; padding:1px 0; }
.row a { color:inherit; text-decoration:none; }
.row a:hover { text-decoration:underline; }
.sup > .row { font-weight:600; }
.status { font-size:.8em; padding:0 .45em; border-radius:.7em; color:#fff; background:var(--down); }
.look-up .status, .status.look-up { background:var(--up); }
.look-asleep .status, .status.look-asleep { background:var(--asleep); }
.look-moving .status, .status.look-moving { background:var(--moving); }
.look-failed .status, .status.look-failed { background:var(--failed); }
.restarts, .pid, .muted { color:var(--mute); font-size:.85em; }
.selected > .row { background:#eef2ff; }
pre { background:#fff; border:1px solid var(--line); padding:.5em; overflow:auto;
  max-height: 22em; margin:0; font-size:12.5px; }
table { border-collapse:collapse; width:100%; }
td, th { text-align:left; border-bottom:1px solid var(--line); padding:.25em .4em;
  vertical-align:top; font-size:.92em; }
dl.facts { display:grid; grid-template-columns: max-content 1fr; gap:.1em 1em; margin:0; }
dl.facts dt { color:var(--mute); }
dl.facts dd { margin:0; }
ol.events { list-style:none; padding:0; margin:0; max-height: 40vh; overflow:auto; }
ol.events li { padding:1px 0; border-bottom:1px dotted var(--line); font-size:.9em; }
.kind { font-weight:600; }
.kind-exited, .kind-failed, .kind-escalated { color:var(--failed); }
.kind-restarted { color:var(--moving); }
.kind-spawned, .kind-started { color:var(--up); }
button { font:inherit; padding:.1em .7em; cursor:pointer; }
.error { color:var(--failed); }
</style></head>
<body>
<header><h1>beamish</h1><span class="node" id="node"></span><span id="conn">connecting...</span></header>
<main>
<section id="left"><h2>Supervision tree</h2><ul class="tree" id="tree"></ul>
<h3>Events</h3><ol class="events" id="events"></ol></section>
<section id="right"><div id="agent"><p class="muted">Choose an agent in the tree to see its
state, mailbox, failures, dead letters and log.</p></div></section>
</main>
<script>
"use strict";
const LOOKS = __LOOKS__;
const look = s => "look-" + (LOOKS[s] || "unknown");
const TOKEN_KEY = "beamish-dashboard-token";
let lastSeq = -1, agentName = null, agentData = null, timer = null, note = "";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined)
    e.append(typeof kid === "string" ? document.createTextNode(kid) : kid);
  return e;
}
function takeToken() {
  const m = location.hash.match(/^#token=([^&]*)/);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
}
function withToken(headers) {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? Object.assign({"Authorization": "Bearer " + t}, headers) : headers;
}
const NO_TOKEN = "this page needs the dashboard's token: open the link that `beamish dashboard`"
  + " printed, or that the node wrote in its node.log (http://.../#token=...)";
async function getJSON(url) {
  const r = await fetch(url, {credentials: "omit", cache: "no-store", headers: withToken({})});
  if (r.status === 401) throw new Error(NO_TOKEN);
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error(body && body.error ? body.error.message : r.status + " " + r.statusText);
  return body;
}
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }
function pretty(v) { return JSON.stringify(v, null, 2); }
function status(s) { return el("span", {class: "status " + look(s), text: s}); }

function treeNode(n) {
  if (n.kind === "supervisor") {
    const kids = el("ul");
    for (const c of n.children || []) kids.append(treeNode(c));
    if (n.more) kids.append(el("li", {class: "muted", text: "... " + n.more + " more agents"}));
    return el("li", {class: "sup " + look(n.status), "data-testid": "sup-" + n.name,
                     "data-status": n.status},
      el("div", {class: "row"}, el("span", {text: n.name}), status(n.status),
         el("span", {class: "muted", text: n.strategy || ""}),
         n.restarts ? el("span", {class: "restarts", text: "restarted " + n.restarts}) : null),
      kids);
  }
  const li = el("li", {class: "agent " + look(n.status) + (n.name === agentName ? " selected" : ""),
                       "data-testid": "agent-" + n.name, "data-status": n.status,
                       "data-restarts": String(n.restarts)},
    el("div", {class: "row"},
       el("a", {href: "#/agent/" + encodeURIComponent(n.name), text: n.name}), status(n.status),
       el("span", {class: "restarts", text: "restarts " + n.restarts}),
       n.pid ? el("span", {class: "pid", text: "pid " + n.pid}) : null));
  return li;
}

function eventItem(e) {
  return el("li", {"data-seq": String(e.seq)},
    el("span", {class: "muted", text: when(e.time) + " "}),
    el("span", {class: "kind kind-" + e.kind, text: e.kind}), " ",
    el("a", {href: "#/agent/" + encodeURIComponent(e.name), text: e.name}),
    e.reason ? el("span", {class: "muted", text: " " + e.reason}) : null);
}

function facts(pairs) {
  const dl = el("dl", {class: "facts"});
  for (const [k, v, id] of pairs) dl.append(el("dt", {text: k}), el("dd", {id: id, text: String(v)}));
  return dl;
}

async function resend(seq, button) {
  button.disabled = true;
  try {
    const r = await fetch("/api/resend", {method: "POST", credentials: "omit",
      headers: withToken({"Content-Type": "application/json", "X-Beamish-Dashboard": "1"}),
      body: JSON.stringify({name: agentName, seq: seq})});
    if (r.status === 401) throw new Error(NO_TOKEN);
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : String(r.status));
    note = "dead letter #" + seq + " resent as message #" + body.seq;
  } catch (err) {
    note = "resend failed: " + err.message;
  }
  await refreshAgent();
}

function renderAgent(d) {
  const i = d.info, box = document.getElementById("agent");
  const f = i.last_failure;
  const dead = el("tbody");
  for (const x of d.dead_letters) {
    const b = el("button", {class: "resend", "data-seq": String(x.seq), text: "Resend"});
    b.addEventListener("click", () => resend(x.seq, b));
    dead.append(el("tr", {"data-testid": "dead-" + x.seq},
      el("td", {text: "#" + x.seq}), el("td", {}, el("code", {text: JSON.stringify(x.msg)})),
      el("td", {text: x.failure ? (x.failure.exc_type || x.failure.kind) + ": " + x.failure.message : ""}),
      el("td", {text: when(x.time)}), el("td", {}, b)));
  }
  const evs = el("ol", {class: "events", id: "agent-events"});
  for (const e of d.events) evs.append(eventItem(e));
  box.replaceChildren(
    el("h2", {}, el("span", {id: "agent-name", text: i.name + " "}),
       el("span", {id: "agent-status", class: "status " + look(i.status), text: i.status})),
    facts([["class", i.cls, "agent-class"], ["supervisor", i.supervisor, "agent-supervisor"],
           ["pid", i.pid || "-", "agent-pid"], ["restarts", i.restarts, "agent-restarts"],
           ["mailbox", i.mailbox_depth, "agent-mailbox"], ["handled", i.processed, "agent-handled"],
           ["memory", i.rss_bytes ? (i.rss_bytes / 1048576).toFixed(1) + " MiB" : "-", "agent-rss"],
           ["state version", d.state.version, "agent-version"]]),
    el("h3", {text: "State"}), el("pre", {id: "agent-state", text: pretty(d.state.state)}),
    el("h3", {text: "Last failure"}),
    f ? el("div", {id: "agent-failure"},
          el("p", {}, el("b", {text: f.kind}), " " + (f.exc_type ? f.exc_type + ": " : "") + f.message
             + (f.attempt > 1 ? " (attempt " + f.attempt + " at its message)" : "")),
          f.traceback ? el("pre", {id: "agent-traceback", text: f.traceback}) : null)
      : el("p", {id: "agent-failure", class: "muted", text: "none"}),
    el("h3", {text: "Dead letters (" + d.dead_letters.length + ")"}),
    d.dead_letters.length ? el("table", {id: "dead-letters"},
      el("thead", {}, el("tr", {}, el("th", {text: "seq"}), el("th", {text: "message"}),
                          el("th", {text: "failure"}), el("th", {text: "set aside"}), el("th"))),
      dead) : el("p", {class: "muted", text: "none"}),
    el("p", {id: "resend-result", class: "muted", text: note}),
    el("h3", {text: "Recent events"}), evs,
    el("h3", {text: d.log === null ? "Log" : "Log (last " + d.log.length + " lines)"}),
    d.log === null
      ? el("p", {id: "agent-log", class: "muted", text: "log not available over TCP: agent logs"
                 + " are files on the node's machine (beamish logs " + i.name + " there)"})
      : el("pre", {id: "agent-log", text: d.log.join("\\n")}));
}

async function refreshAgent() {
  if (!agentName) return;
  try {
    agentData = await getJSON("/api/agent?name=" + encodeURIComponent(agentName)
                              + "&near=" + Math.max(lastSeq, 0));
    renderAgent(agentData);
  } catch (err) {
    document.getElementById("agent").replaceChildren(
      el("p", {class: "error", id: "agent-error", text: agentName + ": " + err.message}));
  }
}

async function refresh() {
  try {
    const t = await getJSON("/api/tree");
    document.getElementById("tree").replaceChildren(treeNode(t.tree));
    if (t.node) document.getElementById("node").textContent =
      t.node.dir + " (pid " + t.node.pid + ", up " + Math.round(t.node.uptime) + " s)";
    for (let more = true; more;) {
      const p = await getJSON("/api/events?after=" + lastSeq);
      const list = document.getElementById("events");
      for (const e of p.events) list.prepend(eventItem(e));
      while (list.children.length > 500) list.lastChild.remove();
      lastSeq = Math.max(lastSeq, p.after, 0);
      more = p.more;
    }
    await refreshAgent();
    const c = document.getElementById("conn");
    c.className = ""; c.textContent = "live, updated " + new Date().toLocaleTimeString();
  } catch (err) {
    const c = document.getElementById("conn");
    c.className = "lost"; c.textContent = "cannot reach the node: " + err.message;
  }
  timer = setTimeout(refresh, 1000);
}

function route() {
  takeToken();
  const m = location.hash.match(/^#\\/agent\\/(.+)$/);
  agentName = m ? decodeURIComponent(m[1]) : null;
  note = "";
  if (!agentName) return;
  document.getElementById("agent").replaceChildren(el("p", {class: "muted", text: "loading " + agentName + "..."}));
  refreshAgent();
}
window.addEventListener("hashchange", route);
route();
refresh();
</script>
</body></html>
"""
