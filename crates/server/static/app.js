// Cardwright operator UI: "select all" check boxes, live batch order progress and the option
// script editor's line numbers. Every page works without this script.
(function () {
  "use strict";

  // A check box with data-select-all="NAME" ticks or clears every enabled box NAME of its form.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var scope = all.form || document;
    var boxes = function () {
      var found = scope.querySelectorAll('input[type="checkbox"][name="' + all.dataset.selectAll + '"]');
      return Array.prototype.filter.call(found, function (box) { return !box.disabled; });
    };
    var sync = function () {
      var list = boxes();
      var ticked = list.filter(function (box) { return box.checked; }).length;
      all.checked = list.length > 0 && ticked === list.length;
      all.indeterminate = ticked > 0 && ticked < list.length;
    };
    all.addEventListener("change", function () {
      boxes().forEach(function (box) { box.checked = all.checked; });
    });
    boxes().forEach(function (box) { box.addEventListener("change", sync); });
    sync();
  });

  // Live production: read the order's progress every second, update the bar and each card's
  // row, and reload the page once production is over.
  var panel = document.querySelector("[data-progress-url]");
  if (panel) {
    var url = panel.dataset.progressUrl;
    var bar = document.getElementById("progress-bar");
    var failures = 0;
    var field = function (row, name, value) {
      var cell = row.querySelector('[data-field="' + name + '"]');
      if (cell) { cell.textContent = value; }
      return cell;
    };
    var count = function (name, value) {
      var el = panel.querySelector('[data-count="' + name + '"]');
      if (el) { el.textContent = value; }
    };
    var show = function (progress) {
      bar.max = progress.total;
      bar.value = progress.done;
      bar.textContent = progress.done + " of " + progress.total;
      count("done", progress.done);
      count("produced", progress.produced);
      count("failed", progress.failed);
      progress.items.forEach(function (item) {
        var row = panel.querySelector('tr[data-card="' + item.card + '"]');
        if (!row) { return; }
        var status = field(row, "status", item.status);
        if (status) { status.className = "badge status-" + item.status; }
        field(row, "card_state", item.card_state);
        field(row, "attempts", item.attempts);
        field(row, "error", item.error || "");
      });
    };
    var poll = function () {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (res) {
          var type = res.headers.get("content-type") || "";
          if (res.redirected || !res.ok || type.indexOf("json") < 0) { throw new Error("no progress"); }
          return res.json();
        })
        .then(function (progress) {
          failures = 0;
          show(progress);
          if (progress.state !== "producing") {
            window.location.reload();
          } else {
            window.setTimeout(poll, 1000);
          }
        })
        .catch(function () {
          failures += 1;
          if (failures >= 3) {
            window.location.reload();
          } else {
            window.setTimeout(poll, 2000);
          }
        });
    };
    window.setTimeout(poll, 1000);
  }

  // The script editor: as many line numbers as lines, scrolled with the text.
  document.querySelectorAll("textarea[data-gutter]").forEach(function (area) {
    var gutter = area.parentElement.querySelector(".gutter");
    if (!gutter) { return; }
    var update = function () {
      var rows = Math.max(area.value.split("\n").length + 1, 12);
      if (area.rows !== rows) { area.rows = rows; }
      while (gutter.children.length < rows) {
        var number = document.createElement("span");
        number.textContent = String(gutter.children.length + 1);
        gutter.appendChild(number);
      }
      while (gutter.children.length > rows) { gutter.removeChild(gutter.lastChild); }
    };
    area.addEventListener("input", update);
    area.addEventListener("scroll", function () { gutter.scrollTop = area.scrollTop; });
  });

  // Previews are limited per operator: a picture refused because its operator has as many
  // previews rendering as one may (429) is asked for again a little later, a few times.
  document.querySelectorAll('img[src*="/preview?"]').forEach(function (img) {
    var tries = 0;
    var source = img.getAttribute("src");
    var again = function () {
      if (tries >= 5) { return; }
      tries += 1;
      window.setTimeout(function () {
        img.src = source + "&try=" + tries;
      }, 1000 * tries);
    };
    img.addEventListener("error", again);
    if (img.complete && img.naturalWidth === 0) { again(); }
  });

  // A file picked for a text area (the persons import) is read into it.
  document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
    var area = document.getElementById(input.getAttribute("data-fill"));
    if (!area || !window.FileReader) { return; }
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      var reader = new FileReader();
      reader.onload = function () { area.value = String(reader.result); };
      reader.readAsText(file);
    });
  });
}());
