// teamhub's JupyterLab extension, written by hand: it needs no shared module, so it is
// the container JupyterLab loads a prebuilt extension as (window._JUPYTERLAB[name] with
// init() and get(module)), without a build step.
//
// Kernel specs: JupyterLab asks the server for them once a minute (or at a reload), so a
// personal env made in the terminal took up to a minute to reach the launcher. While the
// page is visible, this asks teamhub's server extension every 2 s for a fingerprint of the
// kernel list (a few bytes) and refreshes the kernel specs only when it changed.
//
// Warm parents: once the pointer (or the keyboard focus) rests on a kernel's launcher
// card, a notebook in the file browser or a link to a notebook in rendered Markdown, a
// notebook's path is typed in File › Open from Path, or a kernel is chosen in the kernel
// dialog, this tells the server that a kernel of it is about to be started, and the
// server starts that environment's warm parent while the hand goes to click
// (teamhub.envs.warm_ahead).
(function () {
  "use strict";
  var NAME = "@teamhub/lab";
  var INTERVAL_MS = 2000;
  var REST_MS = 100; // a pointer passing over a card on its way elsewhere says nothing
  var RESEND_MS = 30000;
  var OPEN_PATH_PLACEHOLDER = "/path/relative/to/jlab/root";

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

  var warmParentHint = {
    id: "@teamhub/lab:warm-parent-hint",
    description: "Starts a kernel's warm parent when the pointer rests on its launcher " +
      "card, on a notebook in the file browser or on a link to a notebook, a notebook's " +
      "path is typed in Open from Path, or it is chosen in the kernel dialog.",
    autoStart: true,
    activate: function (app) {
      var specs = app.serviceManager.kernelspecs;
      var settings = app.serviceManager.serverSettings;
      var url = settings.baseUrl + "teamhub/api/warm-parents";
      var sentAt = {};
      var card = null;
      var timer = null;
      // A kernel's launcher card is titled with its display name (Lab's launcher).
      function kernelOf(element) {
        var all = specs.specs ? specs.specs.kernelspecs : null;
        var title = element.getAttribute("title");
        if (!all || !title) {
          return null;
        }
        for (var name in all) {
          if (all[name] && all[name].display_name === title) {
            return name;
          }
        }
        return null;
      }
      // A notebook in a file browser: its path, from the browser's folder (the widget
      // whose node holds the item) and the item's name.
      function notebookOf(item) {
        var text = item.querySelector(".jp-DirListing-itemText");
        var name = text ? text.textContent : "";
        if (item.getAttribute("data-file-type") !== "notebook" || !name) {
          return null;
        }
        var node = item.closest(".jp-FileBrowser");
        var browser = null;
        // JupyterLab's file browser is a widget of the left area; a browser found in
        // neither area (another front end's, nested in a widget of its own) sends nothing.
        ["left", "main"].forEach(function (area) {
          try {
            for (var widget of app.shell.widgets(area)) {
              if (node && widget.node === node && widget.model) {
                browser = widget;
              }
            }
          } catch (error) { /* a shell without that area */ }
        });
        var folder = browser ? browser.model.path || "" : null;
        if (folder === null || folder.indexOf(":") >= 0) {
          return null;  // an unknown browser, or another drive than the server's files
        }
        return folder ? folder + "/" + name : name;
      }
      // A link to a notebook in rendered Markdown (a notebook's cell, a Markdown preview):
      // JupyterLab points a local link's href at the server's files/PATH.
      function linkedNotebook(anchor) {
        var target = null;
        var files = null;
        try {
          target = new URL(anchor.href, window.location.href);
          files = new URL(settings.baseUrl + "files/", window.location.href);
        } catch (error) {
          return null;
        }
        if (target.origin !== files.origin || target.pathname.indexOf(files.pathname) !== 0) {
          return null;  // another server's page, or not one of this server's files
        }
        var path = null;
        try {
          path = decodeURIComponent(target.pathname.slice(files.pathname.length));
        } catch (error) {
          return null;
        }
        return /\.ipynb$/.test(path) ? path : null;
      }
      function send(key, body) {
        var now = Date.now();
        if (sentAt[key] && now - sentAt[key] < RESEND_MS) {
          return;
        }
        sentAt[key] = now;
        var headers = { "Content-Type": "application/json" };
        if (settings.token) {
          headers.Authorization = "token " + settings.token;
        }
        fetch(url, { method: "POST", credentials: "same-origin", headers: headers,
                     body: JSON.stringify(body) })
          .catch(function () { /* only a hint */ });
      }
      function hint(name) {
        if (name) {
          send("kernel:" + name, { kernel: name });
        }
      }
      function hintNotebook(path) {
        if (path) {
          send("notebook:" + path, { notebook: path });
        }
      }
      function restOn(target) {
        var found = target && target.closest ?
          target.closest(".jp-LauncherCard, .jp-DirListing-item, " +
                         ".jp-RenderedHTMLCommon a[href]") : null;
        if (found === card) {
          return;
        }
        window.clearTimeout(timer);
        card = found;
        if (found) {
          timer = window.setTimeout(function () {
            if (found.tagName === "A") {
              hintNotebook(linkedNotebook(found));
            } else if (found.classList.contains("jp-DirListing-item")) {
              hintNotebook(notebookOf(found));
            } else {
              hint(kernelOf(found));
            }
          }, REST_MS);
        }
      }
      // File › Open from Path: a notebook's path typed there (and left to rest) is a
      // notebook about to open. The dialog is known by its placeholder, which JupyterLab
      // does not translate; a dialog not recognised sends nothing.
      var typing = null;
      function typedIn(target) {
        if (!target || target.tagName !== "INPUT" || !target.closest ||
            !target.closest(".jp-Dialog") ||
            target.getAttribute("placeholder") !== OPEN_PATH_PLACEHOLDER) {
          return;
        }
        window.clearTimeout(typing);
        var path = target.value.trim().replace(/^\/+/, "");
        if (/\.ipynb$/.test(path) && path.indexOf(":") < 0) {
          typing = window.setTimeout(function () { hintNotebook(path); }, REST_MS);
        }
      }
      // The kernel dialog (Change Kernel, or a notebook without one): an option chosen
      // there is a kernel about to start, once "Select" is clicked.
      function chosenIn(target) {
        if (!target || target.tagName !== "SELECT" || !target.closest ||
            !target.closest(".jp-Dialog")) {
          return;
        }
        var choice = null;
        try {
          choice = JSON.parse(target.value);
        } catch (error) {
          return;
        }
        var all = specs.specs ? specs.specs.kernelspecs : null;
        // {"id": ...} is a running kernel to connect to: nothing starts.
        if (choice && !choice.id && typeof choice.name === "string" && all &&
            all[choice.name]) {
          hint(choice.name);
        }
      }
      document.addEventListener("pointerover", function (event) { restOn(event.target); }, true);
      document.addEventListener("focusin", function (event) { restOn(event.target); }, true);
      document.addEventListener("change", function (event) { chosenIn(event.target); }, true);
      document.addEventListener("input", function (event) { typedIn(event.target); }, true);
    }
  };

  var modules = {
    "./extension": function () {
      return { __esModule: true, default: [kernelspecsRefresh, warmParentHint] };
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
