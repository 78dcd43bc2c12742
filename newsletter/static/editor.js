/* GET THE SIGNAL editor: small progressive enhancements, no dependencies.
   Every page works without this file (links and forms carry the state);
   it only makes tabs, widths, reordering and progress feel immediate. */
(function () {
  "use strict";

  function all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  /* Tabs: a[data-tab] inside [role=tablist] show the matching [data-pane]. */
  function initTabs() {
    all('[role="tablist"]').forEach(function (list) {
      var tabs = all("a[data-tab]", list);
      if (!tabs.length) { return; }
      function show(name, push) {
        tabs.forEach(function (t) { t.setAttribute("aria-selected", String(t.dataset.tab === name)); });
        all("[data-pane]").forEach(function (pane) { pane.hidden = pane.dataset.pane !== name; });
        if (push) {
          var url = new URL(window.location.href);
          if (url.searchParams.has("view") || url.pathname.endsWith("/preview")) {
            url.searchParams.set("view", name);
            window.history.replaceState(null, "", url);
          }
        }
      }
      var current = tabs.filter(function (t) { return t.getAttribute("aria-selected") === "true"; })[0] || tabs[0];
      show(current.dataset.tab, false);
      tabs.forEach(function (tab) {
        tab.addEventListener("click", function (event) { event.preventDefault(); show(tab.dataset.tab, true); });
      });
    });
  }

  /* Desktop / mobile width of the preview frame. */
  function initWidths() {
    var wrap = document.getElementById("frame-wrap");
    var buttons = all("a[data-width]");
    if (!wrap || !buttons.length) { return; }
    buttons.forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        var width = button.dataset.width;
        wrap.classList.remove("frame-desktop", "frame-mobile");
        wrap.classList.add("frame-" + width);
        buttons.forEach(function (b) { if (b === button) { b.setAttribute("aria-current", "true"); } else { b.removeAttribute("aria-current"); } });
        all("a[data-tab]").forEach(function (tab) {
          var url = new URL(tab.href); url.searchParams.set("width", width); tab.href = url.toString();
        });
        var url = new URL(window.location.href);
        url.searchParams.set("width", width);
        window.history.replaceState(null, "", url);
        fitFrames();
      });
    });
  }

  /* Grow same-origin (sandboxed, script-less) frames to their content height. */
  function fitFrames() {
    all(".frame-wrap iframe").forEach(function (frame) {
      try {
        var doc = frame.contentDocument;
        if (doc && doc.body) {
          frame.style.height = "400px";  /* shrink first: scrollHeight never goes below the frame */
          frame.style.height = Math.max(400, doc.documentElement.scrollHeight + 8) + "px";
        }
      } catch (e) { /* cross-origin sandbox: keep the CSS height */ }
    });
  }
  function initFrames() {
    all(".frame-wrap iframe").forEach(function (frame) { frame.addEventListener("load", fitFrames); });
    fitFrames();
  }

  /* Forms with data-confirm ask before they submit. */
  function initConfirm() {
    all("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  /* Up/down buttons for the article table; positions are renumbered so the
     server receives the order as plain numbers (it also works by typing). */
  function initReorder() {
    all("table[data-reorder]").forEach(function (table) {
      var body = table.tBodies[0];
      function renumber() {
        all("tr[data-row]", body).forEach(function (row, i) {
          var input = row.querySelector("input.position");
          if (input) { input.value = i + 1; }
        });
      }
      function flash(row) {
        row.classList.add("moved");
        window.setTimeout(function () { row.classList.remove("moved"); }, 700);
      }
      all("tr[data-row]", body).forEach(function (row) {
        var cell = row.querySelector(".move-col");
        if (!cell) { return; }
        var title = (row.querySelector("a") || {}).textContent || "article";
        [["↑", "up"], ["↓", "down"]].forEach(function (pair) {
          var b = document.createElement("button");
          b.type = "button";
          b.className = "secondary small";
          b.textContent = pair[0];
          b.setAttribute("aria-label", "Move " + title + " " + pair[1]);
          b.dataset.move = pair[1];
          b.addEventListener("click", function () {
            if (pair[1] === "up" && row.previousElementSibling) { body.insertBefore(row, row.previousElementSibling); }
            if (pair[1] === "down" && row.nextElementSibling) { body.insertBefore(row.nextElementSibling, row); }
            renumber(); flash(row); b.focus();
            table.dispatchEvent(new Event("change", { bubbles: true }));  /* a change, for the unsaved-changes check */
          });
          cell.appendChild(b);
        });
      });
    });
  }

  /* Character counters for subject and preheader. */
  function initCounters() {
    all("[data-counter]").forEach(function (input) {
      var limit = parseInt(input.dataset.counter, 10);
      var label = input.id ? document.querySelector('label[for="' + input.id + '"]') : null;
      if (!label) { return; }
      var counter = document.createElement("span");
      counter.className = "counter";
      label.appendChild(counter);
      function update() {
        counter.textContent = input.value.length + " / " + limit;
        counter.classList.toggle("over", input.value.length > limit);
      }
      input.addEventListener("input", update);
      update();
    });
  }

  /* Unsaved changes: a form[data-unsaved] compares what it holds with what it
     was loaded with; leaving the page (Preview, a link, closing the tab) with a
     difference asks first (beforeunload), and the toolbar says so. Submitting
     the form itself never asks. */
  function initUnsaved() {
    all("form[data-unsaved]").forEach(function (form) {
      function state() { return new URLSearchParams(new FormData(form)).toString(); }
      var saved = state();
      var submitting = false;
      var note = document.getElementById(form.dataset.unsaved);
      function dirty() { return !submitting && state() !== saved; }
      function show() { if (note) { note.hidden = !dirty(); } }
      form.addEventListener("input", show);
      form.addEventListener("change", show);
      form.addEventListener("submit", function () { submitting = true; });
      window.addEventListener("beforeunload", function (event) {
        if (dirty()) { event.preventDefault(); event.returnValue = ""; }
      });
      show();
    });
  }

  /* Live progress while an issue sends: poll the small JSON endpoint. */
  function initProgress() {
    var card = document.querySelector("[data-progress-url]");
    if (!card) { return; }
    var bar = card.querySelector("progress");
    var status = card.dataset.status;
    if (status === "sent" || status === "cancelled") { return; }
    function set(selector, value) {
      var el = card.querySelector(selector);
      if (el && value !== undefined && value !== null) { el.textContent = value; }
    }
    function poll() {
      fetch(card.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) {
          bar.value = data.percent;
          set('[data-field="done"]', data.done);
          set('[data-field="total"]', data.total);
          set('[data-field="status"]', data.status);
          ["sent", "failed", "skipped", "pending"].forEach(function (k) { set('[data-count="' + k + '"]', data.counts[k]); });
          card.dataset.status = data.status;
          if (data.finished) { window.setTimeout(function () { window.location.reload(); }, 600); return; }
          window.setTimeout(poll, data.status === "paused" ? 5000 : 1500);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    poll();
  }

  // The sign-up box page: a changed option shows the box with it at once.
  function initAutosubmit() {
    all("form[data-autosubmit]").forEach(function (form) {
      form.addEventListener("change", function () { form.requestSubmit(); });
    });
  }

  function init() {
    initTabs(); initWidths(); initFrames(); initConfirm(); initReorder(); initCounters(); initUnsaved(); initProgress();
    initAutosubmit();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
