// Live regions: an element with data-poll="URL" is refreshed from URL (a page's
// ?partial=1 fragment) every data-interval ms, without reloading the page. Elements with
// data-countdown="seconds" tick down once a second in between.
"use strict";

(function () {
  function refresh(region) {
    // Do not replace a form the operator is typing into.
    if (region.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
      schedule(region);
      return;
    }
    fetch(region.dataset.poll, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // A redirect means the session ended: reload so the browser lands on the login form.
        if (response.redirected || response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== region.dataset.last) {
          region.dataset.last = html;
          region.classList.remove("stale");
          region.innerHTML = html;
          countDown(0);
        }
      })
      .catch(function () {
        region.classList.add("stale"); // the server is unreachable; keep what we have
      })
      .then(function () {
        schedule(region);
      });
  }

  function schedule(region) {
    var every = parseInt(region.dataset.interval || "3000", 10);
    window.setTimeout(function () { refresh(region); }, every);
  }

  function format(seconds) {
    if (seconds <= 0) return "0 s";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }

  // step: seconds to take off first (0 right after the server rendered the value).
  function countDown(step) {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.max(0, parseInt(el.dataset.countdown, 10) - step);
      el.dataset.countdown = String(left);
      el.textContent = format(left);
    });
  }

  // Forms that undo work (abort) ask first; no inline handlers, the CSP forbids them.
  document.addEventListener("submit", function (e) {
    var question = e.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      e.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(function (region) {
      region.dataset.last = "";
      schedule(region);
    });
    countDown(0);
    window.setInterval(function () { countDown(1); }, 1000);
  });
})();
