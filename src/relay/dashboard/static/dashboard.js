// The run page's live event log: an EventSource on the dashboard's own stream of the run.
// The server ends the stream after the run's final event and answers 204 to a resume after
// it, so the browser stops reconnecting on its own.
(function () {
  "use strict";
  function watch(log) {
    var state = document.getElementById("stream-state");
    var source = new EventSource(log.dataset.src);
    source.onopen = function () { state.textContent = "live"; };
    source.addEventListener("run_event", function (message) {
      var item = document.createElement("li");
      var name = "";
      try { name = JSON.parse(message.data).event || ""; } catch (e) { name = "?"; }
      item.className = "event event-" + name;
      item.textContent = name + " " + message.data.slice(0, 160);
      log.appendChild(item);
    });
    source.addEventListener("run_end", function () {
      state.textContent = "ended";
      source.close();
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { state.textContent = "closed"; }
      else { state.textContent = "reconnecting…"; }
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("event-log");
    if (log) { watch(log); }
  });
})();
