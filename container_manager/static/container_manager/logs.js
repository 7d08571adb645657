/* Follow a job's output on the log page: ask the JSON endpoint every few
   seconds while the job is not finished. Text is set with textContent, so
   output containing HTML is shown as text, never run. */
(function () {
  "use strict";
  var root = document.querySelector(".cm-logs");
  if (!root) { return; }
  var url = root.getAttribute("data-poll-url");
  var interval = parseInt(root.getAttribute("data-poll-interval"), 10) || 2000;
  var ids = ["status", "progress", "step", "live", "message", "stdout", "stderr"];
  var el = {};
  ids.forEach(function (name) { el[name] = document.getElementById("cm-log-" + name); });

  function atBottom(pre) {
    return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 20;
  }

  function setText(pre, text) {
    if (pre.textContent === text) { return; }
    var follow = atBottom(pre);
    pre.textContent = text;
    if (follow) { pre.scrollTop = pre.scrollHeight; }
  }

  function show(data) {
    el.status.textContent = data.status_label;
    el.status.className = "cm-badge cm-status-" + String(data.status).replace(/[^a-z_]/g, "");
    el.progress.textContent = String(data.progress);
    el.step.textContent = data.current_step || "";
    el.message.textContent = data.message || "";
    el.message.hidden = !data.message;
    setText(el.stdout, data.stdout || "");
    setText(el.stderr, data.stderr || "");
    el.live.textContent = data.is_active ? (data.is_live ? "following" : "waiting") : "finished";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        show(data);
        if (data.is_active) { window.setTimeout(poll, interval); }
      })
      .catch(function (error) {
        el.message.textContent = "Could not refresh the output (" + error.message + "); retrying.";
        el.message.hidden = false;
        window.setTimeout(poll, interval * 2);
      });
  }

  ["stdout", "stderr"].forEach(function (name) { el[name].scrollTop = el[name].scrollHeight; });
  if (root.getAttribute("data-active") === "1") { window.setTimeout(poll, interval); }
})();
