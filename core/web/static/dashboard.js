// Live parts of the dashboard: every element with data-live="URL" is refreshed from that partial
// every few seconds (no full reload). A 401 means the session ended: go to the sign-in page.
"use strict";
(function () {
  const PERIOD_MS = 2000;
  async function refresh(el) {
    try {
      const response = await fetch(el.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.status === 401) { window.location.assign("/login"); return; }
      if (response.ok) { el.innerHTML = await response.text(); el.dataset.refreshedAt = String(Date.now()); }
    } catch (err) {
      // The API restarting or the network dropping: keep the last content and try again next tick.
    }
  }
  function start() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      setInterval(function () { refresh(el); }, PERIOD_MS);
    });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
