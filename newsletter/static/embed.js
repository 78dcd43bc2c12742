/* GET THE SIGNAL sign-up box.
 *
 * On another site:  <div data-gts-box data-theme="dark"></div>
 *                   <script src="https://NEWSLETTER/embed.js" async></script>
 * fetches the box from /embed/box (CORS), puts it into each placeholder and
 * sends it to the JSON API. Inside /embed (the iframe) it sends that page's
 * form the same way. No inline script or style is added: the stylesheet is a
 * <link> to /embed.css, the accent colour is set through the CSSOM, which a
 * strict Content-Security-Policy allows. No cookies are sent or read.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script ? script.src : "/embed.js", document.baseURI).origin;
  var OPTIONS = ["topics", "preset", "theme", "accent", "layout", "headline", "line", "button", "page"];
  var FAILED = "Something went wrong. Please try again in a moment.";

  function timezone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      return "";
    }
  }

  function show(form, kind, text) {
    var result = form.querySelector(".gts-result");
    result.className = "gts-result gts-" + kind;
    result.textContent = text;
    var email = form.querySelector(".gts-email");
    if (kind === "error") {
      email.setAttribute("aria-invalid", "true");
      email.focus();
    } else {
      email.removeAttribute("aria-invalid");
    }
  }

  function send(form) {
    var topics = [];
    form.querySelectorAll('input[name="topics"]').forEach(function (input) {
      if (input.type !== "checkbox" || input.checked) topics.push(input.value);
    });
    var hasBoxes = form.querySelector('input[type="checkbox"][name="topics"]');
    if (hasBoxes && topics.length === 0) {
      show(form, "error", "Choose at least one topic.");
      return;
    }
    var body = {
      email: form.elements.email.value,
      topics: topics,
      website: form.elements.website.value,
      timezone: form.elements.timezone.value || timezone(),
      form_token: form.elements.form_token.value,
    };
    var button = form.querySelector(".gts-button");
    button.disabled = true;
    fetch(base + "/api/v1/subscribers", {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return {};
          })
          .then(function (data) {
            if (response.ok) {
              show(form, "success", data.message || "Check your inbox.");
              form.elements.email.value = "";
            } else {
              show(form, "error", data.message || FAILED);
            }
          });
      })
      .catch(function () {
        show(form, "error", FAILED);
      })
      .then(function () {
        button.disabled = false;
      });
  }

  function enhance(root) {
    var section = root.querySelector(".gts");
    if (!section || section.getAttribute("data-gts-ready")) return;
    section.setAttribute("data-gts-ready", "1");
    if (section.getAttribute("data-accent")) {
      section.style.setProperty("--gts-accent", section.getAttribute("data-accent"));
      section.style.setProperty("--gts-on-accent", section.getAttribute("data-on-accent"));
    }
    var form = section.querySelector(".gts-form");
    if (!form) return;
    form.elements.timezone.value = timezone();
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(form);
    });
  }

  function refuse(placeholder, message) {
    var note = document.createElement("p");
    note.className = "gts gts-light gts-refused";
    note.setAttribute("role", "alert");
    note.textContent = message;
    placeholder.replaceChildren(note);
    if (window.console) console.error("GET THE SIGNAL box: " + message);
  }

  function mount(placeholder) {
    if (placeholder.getAttribute("data-gts-mounted")) return;
    placeholder.setAttribute("data-gts-mounted", "1");
    var query = new URLSearchParams();
    OPTIONS.forEach(function (name) {
      var value = placeholder.getAttribute("data-" + name);
      if (value) query.set(name, value);
    });
    if (!query.has("page")) query.set("page", window.location.pathname);
    fetch(base + "/embed/box?" + query.toString(), { mode: "cors", credentials: "omit" })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            refuse(placeholder, data.message || FAILED);
            return;
          }
          var doc = new DOMParser().parseFromString(data.html, "text/html");
          placeholder.replaceChildren.apply(placeholder, Array.prototype.slice.call(doc.body.childNodes));
          enhance(placeholder);
        });
      })
      .catch(function () {
        refuse(placeholder, "The sign-up box could not be loaded.");
      });
  }

  function stylesheet() {
    var href = base + "/embed.css";
    if (document.querySelector('link[href="' + href + '"]')) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }

  // Height: the /embed page tells its parent how tall it is; embed.js on the host page
  // (optional beside the iframe snippet) sizes the iframe to fit, through the CSSOM.
  function reportHeight() {
    if (window.parent === window || !document.querySelector("html.gts-page")) return;
    var send = function () {
      var height = Math.ceil(document.body.getBoundingClientRect().height);
      window.parent.postMessage({ gts: "height", height: height }, "*");
    };
    if (window.ResizeObserver) new ResizeObserver(send).observe(document.body);
    window.addEventListener("message", function (event) {
      if (event.source === window.parent && event.data && event.data.gts === "measure") send();
    });
    send();
  }

  function fitFrames() {
    window.addEventListener("message", function (event) {
      if (event.origin !== base || !event.data || event.data.gts !== "height") return;
      var height = Math.min(Math.max(parseInt(event.data.height, 10) || 0, 100), 2000);
      document.querySelectorAll("iframe").forEach(function (frame) {
        if (frame.contentWindow === event.source) frame.style.setProperty("height", height + "px");
      });
    });
  }

  // frames that loaded before this script listened: ask them again
  function askFrames() {
    document.querySelectorAll("iframe").forEach(function (frame) {
      var ask = function () {
        if (frame.contentWindow) frame.contentWindow.postMessage({ gts: "measure" }, base);
      };
      frame.addEventListener("load", ask);
      ask();
    });
  }

  function start() {
    var placeholders = document.querySelectorAll("[data-gts-box]");
    if (placeholders.length) stylesheet();
    placeholders.forEach(mount);
    enhance(document); // the /embed page's own form
    reportHeight();
    askFrames();
  }

  fitFrames();

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
