// Ponder playground: chat through /v1/chat/completions (streamed, with return_trace) and draw the search live.
// Plain JavaScript, no build step. With --api-key the browser's Basic credentials (password = key) go along.
"use strict";

const $ = (id) => document.getElementById(id);
const turns = [];
let tree = null;

async function getJSON(path) {
  const resp = await fetch(path);
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

function option(select, value, label) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = label || value;
  select.appendChild(el);
}

async function init() {
  const [models, strategies, verifiers] = await Promise.all([
    getJSON("/v1/models"), getJSON("/v1/strategies"), getJSON("/v1/verifiers"),
  ]);
  models.data.forEach((m) => option($("model"), m.id));
  strategies.data.forEach((s) => option($("strategy"), s.name, s.needs.length ? `${s.name} (${s.needs.join(", ")})` : s.name));
  verifiers.data.forEach((v) => option($("verifier"), v.name, `${v.name} (${v.kind})`));
  $("verifier").dataset.default = verifiers.default || "";
}

function requestBody() {
  const body = {
    model: $("model").value,
    messages: turns.map(({ role, content }) => ({ role, content })),
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number($("max_tokens").value) || undefined,
    temperature: $("temperature").value === "" ? undefined : Number($("temperature").value),
  };
  if ($("strategy").value) body.strategy = $("strategy").value;
  if ($("verifier").value) body.verifier = $("verifier").value;
  if ($("effort").value) body.reasoning_effort = $("effort").value;
  const budget = {};
  if ($("max_samples").value) budget.max_samples = Number($("max_samples").value);
  if ($("max_tokens_budget").value) budget.max_tokens = Number($("max_tokens_budget").value);
  if ($("max_seconds").value) budget.max_seconds = Number($("max_seconds").value);
  if (Object.keys(budget).length) body.budget = budget;
  // A search sends its structured events (return_trace); plain decoding streams its tokens as they come.
  const searched = (body.strategy && body.strategy !== "none") ||
    (body.reasoning_effort && !["none", "minimal"].includes(body.reasoning_effort));
  if (searched) body.return_trace = true;
  const options = $("options").value.trim();
  if (options && options !== "{}") body.strategy_options = JSON.parse(options);
  return body;
}

function bubble(role) {
  const el = document.createElement("div");
  el.className = `msg ${role}`;
  const reasoning = document.createElement("div");
  reasoning.className = "reasoning";
  reasoning.hidden = true;
  const content = document.createElement("div");
  el.append(reasoning, content);
  $("messages").appendChild(el);
  return { el, reasoning, content };
}

// ---- the search view: stats, log, candidates, tree ----

function resetSearch() {
  $("log").textContent = "";
  $("candidates").textContent = "";
  tree = { root: { key: "", label: "question", score: null, children: [] }, byKey: new Map(), byMcts: new Map() };
  tree.byKey.set("", tree.root);
  drawTree();
}

function showStats(ponder, usage) {
  const spent = (ponder && ponder.spent) || {};
  $("stat-samples").textContent = spent.samples ?? "-";
  $("stat-tokens").textContent = usage ? usage.completion_tokens : spent.tokens ?? "-";
  $("stat-seconds").textContent = spent.seconds != null ? spent.seconds.toFixed(2) : "-";
  $("stat-strategy").textContent = (ponder && ponder.strategy) || "-";
}

function score(value) {
  if (value == null) return "";
  const v = Number(value);
  return v !== 0 && Math.abs(v) < 0.01 ? v.toExponential(1) : v.toFixed(2); // a PRM's tiny probabilities stay visible
}

function addCandidate(c) {
  const row = document.createElement("tr");
  [c.id, c.answer ?? "", score(c.score), c.tokens ?? "", c.finish_reason ?? ""].forEach((v) => {
    const td = document.createElement("td");
    td.textContent = v;
    row.appendChild(td);
  });
  $("candidates").appendChild(row);
}

function child(parent, key, label) {
  let node = tree.byKey.get(key);
  if (!node) {
    node = { key, label, score: null, children: [] };
    tree.byKey.set(key, node);
    parent.children.push(node);
  }
  return node;
}

function addPath(steps, value) {
  let node = tree.root;
  let key = "";
  for (const step of steps) {
    key += "\u241e" + step;
    node = child(node, key, step);
  }
  if (node !== tree.root) node.score = value;
}

