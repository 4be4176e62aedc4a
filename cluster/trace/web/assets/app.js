// kubeforge trace --web: the steps of a trace, drawn on the diagram workshops teach.
// Plain JavaScript and SVG, no framework: the page is served from the kubeforge binary alone.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 1000;
  const ANIM_MS = 650; // one leg of a pulse: the actor to the API server, the API server to etcd

  // What the page shows, for people and for tests (window.kfTrace).
  const stats = { steps: 0, animated: 0, applied: 0, replayed: 0 };
  window.kfTrace = stats;

  const all = []; // every step received, oldest first (the replay of the server's ring, then live)
  const nodes = new Map(); // name -> {name, role, state, ready}
  const pods = new Map(); // ns/name -> {ns, name, node, phase, restarts, terminating, fresh}
  let lastId = 0;
  let catchingUp = true; // the server's replay: recorded and applied, not animated
  let paused = false;
  let replaying = null; // {timers, queue} while "Replay last minutes" plays
  let selected = null;
  const geo = {}; // box name -> {x, y, w, h}

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, cls) {
    const t = el("text", { x: x, y: y }, parent);
    if (cls) t.setAttribute("class", cls);
    t.textContent = s;
    return t;
  }

  // ---- Who acted: the box a step starts from. ----
  const controllerManagerComponents = new Set(["controller-manager", "garbage-collector", "node-lifecycle-controller",
    "pod-garbage-collector", "generic-garbage-collector"]);
  function category(s) {
    const c = s.component || "";
    if (c === "kubectl") return "kubectl";
    if (c === "kubelet") return "kubelet";
    if (c === "scheduler") return "scheduler";
    if (c === "api-server") return "api-server";
    if (controllerManagerComponents.has(c) || /-controller$/.test(c)) return "controller";
    return "other";
  }
  function who(s) {
    return s.component === "kubelet" && s.node ? "kubelet " + s.node : s.component;
  }
  function pastTense(v) {
    return { create: "created", update: "updated", patch: "patched", delete: "deleted" }[v] || v;
  }
  function qualified(ns, name) { return ns ? ns + "/" + (name || "") : (name || ""); }
  // what mirrors trace.What (the terminal's line).
  function what(s) {
    let obj = (s.kind || s.resource) + " " + qualified(s.namespace, s.name);
    const i = s.resource.indexOf("/");
    const sub = i >= 0 ? s.resource.slice(i + 1) : "";
    let b;
    if (s.resource === "events") b = "event on " + obj + ": " + (s.reason || "");
    else if (sub === "binding") b = "bound " + obj + " to node " + s.node;
    else if (sub === "status") b = pastTense(s.verb) + " status of " + obj;
    else if (sub) b = pastTense(s.verb) + " " + sub + " of " + obj;
    else b = pastTense(s.verb) + " " + obj;
    if (s.cause && s.resource !== "events" && s.verb === "create") b += " (owner " + s.cause.kind + " " + s.cause.name + ")";
    if (s.code) b += " REFUSED " + s.code;
    if (s.message) b += ": " + s.message;
    return b;
  }
  function isSystem(s) {
    return s.namespace === "kube-system" || (s.resource.startsWith("nodes") && !/Ready=(False|Unknown)|unreachable|not-ready/.test(s.message || ""));
  }

  // ---- The diagram. ----
  function box(id, x, y, w, h, title, sub) {
    geo[id] = { x: x, y: y, w: w, h: h };
    const g = el("g", { id: "box-" + id, class: "box", "data-box": id }, $("boxes"));
    el("rect", { class: "frame", x: x, y: y, width: w, height: h }, g);
    text(g, x + 12, y + 22, title, "title");
    if (sub !== undefined) text(g, x + 12, y + 40, sub, "sub").setAttribute("id", "sub-" + id);
    return g;
  }
  function drawStatic() {
    const b = $("boxes");
    b.textContent = "";
    box("kubectl", 20, 20, 160, 56, "kubectl", "you");
    box("other", 20, 92, 160, 48, "other clients", "");
    box("apiserver", 390, 20, 220, 70, "API server", "kube-apiserver");
    box("etcd", 790, 20, 190, 70, "etcd", "the cluster's store");
    box("controller-manager", 190, 160, 260, 56, "controller manager", "kube-controller-manager");
    box("scheduler", 470, 160, 180, 56, "scheduler", "kube-scheduler");
    const k = text(b, 790, 108, "", "etcd-key");
    k.setAttribute("id", "etcd-key");
    // The fixed wires: every component talks to the API server only; it alone talks to etcd.
    const links = el("g", { id: "links" }, b);
    b.insertBefore(links, b.firstChild);
    const api = geo.apiserver;
    for (const id of ["kubectl", "other", "controller-manager", "scheduler"]) {
      const [x1, y1] = edge(geo[id], api);
      const [x2, y2] = edge(api, geo[id]);
      el("line", { class: "link", x1: x1, y1: y1, x2: x2, y2: y2 }, links);
    }
    const [x1, y1] = edge(api, geo.etcd);
    const [x2, y2] = edge(geo.etcd, api);
    el("line", { class: "link", x1: x1, y1: y1, x2: x2, y2: y2 }, links);
  }
  function center(r) { return [r.x + r.w / 2, r.y + r.h / 2]; }
  // edge is where the line from a's centre to b's centre leaves a.
  function edge(a, b) {
    const [ax, ay] = center(a), [bx, by] = center(b);
    const dx = bx - ax, dy = by - ay;
    if (dx === 0 && dy === 0) return [ax, ay];
    const sx = dx !== 0 ? (a.w / 2) / Math.abs(dx) : Infinity;
    const sy = dy !== 0 ? (a.h / 2) / Math.abs(dy) : Infinity;
    const s = Math.min(sx, sy);
    return [ax + dx * s, ay + dy * s];
  }

  function sortedNodes() {
    return [...nodes.values()].sort((a, b) => {
      const ca = a.role === "control-plane" ? 0 : 1, cb = b.role === "control-plane" ? 0 : 1;
      return ca - cb || a.name.localeCompare(b.name, undefined, { numeric: true });
    });
  }
  function podsOn(node) {
    return [...pods.values()].filter((p) => p.node === node).sort((a, b) => a.name.localeCompare(b.name));
  }

  // drawNodes draws the pending tray and one box per node with its kubelet and pods.
  function drawNodes() {
    const g = $("nodes");
    g.textContent = "";
    // Pods not bound yet wait in the scheduler's tray.
    const pending = podsOn("");
    const tx = 670, ty = 130, tw = 310;
    const perTray = 2, pw = (tw - 30) / perTray;
    const trayH = 34 + Math.max(1, Math.ceil(pending.length / perTray)) * 26;
    geo.pending = { x: tx, y: ty, w: tw, h: trayH };
    const tray = el("g", { id: "box-pending", class: "box" }, g);
    el("rect", { class: "frame", x: tx, y: ty, width: tw, height: trayH }, tray);
    text(tray, tx + 10, ty + 18, "pods waiting for a node (Pending)", "sub");
    pending.forEach((p, i) => drawPod(tray, p, tx + 10 + (i % perTray) * (pw + 6), ty + 28 + Math.floor(i / perTray) * 26, pw));

    const list = sortedNodes();
    const cols = Math.max(1, Math.min(list.length, 4));
    const gap = 16;
    const w = (W - 40 - (cols - 1) * gap) / cols;
    const podW = Math.min(150, (w - 26) / 2);
    const perRow = Math.max(1, Math.floor((w - 20 + 6) / (podW + 6)));
    let y = Math.max(240, ty + trayH + 20);
    for (let r = 0; r * cols < list.length; r++) {
      const row = list.slice(r * cols, r * cols + cols);
      let rowH = 0;
      for (const n of row) rowH = Math.max(rowH, 92 + Math.max(1, Math.ceil(podsOn(n.name).length / perRow)) * 26);
      row.forEach((n, i) => {
        const x = 20 + i * (w + gap);
        geo["node:" + n.name] = { x: x, y: y, w: w, h: rowH };
        geo["kubelet:" + n.name] = { x: x + 10, y: y + 34, w: w - 20, h: 26 };
        // The machine's state as the driver says it (running, stopped...), then the node's Ready
        // condition as the node controller last wrote it.
        const stopped = n.state && n.state.toLowerCase() !== "running";
        const down = stopped || n.tainted || (n.ready && n.ready !== "True");
        const ng = el("g", { class: "node" + (down ? " down" : ""), "data-node": n.name, "data-role": n.role || "", id: "node-" + n.name }, g);
        el("rect", { class: "frame", x: x, y: y, width: w, height: rowH }, ng);
        text(ng, x + 12, y + 22, n.name, "title");
        text(ng, x + w - 12, y + 22, n.role === "control-plane" ? "control plane" : "worker", "sub").setAttribute("text-anchor", "end");
        if (down) {
          const why = stopped ? "machine " + n.state : n.ready && n.ready !== "True" ? "NotReady (Ready=" + n.ready + ")" : "tainted: unreachable";
          text(ng, x + 12, y + rowH - 8, why, "node-state");
        }
        el("rect", { class: "kubelet", x: x + 10, y: y + 34, width: w - 20, height: 24 }, ng);
        text(ng, x + 18, y + 51, "kubelet + containerd", "kubelet-label");
        podsOn(n.name).forEach((p, j) => drawPod(ng, p, x + 10 + (j % perRow) * (podW + 6), y + 66 + Math.floor(j / perRow) * 26, podW));
      });
      y += rowH + gap;
    }
    $("diagram").setAttribute("viewBox", "0 0 " + W + " " + Math.max(420, y + 4));
  }
  function drawPod(parent, p, x, y, w) {
    const cls = "pod" + (p.terminating ? " terminating" : "") + (p.fresh ? " new" : "");
    const g = el("g", { class: cls, "data-pod": p.name, "data-namespace": p.ns, "data-node": p.node || "", "data-phase": p.phase || "", "data-restarts": p.restarts || 0 }, parent);
    el("rect", { x: x, y: y, width: w, height: 22 }, g);
    const t = el("title", {}, g);
    t.textContent = qualified(p.ns, p.name) + ": " + (p.phase || "?") + (p.restarts ? ", restarts " + p.restarts : "") + (p.terminating ? ", terminating" : "");
    const maxChars = Math.floor((w - (p.restarts ? 34 : 10)) / 6.2);
    let name = p.name;
    if (name.length > maxChars) name = "…" + name.slice(name.length - maxChars + 1);
    text(g, x + 5, y + 15, name);
    if (p.restarts) text(g, x + w - 5, y + 15, "↻" + p.restarts, "restarts").setAttribute("text-anchor", "end");
  }

  // ---- What a step changes. ----
  function podOf(s) {
    const k = qualified(s.namespace, s.name);
    let p = pods.get(k);
    if (!p) {
      p = { ns: s.namespace || "", name: s.name, node: "", phase: "", restarts: 0, terminating: false, fresh: true };
      pods.set(k, p);
    }
    return p;
  }
  let unknownNodeAsked = 0;
  function nodeSeen(name) {
    if (!name || nodes.has(name)) return;
    nodes.set(name, { name: name, role: "", state: "", ready: "" });
    if (Date.now() - unknownNodeAsked > 2000) {
      unknownNodeAsked = Date.now();
      refreshNodes();
    }
  }
  function apply(s) {
    stats.applied++;
    if (s.code) return; // refused: nothing stored
    const res = s.resource;
    if (res === "pods" && s.verb === "create") {
      const p = podOf(s);
      p.phase = s.phase || "Pending";
      p.fresh = true;
      // A static pod's mirror is created by its node's kubelet, bound already.
      if (s.component === "kubelet" && s.node) { p.node = s.node; nodeSeen(s.node); }
    } else if (res === "pods/binding") {
      const p = podOf(s);
      p.node = s.node;
      p.fresh = true;
      nodeSeen(s.node);
    } else if (res.startsWith("pods") && s.component === "kubelet" && s.verb !== "delete") {
      const p = podOf(s);
      if (s.phase) p.phase = s.phase;
      p.restarts = s.restarts || 0;
      if (!p.node && s.node) { p.node = s.node; nodeSeen(s.node); }
      p.fresh = false;
    } else if (res === "pods" && s.verb === "delete") {
      const k = qualified(s.namespace, s.name);
      // The kubelet's delete (its containers stopped) and the pod GC's force delete remove the
      // pod; anyone else's starts its graceful termination.
      if (s.component === "kubelet" || s.component === "pod-garbage-collector") pods.delete(k);
      else if (pods.has(k)) pods.get(k).terminating = true;
    } else if (res === "pods" && s.phase) {
      const p = podOf(s);
      p.phase = s.phase;
    } else if (res.startsWith("nodes")) {
      const m = /Ready=(True|False|Unknown)/.exec(s.message || "");
      if (s.verb === "create" || s.verb === "delete") refreshNodes();
      if (m && s.name) {
        nodeSeen(s.name);
        const n = nodes.get(s.name);
        if (n) n.ready = m[1];
      }
      // The node controller taints a node it lost (unreachable, not-ready) and lifts the taints
      // once its kubelet reports Ready again (the kubelet's own status writes are not audited).
      const tm = /taints ([^;]*)/.exec(s.message || "");
      if (tm && s.name) {
        nodeSeen(s.name);
        const n = nodes.get(s.name);
        const lost = /node\.kubernetes\.io\/(unreachable|not-ready)/.test(tm[1]);
        if (n) {
          n.tainted = lost;
          if (!lost && n.ready && n.ready !== "True") n.ready = "True";
        }
      }
    } else if (s.component === "kubelet" && s.node) {
      nodeSeen(s.node);
    }
    if (s.component === "kubelet" && s.node) nodeSeen(s.node);
    scheduleDraw();
  }
  let drawQueued = false;
  function scheduleDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      drawNodes();
      for (const p of pods.values()) p.fresh = false;
    });
  }

  // ---- Animation: the actor to the API server, the API server to etcd. ----
  function fromBox(s) {
    switch (category(s)) {
      case "kubectl": return geo.kubectl;
      case "scheduler": return geo.scheduler;
      case "controller": return geo["controller-manager"];
      case "kubelet": return geo["kubelet:" + s.node] || geo.other;
      case "api-server": return null;
      default: return geo.other;
    }
  }
  function flash(id, ms) {
    const e = $(id);
    if (!e) return;
    e.classList.add("active");
    setTimeout(() => e.classList.remove("active"), ms);
  }
  function leg(a, b, cls, label, done) {
    const [x1, y1] = edge(a, b), [x2, y2] = edge(b, a);
    const g = el("g", { class: "pulse " + cls }, $("pulses"));
    el("line", { x1: x1, y1: y1, x2: x2, y2: y2, stroke: "currentColor", "marker-end": "url(#arrowhead)", opacity: "0.35" }, g);
    const dot = el("circle", { r: 7, cx: x1, cy: y1, fill: "currentColor" }, g);
    const t = label ? text(g, x1, y1 - 10, label) : null;
    if (t) t.setAttribute("fill", "currentColor");
    const t0 = performance.now();
    stats.animated++;
    function frame(now) {
      const f = Math.min(1, (now - t0) / ANIM_MS);
      const e = f < 0.5 ? 2 * f * f : 1 - Math.pow(-2 * f + 2, 2) / 2;
      const x = x1 + (x2 - x1) * e, y = y1 + (y2 - y1) * e;
      dot.setAttribute("cx", x);
      dot.setAttribute("cy", y);
      if (t) { t.setAttribute("x", x + 10); t.setAttribute("y", y - 10); }
      if (f < 1) requestAnimationFrame(frame);
      else {
        setTimeout(() => g.remove(), 250);
        if (done) done();
      }
    }
    requestAnimationFrame(frame);
  }
  function shortOp(s) {
    const i = s.resource.indexOf("/");
    if (s.resource === "events") return "event " + (s.reason || "");
    if (i >= 0 && s.resource.slice(i + 1) === "binding") return "bind → " + s.node;
    return s.verb + " " + (s.kind || s.resource).toLowerCase() + (i >= 0 ? "/" + s.resource.slice(i + 1) : "");
  }
  // animate plays s and applies it when the write reaches etcd.
  function animate(s) {
    const from = fromBox(s);
    const api = geo.apiserver;
    const refused = !!s.code;
    const toEtcd = () => {
      flash("box-apiserver", 500);
      if (refused) { apply(s); return; }
      leg(api, geo.etcd, "to-etcd", "", () => {
        flash("box-etcd", 500);
        const k = $("etcd-key");
        k.textContent = (s.etcdKey || "") + (s.resourceVersion ? "  rv " + s.resourceVersion : "");
        apply(s);
      });
    };
    if (s.component === "kubelet" && s.node) flash("node-" + s.node, ANIM_MS);
    if (category(s) === "controller") {
      const sub = $("sub-controller-manager");
      if (sub) sub.textContent = s.component;
    }
    if (category(s) === "other") {
      const sub = $("sub-other");
      if (sub) sub.textContent = s.component;
    }
    if (from) leg(from, api, "to-api" + (refused ? " refused" : ""), shortOp(s), toEtcd);
    else toEtcd();
  }

  // ---- The timeline and the selected step. ----
  function fmtTime(t) {
    const d = new Date(t);
    const p = (n, w) => String(n).padStart(w || 2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }
  function addToTimeline(s, id, fresh) {
    const li = document.createElement("li");
    const d = li.dataset;
    d.id = id; d.kind = category(s); d.component = s.component; d.verb = s.verb; d.resource = s.resource;
    d.namespace = s.namespace || ""; d.name = s.name || ""; d.node = s.node || ""; d.objkind = s.kind || "";
    if (s.reason) d.reason = s.reason;
    if (s.phase) d.phase = s.phase;
    if (s.code) li.classList.add("refused");
    if (fresh) li.classList.add("fresh");
    const t = document.createElement("span"); t.className = "t"; t.textContent = fmtTime(s.time) + "  ";
    const w = document.createElement("span"); w.className = "who"; w.textContent = who(s);
    const x = document.createElement("span"); x.textContent = " " + what(s);
    li.append(t, w, x);
    li.title = what(s);
    li.addEventListener("click", () => select(li, s));
    filterOne(li, s);
    li._step = s;
    const tl = $("timeline");
    const atBottom = tl.scrollTop + tl.clientHeight >= tl.scrollHeight - 30;
    tl.appendChild(li);
    while (tl.children.length > 5000) tl.removeChild(tl.firstChild);
    if (atBottom) tl.scrollTop = tl.scrollHeight;
    $("count").textContent = "(" + tl.children.length + " steps)";
  }
  function filterOne(li, s) {
    const hide = (!$("show-events").checked && s.resource === "events") || (!$("show-system").checked && isSystem(s));
    li.classList.toggle("hidden", hide);
  }
  function refilter() { for (const li of $("timeline").children) filterOne(li, li._step); }
  function select(li, s) {
    if (selected) selected.classList.remove("selected");
    selected = li;
    li.classList.add("selected");
    $("detail-empty").hidden = true;
    const dl = $("detail-fields");
    dl.textContent = "";
    const rows = [
      ["time", new Date(s.time).toISOString()],
      ["who", who(s)],
      ["user", s.actor],
      ["verb", s.verb],
      ["resource", s.resource],
      ["object", (s.kind ? s.kind + " " : "") + qualified(s.namespace, s.name)],
      ["etcd key", s.etcdKey],
      ["resourceVersion", s.resourceVersion || (s.etcdKey && !s.code ? "(the answer carries no object)" : "")],
      ["cause (owner)", s.cause ? s.cause.kind + " " + s.cause.name : ""],
      ["node", s.node],
      ["phase", s.phase],
      ["restarts", s.restarts ? String(s.restarts) : ""],
      ["reason", s.reason],
      ["message", s.message],
      ["refused", s.code ? "HTTP " + s.code : ""],
    ];
    for (const [k, v] of rows) {
      if (!v) continue;
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dd.dataset.field = k;
      dl.append(dt, dd);
    }
  }

  // ---- Steps in. ----
  function onStep(s, id) {
    if (id && id <= lastId) return; // already here (a reconnect resumes after Last-Event-ID)
    if (id) lastId = id;
    stats.steps++;
    all.push(s);
    while (all.length > 5000) all.shift();
    addToTimeline(s, id, !catchingUp);
    if (replaying) { replaying.queue.push(s); return; }
    if (catchingUp || paused || document.hidden) apply(s);
    else animate(s);
  }

  // replay plays the kept steps again, animated, their gaps shortened to at most 1 s.
  function replay() {
    if (replaying) return stopReplay();
    const steps = all.slice();
    if (!steps.length) return;
    pods.clear();
    for (const n of nodes.values()) n.ready = "";
    scheduleDraw();
    replaying = { timers: [], queue: [] };
    $("replay").textContent = "Stop replay";
    let at = 0, prev = null;
    steps.forEach((s, i) => {
      if (prev) at += Math.min(1000, Math.max(60, new Date(s.time) - new Date(prev.time)));
      prev = s;
      replaying.timers.push(setTimeout(() => {
        stats.replayed++;
        highlight(i, steps.length);
        animate(s);
        if (i === steps.length - 1) setTimeout(stopReplay, ANIM_MS * 2 + 100);
      }, at));
    });
  }
  function highlight(i, n) {
    const tl = $("timeline");
    const li = tl.children[tl.children.length - n + i];
    if (li) { li.classList.remove("fresh"); void li.offsetWidth; li.classList.add("fresh"); li.scrollIntoView({ block: "nearest" }); }
  }
  function stopReplay() {
    if (!replaying) return;
    for (const t of replaying.timers) clearTimeout(t);
    const q = replaying.queue;
    replaying = null;
    $("replay").textContent = "Replay last minutes";
    for (const s of q) apply(s);
  }

  function refreshNodes() {
    return fetch("/api/nodes").then((r) => r.json()).then((a) => {
      for (const n of a.nodes || []) {
        const old = nodes.get(n.name) || { ready: "" };
        nodes.set(n.name, { name: n.name, role: n.role, state: n.state, ready: old.ready, tainted: old.tainted });
      }
      scheduleDraw();
    }).catch(() => {});
  }

  function setStatus(st) {
    const e = $("status");
    e.dataset.phase = st.phase;
    const words = {
      connecting: "connecting to the cluster…",
      following: "live",
      waiting: "cluster stopped, waiting",
      disconnected: "kubeforge trace is not answering (ended?)",
    }[st.phase] || st.phase;
    e.textContent = words;
    e.title = st.message || "";
  }

  function connect() {
    const es = new EventSource("/events");
    es.onopen = () => { catchingUp = true; };
    es.onmessage = (e) => onStep(JSON.parse(e.data), Number(e.lastEventId) || 0);
    es.addEventListener("state", (e) => setStatus(JSON.parse(e.data)));
    es.addEventListener("replayed", () => { catchingUp = false; });
    es.addEventListener("nodes", () => refreshNodes());
    es.onerror = () => { if (es.readyState !== EventSource.OPEN) setStatus({ phase: "disconnected" }); };
  }

  function init() {
    drawStatic();
    drawNodes();
    fetch("/api/info").then((r) => r.json()).then((i) => {
      $("cluster").textContent = i.cluster ? "— cluster " + i.cluster : "";
      $("scope").textContent = i.scope || "";
      document.title = "kubeforge trace " + (i.cluster || "");
    }).catch(() => {});
    $("replay").addEventListener("click", replay);
    $("pause").addEventListener("click", () => {
      paused = !paused;
      $("pause").textContent = paused ? "Animate" : "Pause";
    });
    $("show-events").addEventListener("change", refilter);
    $("show-system").addEventListener("change", refilter);
    refreshNodes().then(connect);
    setInterval(refreshNodes, 15000);
  }
  init();
})();
