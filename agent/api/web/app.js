// edgeagent web view: plain JavaScript, no build step, no external requests.
// Data: /api/v1 (JSON, Bearer token) and /ws (live readings and alerts; the
// token travels as the WebSocket subprotocol "token.<token>").
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const T0 = performance.now();
  const perf = (window.__edge = { firstData: null, firstLive: null, liveCount: 0 });
  const SPARK = 60; // points per sparkline
  const RANGES = { "15m": 15 * 60e3, "6h": 6 * 3600e3, "7d": 7 * 86400e3 };
  const state = { sensors: new Map(), sel: null, range: "15m", series: null, alerts: [], ws: null, backoff: 500 };

  // Token: from #token=… (then removed from the address bar), else localStorage.
  let token = localStorage.getItem("edgeagent.token") || "";
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    token = decodeURIComponent(m[1]);
    localStorage.setItem("edgeagent.token", token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  class AuthError extends Error {}
  async function api(path) {
    const h = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers: h, cache: "no-store" });
    if (r.status === 401) throw new AuthError("token rejected");
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((body.field ? body.field + ": " : "") + (body.error || r.status));
    return body;
  }

  function askToken(msg) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-err").textContent = msg || "";
    $("token").focus();
  }
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    localStorage.setItem("edgeagent.token", token);
    start();
  });

  // ---- formatting ----
  const fmtNum = (v) => (v == null || !isFinite(v) ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
  const fmtBytes = (b) => (b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + " GiB" : b >= 1 << 20 ? (b / (1 << 20)).toFixed(1) + " MiB" : (b / 1024).toFixed(0) + " KiB");
  const fmtTime = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; };

  // ---- status ----
  async function loadStatus() {
    const s = await api("/api/v1/status");
    $("gw").textContent = s.gateway || "edgeagent";
    document.title = (s.gateway || "edgeagent") + " · edgeagent";
    const up = $("st-uplink");
    up.textContent = "uplink " + s.uplink.state;
    up.className = "pill " + (s.uplink.state === "connected" ? "ok" : s.uplink.state === "disabled" ? "" : "bad");
    $("st-outbox").textContent = "outbox " + s.outbox.depth;
    $("st-outbox").className = "pill " + (s.outbox.depth > 0 ? "bad" : "");
    $("st-disk").textContent = "disk " + fmtBytes(s.db_bytes || 0);
    $("st-rate").textContent = s.sensors + " sensors · " + s.readings.processed + " readings · " + s.open_alerts + " alerting";
    const bad = (s.ingest && s.ingest.unsupported_templates) || [];
    const tpl = $("st-templates");
    tpl.hidden = bad.length === 0;
    tpl.textContent = bad.length + " unsupported template" + (bad.length === 1 ? "" : "s");
    tpl.title = bad.map((u) => u.sensor + ": " + u.template + " (" + u.why + ")").join("\n");
  }

  // ---- sensor list ----
  function row(info) {
    const li = el("li", "sensor");
    li.dataset.sensor = info.id;
    const name = el("div", "name", info.id);
    const badge = el("span", "badge", "ALERT");
    badge.hidden = true;
    name.appendChild(badge);
    const val = el("div", "val");
    const kind = el("div", "kind", info.kind || "");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 28");
    svg.setAttribute("preserveAspectRatio", "none");
    const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    svg.appendChild(pl);
    li.append(name, val, kind, svg);
    li.addEventListener("click", () => select(info.id));
    return { li, val, badge, pl, spark: [], info };
  }

  function upsert(info) {
    let s = state.sensors.get(info.id);
    if (!s) {
      s = row(info);
      state.sensors.set(info.id, s);
      placeRow(s);
    }
    s.info = Object.assign(s.info, info);
    paint(s);
    return s;
  }

  function placeRow(s) {
    const ul = $("sensors");
    const after = [...ul.children].find((li) => li.dataset.sensor > s.info.id);
    ul.insertBefore(s.li, after || null);
  }

  function paint(s) {
    s.val.textContent = fmtNum(s.info.value) + (s.info.unit ? " " + s.info.unit : "");
    s.val.dataset.value = s.info.value;
    s.badge.hidden = !s.info.alerting;
    s.li.classList.toggle("alerting", !!s.info.alerting);
    s.li.dataset.alerting = s.info.alerting ? "true" : "false";
    applyFilter(s);
    drawSpark(s);
  }

  function drawSpark(s) {
    const p = s.spark;
    if (p.length < 2) return;
    let lo = Infinity, hi = -Infinity;
    for (const v of p) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const span = hi - lo || 1;
    s.pl.setAttribute("points", p.map((v, i) => ((i / (p.length - 1)) * 100).toFixed(1) + "," + (26 - ((v - lo) / span) * 24).toFixed(1)).join(" "));
  }

  function applyFilter(s) {
    const q = $("filter").value.trim();
    s.li.hidden = (q && !s.info.id.startsWith(q)) || ($("only-alerting").checked && !s.info.alerting);
  }
  $("filter").addEventListener("input", () => state.sensors.forEach(applyFilter));
  $("only-alerting").addEventListener("change", () => state.sensors.forEach(applyFilter));

  async function loadSensors() {
    const r = await api("/api/v1/sensors");
    for (const info of r.sensors) upsert(info);
    if (perf.firstData == null && r.sensors.length) perf.firstData = Math.round(performance.now() - T0);
    if (!state.sel && r.sensors.length) select(r.sensors[0].id);
    // Seed sparklines from the last 15 minutes (a few sensors at a time).
    const todo = r.sensors.filter((i) => state.sensors.get(i.id).spark.length < 2);
    for (let i = 0; i < todo.length; i += 4) {
      await Promise.all(todo.slice(i, i + 4).map(async (info) => {
        try {
          const h = await api("/api/v1/sensors/" + encodeURIComponent(info.id) + "/readings?limit=" + SPARK * 4);
          const s = state.sensors.get(info.id);
          const pts = h.points || [];
          const step = Math.max(1, Math.floor(pts.length / SPARK));
          s.spark = pts.filter((_, k) => k % step === 0).map((q) => q.v).concat(s.spark).slice(-SPARK);
          drawSpark(s);
        } catch (e) { /* history may be unavailable: the sparkline fills live */ }
      }));
    }
  }

  // ---- chart ----
  function select(id) {
    state.sel = id;
    state.sensors.forEach((s) => s.li.classList.toggle("sel", s.info.id === id));
    $("chart-title").textContent = id;
    loadSeries();
  }

  document.querySelectorAll(".ranges button").forEach((b) => b.addEventListener("click", () => {
    state.range = b.dataset.range;
    document.querySelectorAll(".ranges button").forEach((x) => x.classList.toggle("on", x === b));
    loadSeries();
  }));

  async function loadSeries() {
    const id = state.sel;
    if (!id) return;
    const to = Date.now(), from = to - RANGES[state.range];
    const enc = encodeURIComponent(id);
    try {
      const [h, al] = await Promise.all([
        api(`/api/v1/sensors/${enc}/readings?from=${from}&to=${to}&limit=10000`),
        api(`/api/v1/alerts?sensor=${enc}&since=${from}&limit=200`),
      ]);
      if (state.sel !== id) return;
      const pts = h.resolution === "raw"
        ? (h.points || []).map((p) => ({ t: p.t, v: p.v, lo: p.band ? p.band[0] : null, hi: p.band ? p.band[1] : null }))
        : (h.rollups || []).map((r) => ({ t: r.t, v: r.mean, min: r.min, max: r.max }));
      state.series = { id, from, to, res: h.resolution, pts, alerts: al.alerts };
      $("chart-info").textContent = `${pts.length} ${h.resolution === "raw" ? "readings" : "1-minute rollups (min–max shaded)"}${h.truncated ? " (truncated)" : ""} · ${al.alerts.length} alerts in range`;
    } catch (e) {
      if (e instanceof AuthError) return askToken(e.message);
      state.series = { id, from, to, res: "raw", pts: [], alerts: [] };
      $("chart-info").textContent = "history unavailable: " + e.message;
    }
    draw();
  }

  function draw() {
    const c = $("chart"), ser = state.series;
    const dpr = window.devicePixelRatio || 1;
    const W = c.clientWidth, H = c.clientHeight;
    if (!W || !H) return;
    c.width = W * dpr; c.height = H * dpr;
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const css = getComputedStyle(document.documentElement);
    const col = (n) => css.getPropertyValue(n).trim();
    c.dataset.points = ser ? ser.pts.length : 0;
    if (!ser || !ser.pts.length) {
      g.fillStyle = col("--mut"); g.font = "13px system-ui"; g.fillText("no data in this range yet", 12, 24);
      return;
    }
    const L = 48, R = 8, Tp = 8, B = 22;
    const now = Date.now(), t0 = now - RANGES[state.range];
    let lo = Infinity, hi = -Infinity;
    for (const p of ser.pts) {
      for (const v of [p.v, p.lo, p.hi, p.min, p.max]) if (v != null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const x = (t) => L + ((t - t0) / (now - t0)) * (W - L - R);
    const y = (v) => Tp + (1 - (v - lo) / (hi - lo)) * (H - Tp - B);
    // grid and labels
    g.strokeStyle = col("--line"); g.fillStyle = col("--mut"); g.font = "11px system-ui"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4, yy = y(v);
      g.beginPath(); g.moveTo(L, yy); g.lineTo(W - R, yy); g.stroke();
      g.fillText(fmtNum(v), 4, yy + 4);
    }
    const nx = W < 500 ? 2 : 4;
    for (let i = 0; i <= nx; i++) {
      const t = t0 + ((now - t0) * i) / nx;
      const d = new Date(t);
      const lab = state.range === "7d" ? d.toLocaleDateString([], { month: "short", day: "numeric" }) : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      g.fillText(lab, Math.min(x(t) - 14, W - R - 40), H - 6);
    }
    // expected band (raw) or min-max envelope (rollups)
    const area = (top, bot) => {
      const ps = ser.pts.filter((p) => p[top] != null && p[bot] != null);
      if (ps.length < 2) return;
      g.beginPath();
      ps.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[top])) : g.moveTo(x(p.t), y(p[top]))));
      for (let i = ps.length - 1; i >= 0; i--) g.lineTo(x(ps[i].t), y(ps[i][bot]));
      g.closePath(); g.fill();
    };
    g.fillStyle = col("--band");
    area("hi", "lo"); area("max", "min");
    // alert markers
    for (const a of ser.alerts || []) {
      const t = Date.parse(a.started_at);
      if (!(t >= t0)) continue;
      g.strokeStyle = col("--bad"); g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(x(t), Tp); g.lineTo(x(t), H - B); g.stroke(); g.setLineDash([]);
      g.fillStyle = col("--bad"); g.beginPath(); g.arc(x(t), Tp + 4, 4, 0, 7); g.fill();
    }
    // values
    g.strokeStyle = col("--acc"); g.lineWidth = 1.5; g.beginPath();
    ser.pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.stroke();
    c.dataset.drawn = String(Date.now());
  }
  window.addEventListener("resize", () => draw());

  // ---- alerts panel ----
  function alertItem(a) {
    const li = el("li", a.state);
    li.dataset.alert = a.id;
    li.append(el("div", "", `${a.sensor} · ${a.state} · ${a.detector}`), el("div", "reason", a.reason),
      el("div", "meta", `value ${fmtNum(a.value)}${a.unit ? " " + a.unit : ""} · started ${new Date(a.started_at).toLocaleString()}`));
    li.addEventListener("click", () => select(a.sensor));
    return li;
  }
  function renderAlerts() {
    const ul = $("alerts");
    ul.replaceChildren(...state.alerts.slice(0, 20).map(alertItem));
    if (!state.alerts.length) ul.append(el("li", "resolved", "no alerts"));
  }
  async function loadAlerts() {
    const r = await api("/api/v1/alerts?limit=20");
    state.alerts = r.alerts;
    renderAlerts();
  }

  // ---- live stream ----
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const subs = ["edgeagent.v1"];
    if (token) subs.push("token." + token);
    const ws = new WebSocket(`${proto}//${location.host}/ws?rate=2`, subs);
    state.ws = ws;
    ws.onopen = () => { state.backoff = 500; $("st-live").className = "pill ok"; };
    ws.onclose = () => {
      $("st-live").className = "pill off";
      if (state.ws !== ws) return;
      setTimeout(connect, state.backoff);
      state.backoff = Math.min(state.backoff * 2, 15000);
    };
    ws.onmessage = (ev) => {
      // One frame carries one or more JSON messages, newline-separated.
      for (const line of ev.data.split("\n")) {
        const m = JSON.parse(line);
        if (m.type === "reading") live(m.reading);
        else if (m.type === "alert") liveAlert(m.alert);
      }
    };
  }

  function live(r) {
    perf.liveCount++;
    if (perf.firstLive == null) perf.firstLive = Math.round(performance.now() - T0);
    const s = upsert({ id: r.sensor, kind: r.kind, unit: r.unit, value: r.v, time: new Date(r.t).toISOString(), alerting: state.sensors.get(r.sensor)?.info.alerting || false });
    s.spark.push(r.v);
    if (s.spark.length > SPARK) s.spark.shift();
    drawSpark(s);
    const ser = state.series;
    if (ser && ser.id === r.sensor) {
      if (ser.res === "raw") ser.pts.push({ t: r.t, v: r.v, lo: r.band ? r.band[0] : null, hi: r.band ? r.band[1] : null });
      else {
        const last = ser.pts[ser.pts.length - 1], start = r.t - (r.t % 60000);
        if (last && last.t === start) { last.v = r.v; last.min = Math.min(last.min, r.v); last.max = Math.max(last.max, r.v); }
        else ser.pts.push({ t: start, v: r.v, min: r.v, max: r.v });
      }
      const cut = Date.now() - RANGES[state.range];
      while (ser.pts.length && ser.pts[0].t < cut) ser.pts.shift();
      scheduleDraw();
    }
  }
  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }

  function liveAlert(a) {
    const open = a.state === "firing" || a.state === "flapping";
    const s = state.sensors.get(a.sensor);
    if (s) { s.info.alerting = open || (a.state === "pending" && s.info.alerting); paint(s); }
    state.alerts = [a].concat(state.alerts.filter((x) => x.id !== a.id));
    renderAlerts();
    if (state.series && state.series.id === a.sensor) {
      state.series.alerts = [a].concat(state.series.alerts.filter((x) => x.id !== a.id));
      scheduleDraw();
    }
  }

  // ---- start ----
  let timers = [];
  async function start() {
    timers.forEach(clearInterval);
    timers = [];
    try {
      await loadStatus();
    } catch (e) {
      if (e instanceof AuthError) return askToken(token ? "That token was rejected." : "");
      $("login-err").textContent = e.message;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    const guard = (f) => () => f().catch((e) => { if (e instanceof AuthError) askToken(e.message); });
    guard(loadSensors)();
    guard(loadAlerts)();
    if (state.ws) { const old = state.ws; state.ws = null; old.close(); }
    connect();
    timers.push(setInterval(guard(loadStatus), 5000), setInterval(guard(loadSensors), 30000));
  }
  start();
})();