// One structured event of the search (the `ponder.event` of a progress chunk).
function onEvent(event) {
  if (event.kind === "candidate") addCandidate(event);
  for (const path of event.kept || event.paths || []) addPath(path.steps || [], path.score ?? path.value);
  if (event.children) { // MCTS: a node expanded into children with values
    const parent = tree.byMcts.get(event.node) || tree.root;
    for (const kid of event.children) {
      const node = child(parent, `mcts:${kid.id}`, kid.step);
      node.score = kid.value;
      tree.byMcts.set(kid.id, node);
    }
  }
  drawTree();
}

function color(value) {
  if (value == null) return "#8c959f";
  const v = Math.max(0, Math.min(1, value));
  return `hsl(${Math.round(120 * v)}, 65%, 42%)`;
}

function drawTree() {
  const svg = $("tree");
  svg.textContent = "";
  const dx = 150, dy = 24;
  let row = 0;
  const place = (node, depth) => {
    node.x = 10 + depth * dx;
    if (!node.children.length) node.y = 16 + dy * row++;
    else {
      node.children.forEach((k) => place(k, depth + 1));
      node.y = (node.children[0].y + node.children[node.children.length - 1].y) / 2;
    }
  };
  place(tree.root, 0);
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
    if (text != null) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  let width = 0;
  const walk = (node) => {
    width = Math.max(width, node.x + dx);
    for (const kid of node.children) {
      add("line", { x1: node.x, y1: node.y, x2: kid.x, y2: kid.y, stroke: "#d0d7de" });
      walk(kid);
    }
    add("circle", { cx: node.x, cy: node.y, r: 5, fill: color(node.score), class: "node" });
    const label = node.label.length > 16 ? node.label.slice(0, 15) + "\u2026" : node.label;
    add("text", { x: node.x + 8, y: node.y + 4, "font-size": 11 }, `${label} ${score(node.score)}`.trim())
      .appendChild(document.createElementNS(ns, "title")).textContent = node.label;
  };
  walk(tree.root);
  svg.setAttribute("width", width);
  svg.setAttribute("height", Math.max(120, 16 + dy * row));
}

// ---- one turn ----

async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!block.startsWith("data: ")) continue;
      const data = block.slice(6);
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

async function send(text) {
  turns.push({ role: "user", content: text });
  bubble("user").content.textContent = text;
  const view = bubble("assistant");
  resetSearch();
  const resp = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(requestBody()),
  });
  if (!resp.ok) {
    const err = await resp.json().catch(() => ({ error: { message: resp.statusText } }));
    view.content.innerHTML = "";
    view.content.className = "error";
    view.content.textContent = err.error.message;
    turns.pop();
    return;
  }
  let answer = "";
  for await (const chunk of sseEvents(resp)) {
    if (chunk.error) {
      view.content.className = "error";
      view.content.textContent = chunk.error.message;
      break;
    }
    if (chunk.ponder && chunk.ponder.event) onEvent(chunk.ponder.event);
    const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].index === 0 ? chunk.choices[0].delta : null;
    if (delta && delta.reasoning_content) {
      view.reasoning.hidden = false;
      view.reasoning.textContent += delta.reasoning_content;
      $("log").textContent += delta.reasoning_content;
      $("log").scrollTop = $("log").scrollHeight;
    }
    if (delta && delta.content) view.content.textContent = answer += delta.content;
    if (delta && delta.tool_calls) {
      view.content.textContent += delta.tool_calls.map((c) => `${c.function.name}(${c.function.arguments})`).join("\n");
    }
    if (chunk.usage) {
      showStats(chunk.ponder, chunk.usage);
      const trace = chunk.ponder && chunk.ponder.trace;
      if (trace && !$("candidates").children.length) trace.candidates.forEach(addCandidate);
    }
  }
  turns.push({ role: "assistant", content: answer });
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  $("send").disabled = true;
  send(text).catch((err) => bubble("assistant").content.textContent = String(err))
    .finally(() => { $("send").disabled = false; });
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("strategy").addEventListener("change", () => { $("options").value = "{}"; }); // options belong to a strategy
$("clear").addEventListener("click", () => { turns.length = 0; $("messages").textContent = ""; resetSearch(); });

resetSearch();
init().catch((err) => { $("messages").textContent = `Could not load the server's models: ${err}`; });
