// Small behaviours htmx does not cover: the live badge, relative times and toasts.
(function () {
  "use strict";

  function setLiveState(state, text) {
    var badge = document.getElementById("live-status");
    if (!badge || badge.dataset.state === state) return;
    badge.dataset.state = state;
    badge.className = "badge live-status " + (state === "live" ? "badge--success" : "badge--neutral");
    badge.innerHTML = '<span class="live-dot" aria-hidden="true"></span> ' + text;
  }

  // The server's confirmation fragment marks the badge live; these cover the way back down.
  document.addEventListener("htmx:wsClose", function () { setLiveState("offline", "Reconnecting…"); });
  document.addEventListener("htmx:wsError", function () { setLiveState("offline", "Reconnecting…"); });

  function relative(seconds) {
    if (seconds < 45) return "just now";
    if (seconds < 90) return "1 minute ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " minutes ago";
    if (seconds < 5400) return "1 hour ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " hours ago";
    return Math.round(seconds / 86400) + " days ago";
  }

  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = relative(Math.max(0, (now - at) / 1000));
    });
  }
  document.addEventListener("DOMContentLoaded", refreshTimes);
  document.addEventListener("htmx:wsAfterMessage", refreshTimes);
  document.addEventListener("htmx:afterSwap", refreshTimes);
  setInterval(refreshTimes, 15000);

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss-toast]");
    if (button) button.closest(".toast").remove();
  });
})();
