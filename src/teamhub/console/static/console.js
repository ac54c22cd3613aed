// What every console page shares. Loaded as a file: the console's Content-Security-Policy
// runs no inline script of ours, and pages use no inline event handlers.
"use strict";

window.teamhubConsole = (function () {
  const xsrf = () => (window.jhdata && window.jhdata.xsrf_token) || "";

  // GET a console data endpoint (JSON). The XSRF header is required on GETs too.
  async function getJSON(url) {
    const reply = await fetch(url, {
      headers: { "X-XSRFToken": xsrf(), Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!reply.ok) throw new Error(`${reply.status} ${reply.statusText}`);
    return reply.json();
  }

  // POST to a console data endpoint; BODY is sent as JSON. Returns the JSON answer.
  async function postJSON(url, body) {
    const reply = await fetch(url, {
      method: "POST",
      headers: { "X-XSRFToken": xsrf(), "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body || {}),
    });
    const data = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error(data.message || `${reply.status} ${reply.statusText}`);
    return data;
  }

  // Read a streamed answer line by line (build logs): ONLINE(line) for each line.
  async function streamLines(url, init, onLine) {
    const reply = await fetch(url, Object.assign({ credentials: "same-origin" }, init, {
      headers: Object.assign({ "X-XSRFToken": xsrf() }, (init || {}).headers),
    }));
    if (!reply.ok || !reply.body) throw new Error(`${reply.status} ${reply.statusText}`);
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
      const lines = rest.split("\n");
      rest = lines.pop();
      lines.forEach(onLine);
    }
    if (rest) onLine(rest);
  }

  // Forms with data-confirm="question" ask before they are sent.
  document.addEventListener("submit", (event) => {
    const question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  return { getJSON, postJSON, streamLines, xsrf };
})();
