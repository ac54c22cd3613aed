// Usage cells: every element with data-usage-user="NAME" and data-usage-field (cpu |
// memory | cpu_limit | memory_limit | home) shows that figure of NAME's, from the console's
// /api/usage/now, written for people; data-usage-value keeps the raw number (empty: none).
// Cells added later: call teamhubUsage.fill(). The figures refresh every 15 seconds.
"use strict";

window.teamhubUsage = (function () {
  const base = (window.jhdata && window.jhdata.base_url) || "/hub/";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];

  function bytes(n) {
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? `${n} bytes` : `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
  }

  function cpus(n) {
    const text = n < 10 ? n.toFixed(2).replace(/\.?0+$/, "") || "0" : n.toFixed(1);
    return `${text} CPU${text === "1" ? "" : "s"}`;
  }

  // The text of FIELD for RECORD (one user's entry of /api/usage/now).
  function format(field, record) {
    if (!record) return "unknown";
    const value = record[field];
    if (field === "cpu_limit" || field === "memory_limit") {
      if (value === null || value === undefined) return "no limit";
      return field === "cpu_limit" ? cpus(value) : bytes(value);
    }
    if (field === "home") return value === null || value === undefined ? "not measured yet" : bytes(value);
    if (!record.running) return "not running";
    if (value === null || value === undefined) return "measuring…";
    return field === "cpu" ? cpus(value) : bytes(value);
  }

  async function fill(root) {
    const cells = Array.from((root || document).querySelectorAll("[data-usage-user][data-usage-field]"));
    if (!cells.length) return {};
    const names = Array.from(new Set(cells.map((c) => c.getAttribute("data-usage-user"))));
    const query = names.map((n) => "user=" + encodeURIComponent(n)).join("&");
    const data = await window.teamhubConsole.getJSON(`${base}teamhub/console/api/usage/now?${query}`);
    for (const cell of cells) {
      const record = data[cell.getAttribute("data-usage-user")];
      const field = cell.getAttribute("data-usage-field");
      cell.textContent = format(field, record);
      const value = record ? record[field] : null;
      cell.setAttribute("data-usage-value", value === null || value === undefined ? "" : String(value));
    }
    return data;
  }

  function start() {
    const run = () => fill().catch((err) => console.warn("usage cells:", err));
    run();
    window.setInterval(run, 15000);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  return { fill, format, bytes, cpus };
})();
