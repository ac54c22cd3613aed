// The System page: the last hour as SVG (from /api/usage/history, redrawn every sample)
// and the doctor's checks (from /api/system/doctor; "Check again" POSTs for a new run).
// Text goes in with textContent only: names are shown as text, never as markup.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf", "#ff7f0e"];
  const WIDTH = 640, HEIGHT = 180, LEFT = 56, RIGHT = 8, TOP = 8, BOTTOM = 22;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // One chart: SERIES [{name, color, points [[t, value]], width}] over the last hour.
  function chart(title, series, top, now, format) {
    const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "usage-chart",
                            "aria-label": title, width: "100%", preserveAspectRatio: "none" });
    svg.appendChild(el("title", {}, title));
    const x = (t) => LEFT + (WIDTH - LEFT - RIGHT) * (1 - (now - t) / 3600);
    const y = (v) => TOP + (HEIGHT - TOP - BOTTOM) * (1 - v / top);
    for (const frac of [0, 0.5, 1]) {
      svg.appendChild(el("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(top * frac), y2: y(top * frac),
                                   stroke: "#ddd" }));
      svg.appendChild(el("text", { x: LEFT - 4, y: y(top * frac) + 4, "text-anchor": "end",
                                   "font-size": 11, fill: "#333" }, format(top * frac)));
    }
    [["60 min ago", 3600, "start"], ["30 min ago", 1800, "middle"], ["now", 0, "end"]].forEach(
      ([label, ago, anchor]) => svg.appendChild(el("text", { x: x(now - ago), y: HEIGHT - 6,
        "text-anchor": anchor, "font-size": 11, fill: "#333" }, label)));
    for (const s of series) {
      const kept = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      const last = kept.length ? kept[kept.length - 1][1] : "";
      const max = kept.reduce((m, p) => Math.max(m, p[1]), 0);
      const line = el("polyline", {
        points: kept.map((p) => `${x(p[0]).toFixed(1)},${y(Math.min(p[1], top)).toFixed(1)}`).join(" "),
        fill: "none", stroke: s.color, "stroke-width": s.width || 1.5,
        "data-user": s.name, "data-last": last, "data-max": max, "data-count": kept.length,
      });
      svg.appendChild(line);
    }
    return svg;
  }

  function legend(series) {
    const list = document.createElement("ul");
    list.className = "list-inline small usage-legend";
    for (const s of series) {
      const item = document.createElement("li");
      item.className = "list-inline-item";
      const swatch = document.createElement("span");
      swatch.className = "usage-swatch";
      swatch.style.backgroundColor = s.color;
      swatch.setAttribute("aria-hidden", "true");
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(" " + s.label));
      list.appendChild(item);
    }
    return list;
  }

  async function drawUsage(box) {
    const data = await window.teamhubConsole.getJSON(box.getAttribute("data-history-url"));
    const now = Date.now() / 1000;
    const names = Object.keys(data.users);
    const series = (i) => names.map((name, k) => ({ name, label: name, color: COLORS[k % COLORS.length],
      points: data.users[name].map((p) => [p[0], p[i]]) }));
    const machine = (i) => ({ name: "", label: "whole machine", color: "#000", width: 2.5,
                              points: data.machine.map((p) => [p[0], p[i]]) });
    const cpu = [machine(1), ...series(1)];
    const mem = [machine(2), ...series(2)];
    const u = window.teamhubUsage;
    const parts = [
      chart("CPU in use over the last hour (CPUs)", cpu, data.cpus || 1, now, (v) => v.toFixed(1)),
      legend(cpu),
      chart("Memory in use over the last hour", mem, data.memory_total || 1, now, (v) => u.bytes(Math.round(v))),
    ];
    box.replaceChildren(...parts);
    box.setAttribute("data-sampled", String(data.machine.length));
    return data;
  }

  function check(c) {
    const item = document.createElement("li");
    item.className = "mb-2";
    item.setAttribute("data-check", c.name);
    const mark = document.createElement("span");
    const state = !c.ok ? "FAIL" : c.warning ? "warn" : "ok";
    mark.className = "badge me-2 " + (state === "ok" ? "bg-success" : state === "warn" ? "bg-warning text-dark" : "bg-danger");
    mark.textContent = state;
    const name = document.createElement("strong");
    name.textContent = c.name + ": ";
    item.append(mark, name, document.createTextNode(c.detail));
    if ((!c.ok || c.warning) && c.fix) {
      const fix = document.createElement("div");
      fix.className = "small ms-4";
      fix.textContent = "fix: " + c.fix;
      item.appendChild(fix);
    }
    return item;
  }

  async function doctor(again) {
    const box = document.getElementById("system-doctor");
    const status = document.getElementById("system-doctor-status");
    const list = document.getElementById("system-doctor-results");
    const url = box.getAttribute("data-doctor-url");
    status.textContent = "Running the checks…";
    try {
      const data = again ? await window.teamhubConsole.postJSON(url) : await window.teamhubConsole.getJSON(url);
      const failed = data.checks.filter((c) => !c.ok).length;
      list.replaceChildren(...data.checks.map(check));
      status.textContent = `${data.checks.length - failed} passed, ${failed} failed ` +
        `(checked ${new Date(data.at * 1000).toLocaleString()})`;
      box.setAttribute("data-done", "1");
    } catch (err) {
      status.textContent = "The checks could not run: " + err.message;
    }
  }

  function start() {
    const box = document.getElementById("system-usage");
    const draw = () => drawUsage(box).catch((err) => {
      box.textContent = "The usage history could not be loaded: " + err.message;
    });
    draw();
    window.setInterval(draw, 10000);
    doctor(false);
    document.getElementById("system-doctor-again").addEventListener("click", () => doctor(true));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
