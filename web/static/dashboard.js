/* Live dashboard: server-sent events from pbx's /events resource (no framework).
 * Accepts named events "registrations", "calls", "trunks", "health" (data: JSON list/object) and a plain
 * message whose JSON holds any of those keys. Falls back to the server-rendered state. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  var stateEl = document.getElementById("live-state");
  if (!root || !window.EventSource) { return; }

  function cell(row, label, text) {
    var td = document.createElement("td");
    td.setAttribute("data-label", label);
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
  }
  function duration(s) {
    s = Math.max(0, Math.floor(Number(s) || 0));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }
  function bytes(n) {
    n = Number(n); if (!isFinite(n)) { return ""; }
    var units = ["B", "kB", "MB", "GB", "TB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? n.toFixed(1) + " " + units[i] : n.toFixed(0) + " B";
  }
  function fill(id, rows, empty, columns) {
    var body = document.getElementById(id);
    var count = document.getElementById(id + "-count");
    if (!body || !Array.isArray(rows)) { return; }
    body.textContent = "";
    if (count) { count.textContent = String(rows.length); }
    if (!rows.length) {
      var tr = document.createElement("tr"); tr.className = "empty";
      var td = document.createElement("td"); td.colSpan = columns.length; td.textContent = empty;
      tr.appendChild(td); body.appendChild(tr); return;
    }
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      columns.forEach(function (c) { cell(tr, c[0], c[1](item)); });
      body.appendChild(tr);
    });
  }
  var handlers = {
    registrations: function (rows) {
      fill("registrations", rows, "No phone is registered.", [
        ["Extension", function (r) { return r.extension; }],
        ["Device", function (r) { return r.user_agent; }],
        ["Address", function (r) { return r.address; }],
        ["Transport", function (r) { return r.transport; }],
        ["Expires in", function (r) { return Math.round(Number(r.expires_in) || 0) + " s"; }]
      ]);
    },
    calls: function (rows) {
      fill("calls", rows, "No calls in progress.", [
        ["Caller", function (c) { return c.caller; }],
        ["Dialled", function (c) { return c.dialled; }],
        ["State", function (c) { return c.state; }],
        ["Duration", function (c) { return duration(c.duration); }],
        ["Codecs", function (c) { return (c.codecs || []).join(", "); }]
      ]);
    },
    trunks: function (rows) {
      fill("trunks", rows, "No trunk.", [
        ["Trunk", function (t) { return t.name; }],
        ["State", function (t) { return t.state; }],
        ["Since", function (t) { return t.since ? new Date(t.since * 1000).toLocaleString() : ""; }],
        ["Server", function (t) { return (t.reachable || "") + (t.rtt_ms != null ? " (" + t.rtt_ms + " ms)" : ""); }],
        ["Detail", function (t) { return t.reason || (t.expires ? "expires in " + t.expires + " s" : ""); }]
      ]);
    },
    health: function (h) {
      if (!h) { return; }
      document.querySelectorAll("#health dd[data-key]").forEach(function (dd) {
        var v = h[dd.getAttribute("data-key")];
        if (v == null) { return; }
        var f = dd.getAttribute("data-format");
        dd.textContent = f === "seconds" ? duration(v) : f === "bytes" ? bytes(v)
          : f === "percent" ? Number(v).toFixed(1) + " %" : f === "ms" ? Number(v).toFixed(1) + " ms" : String(v);
      });
    }
  };
  function apply(name, text) {
    var data;
    try { data = JSON.parse(text); } catch (e) { return; }
    if (name && handlers[name]) { handlers[name](data); return; }
    Object.keys(handlers).forEach(function (k) { if (data && k in data) { handlers[k](data[k]); } });
    if (data && data.active_calls) { handlers.calls(data.active_calls); }
  }
  var source = new EventSource(root.getAttribute("data-events"));
  source.onopen = function () { stateEl.textContent = "(live)"; stateEl.setAttribute("data-state", "live"); };
  source.onerror = function () { stateEl.textContent = "(reconnecting…)"; stateEl.setAttribute("data-state", "down"); };
  source.onmessage = function (ev) { apply(null, ev.data); };
  Object.keys(handlers).forEach(function (name) {
    source.addEventListener(name, function (ev) { apply(name, ev.data); });
  });
  source.addEventListener("active_calls", function (ev) { apply("calls", ev.data); });
})();
