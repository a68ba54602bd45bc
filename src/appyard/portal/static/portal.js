// appyard portal: small progressive enhancements. Every page works without this file.
//  - [data-poll]: refresh a region from its URL while the server keeps the attribute
//    (a build's page while it processes); the new region replaces the old one.
//  - [data-copy]: a button that copies its value (shown only when scripts run).
//  - form[data-confirm]: ask before a destructive post.
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "1500", 10);
    var failures = 0;
    function tick() {
      if (!document.body.contains(el)) return;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (html) {
          failures = 0;
          var tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          var fresh = tpl.content.firstElementChild;
          if (!fresh) return setTimeout(tick, every);
          el.replaceWith(fresh);
          enhance(fresh);
          if (!fresh.hasAttribute("data-poll")) {
            document.dispatchEvent(new CustomEvent("appyard:settled"));
          }
        })
        .catch(function () {
          failures += 1;
          setTimeout(tick, Math.min(every * Math.pow(2, failures), 30000));
        });
    }
    setTimeout(tick, every);
  }

  function enhance(root) {
    if (root.hasAttribute && root.hasAttribute("data-poll")) poll(root);
    root.querySelectorAll("[data-poll]").forEach(poll);
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var value = button.getAttribute("data-copy");
        var done = function () {
          var label = button.textContent;
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = label; }, 1500);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(value).then(done);
        } else {
          var area = document.createElement("textarea");
          area.value = value;
          document.body.appendChild(area);
          area.select();
          try { document.execCommand("copy"); done(); } catch (e) { /* nothing */ }
          area.remove();
        }
      });
    });
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
})();
