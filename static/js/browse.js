// Browse page live prices: a JSON websocket (/ws/providers/?format=json) updates the rows on screen.
(function () {
  "use strict";
  var socket = null;
  var retry = 1000;

  function badge(state, text) {
    var el = document.getElementById("browse-live");
    if (!el) return;
    el.dataset.state = state;
    el.className = "badge live-status " + (state === "live" ? "badge--success" : "badge--neutral");
    el.innerHTML = '<span class="live-dot" aria-hidden="true"></span> ' + text;
  }

  function apply(change) {
    var row = document.getElementById("offer-" + change.offer_id);
    if (!row) return;
    var price = row.querySelector('[data-field="price"]');
    if (price) price.textContent = Number(change.new_price).toFixed(2);
    var avail = row.querySelector('[data-field="availability"]');
    if (avail && change.new_availability) {
      var tone = { available: "success", limited: "warning", unavailable: "danger" }[change.new_availability] || "neutral";
      avail.className = "badge badge--availability badge--" + tone;
      avail.textContent = change.new_availability.charAt(0).toUpperCase() + change.new_availability.slice(1);
    }
    var time = row.querySelector("time[data-relative]");  // "updated just now" under the price
    if (time) { time.setAttribute("datetime", new Date().toISOString()); time.textContent = "just now"; }
    row.classList.remove("offer-row--changed");
    void row.offsetWidth; // restart the flash animation
    row.classList.add("offer-row--changed");
    row.dataset.updated = String(Date.now());
  }

  function connect() {
    var results = document.getElementById("results");
    if (!results) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + results.dataset.wsJson);
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "subscribed") { retry = 1000; badge("live", "Live"); }
      if (data.type === "offers.changed") data.payload.changes.forEach(apply);
    };
    socket.onclose = function () {
      badge("offline", "Reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  // Results swapped in by htmx come with a fresh "Connecting" badge: show the socket's state.
  document.addEventListener("htmx:afterSwap", function () {
    if (socket && socket.readyState === WebSocket.OPEN) badge("live", "Live");
  });
  document.addEventListener("DOMContentLoaded", connect);
})();
