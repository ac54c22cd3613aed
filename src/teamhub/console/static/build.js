// Forms with class "env-build" send their fields as JSON to their data-url and show the
// build's output as it comes (newline-delimited JSON: {"line"} ..., then {"done", "ok"}).
"use strict";

(function () {
  const log = document.getElementById("build-log");
  const status = document.getElementById("build-status");
  const reload = document.getElementById("build-reload");
  const section = document.getElementById("build");
  let running = false;

  function show(kind, text) {
    status.className = `alert alert-${kind} mt-2`;
    status.textContent = text;
  }

  async function build(form) {
    const fields = {};
    new FormData(form).forEach((value, key) => { fields[key] = value; });
    running = true;
    section.hidden = false;
    reload.hidden = true;
    log.textContent = "";
    show("info", `building ${fields.name || ""}…`);
    document.body.setAttribute("data-build", "running");
    let end = null;
    try {
      await window.teamhubConsole.streamLines(form.getAttribute("data-url"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(fields),
      }, (text) => {
        if (!text) return;
        const item = JSON.parse(text);
        if (item.done) { end = item; return; }
        log.textContent += item.line + "\n";
        log.scrollTop = log.scrollHeight;
      });
    } catch (err) {
      end = { ok: false, error: String(err.message || err) };
    }
    end = end || { ok: false, error: "the connection ended before the build did" };
    show(end.ok ? "success" : "danger", end.ok ? end.message : end.error);
    reload.hidden = false;
    running = false;
    document.body.setAttribute("data-build", end.ok ? "ok" : "failed");
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.classList || !form.classList.contains("env-build")) return;
    if (event.defaultPrevented) return; // its confirmation was declined
    event.preventDefault();
    if (!running) build(form);
  });
})();
