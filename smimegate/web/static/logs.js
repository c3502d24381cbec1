// Live tail of the Logs page (smimegate/web/pages/logs.py): every few seconds ask for the
// lines after the newest one shown and add them at the top. Rows are built with textContent:
// nothing from a log line is ever parsed as HTML. Served by us; the CSP allows no inline script.
"use strict";
(function () {
  var box = document.getElementById("tail");
  var toggle = document.getElementById("tail-toggle");
  var status = document.getElementById("tail-status");
  var rows = document.getElementById("log-rows");
  if (!box || !toggle || !rows) { return; }
  var after = Number(box.dataset.after) || 0;
  var every = (Number(box.dataset.seconds) || 3) * 1000;
  var timer = null;

  function cell(text, code) {
    var td = document.createElement("td");
    if (code) {
      var c = document.createElement("code");
      c.textContent = text;
      td.appendChild(c);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function add(lines) {
    var empty = document.getElementById("log-empty");
    if (lines.length && empty) { empty.remove(); }
    lines.forEach(function (l) {
      var tr = document.createElement("tr");
      tr.className = "new";
      tr.appendChild(cell(l.when));
      tr.appendChild(cell(l.queue_id));
      tr.appendChild(cell(l.direction));
      tr.appendChild(cell(l.result));
      tr.appendChild(cell(l.line, true));
      rows.insertBefore(tr, rows.firstChild);
    });
  }

  function poll() {
    var url = box.dataset.url + (box.dataset.url.indexOf("?") < 0 ? "?" : "&") + "after=" + after;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (!r.ok || r.redirected) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        add(data.lines);
        after = data.last;
        status.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        stop();
        status.textContent = "live tail stopped: " + e.message + " (reload the page)";
      });
  }

  function start() {
    timer = window.setInterval(poll, every);
    toggle.textContent = "Live tail: on";
    toggle.setAttribute("aria-pressed", "true");
    poll();
  }

  function stop() {
    if (timer !== null) { window.clearInterval(timer); }
    timer = null;
    toggle.textContent = "Live tail: off";
    toggle.setAttribute("aria-pressed", "false");
  }

  toggle.hidden = false;
  toggle.setAttribute("aria-pressed", "false");
  toggle.addEventListener("click", function () { if (timer === null) { start(); } else { stop(); } });
}());
