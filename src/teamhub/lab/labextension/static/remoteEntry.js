// teamhub's JupyterLab extension, written by hand: it needs no shared module, so it is
// the container JupyterLab loads a prebuilt extension as (window._JUPYTERLAB[name] with
// init() and get(module)), without a build step.
//
// Kernel specs: JupyterLab asks the server for them once a minute (or at a reload), so a
// personal env made in the terminal took up to a minute to reach the launcher. While the
// page is visible, this asks teamhub's server extension every 2 s for a fingerprint of the
// kernel list (a few bytes) and refreshes the kernel specs only when it changed.
(function () {
  "use strict";
  var NAME = "@teamhub/lab";
  var INTERVAL_MS = 2000;

  var kernelspecsRefresh = {
    id: "@teamhub/lab:kernelspecs-refresh",
    description: "Refreshes the launcher's kernels when an environment appears or goes.",
    autoStart: true,
    activate: function (app) {
      var specs = app.serviceManager.kernelspecs;
      var settings = app.serviceManager.serverSettings;
      var url = settings.baseUrl + "teamhub/api/kernelspecs-stamp";
      var last = null;
      var busy = false;
      function tick() {
        if (busy || document.visibilityState !== "visible") {
          return;
        }
        busy = true;
        var headers = settings.token ? { Authorization: "token " + settings.token } : {};
        fetch(url, { credentials: "same-origin", headers: headers })
          .then(function (reply) { return reply.ok ? reply.json() : null; })
          .then(function (body) {
            if (!body) {
              return null;
            }
            var changed = last !== null && body.stamp !== last;
            last = body.stamp;
            return changed ? specs.refreshSpecs() : null;
          })
          .catch(function () { /* the server is restarting or gone: try again later */ })
          .then(function () { busy = false; });
      }
      window.setInterval(tick, INTERVAL_MS);
    }
  };

  var modules = {
    "./extension": function () {
      return { __esModule: true, default: [kernelspecsRefresh] };
    }
  };

  var registry = (window._JUPYTERLAB = window._JUPYTERLAB || {});
  registry[NAME] = {
    init: function () { /* nothing shared to take or give */ },
    get: function (module) {
      if (!(module in modules)) {
        return Promise.reject(new Error(NAME + " has no module " + module));
      }
      return Promise.resolve(modules[module]);
    }
  };
})();
