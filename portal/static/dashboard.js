// The dashboard's only script: "Copy" buttons, and the mailto link following edits of the email.
// Without it everything still works: the buttons stay hidden and the link carries the original.
"use strict";
document.querySelectorAll("button.copy").forEach(function (button) {
  var source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) { return; }
  var label = button.textContent;
  button.hidden = false;
  button.addEventListener("click", function () {
    var text = "value" in source ? source.value : source.textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "\u2713 " + label;
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  });
});
var body = document.getElementById("body");
var mailto = document.getElementById("mailto");
var subject = document.getElementById("subject");
if (body && mailto && subject) {
  body.addEventListener("input", function () {
    mailto.href = "mailto:" + encodeURIComponent(body.dataset.recipient).replace("%40", "@") +
      "?subject=" + encodeURIComponent(subject.textContent) +
      "&body=" + encodeURIComponent(body.value);
  });
}
// Relationship request emails: each textarea names its link (no recipient: the partner adds one).
document.querySelectorAll("textarea[data-mailto]").forEach(function (area) {
  var link = document.getElementById(area.dataset.mailto);
  if (!link) { return; }
  area.addEventListener("input", function () {
    link.href = "mailto:?subject=" + encodeURIComponent(area.dataset.subject) +
      "&body=" + encodeURIComponent(area.value);
  });
});

// CSV import: send the file a slice of rows at a time and show the progress and each row's result.
// Without script the form posts once and the server answers with the whole report.
var importForm = document.getElementById("import-form");
if (importForm && window.fetch && window.FormData) {
  importForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = importForm.querySelector("button[type=submit]");
    var progress = document.getElementById("progress");
    var progressText = document.getElementById("progress-text");
    var report = document.getElementById("import-report");
    var rows = document.getElementById("report-rows");
    var summary = document.getElementById("report-summary");
    var slice = 25, created = 0, failed = 0;
    button.disabled = true;
    rows.textContent = "";
    summary.textContent = "";
    summary.className = "";
    summary.removeAttribute("role");
    document.getElementById("import-progress").hidden = false;
    report.hidden = false;
    function fill(template, values) {
      return template.replace(/%\((\w+)\)s/g, function (_, name) { return String(values[name]); });
    }
    function addRow(result) {
      var tr = document.createElement("tr");
      var line = document.createElement("td");
      var domain = document.createElement("td");
      var outcome = document.createElement("td");
      line.textContent = result.line;
      if (result.ok) {
        var link = document.createElement("a");
        link.href = result.url;
        link.textContent = result.domain;
        domain.appendChild(link);
        outcome.textContent = rows.dataset.created;
      } else {
        domain.textContent = result.domain;
        var problem = document.createElement("span");
        problem.className = "problem";
        problem.textContent = result.error;
        outcome.appendChild(problem);
      }
      tr.append(line, domain, outcome);
      rows.appendChild(tr);
    }
    // The import answers JSON; anything else (a file over the size limit, an expired form, too
    // many requests) is the portal's error page, whose heading and text say what went wrong.
    function answerOf(response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === 0) { return response.json(); }
      return response.text().then(function (text) {
        var page = new DOMParser().parseFromString(text, "text/html");
        var words = Array.prototype.map.call(page.querySelectorAll("main h1, main p"), function (e) {
          return e.textContent.trim();
        }).filter(Boolean);
        throw new Error(words.join(" ") || response.status + " " + response.statusText);
      });
    }
    function step(offset) {
      var data = new FormData(importForm);
      data.set("format", "json");
      data.set("offset", String(offset));
      data.set("limit", String(slice));
      return fetch(importForm.action, { method: "POST", body: data, credentials: "same-origin" })
        .then(answerOf)
        .then(function (answer) {
          if (answer.error) { throw new Error(answer.error); }
          answer.results.forEach(function (result) {
            if (result.ok) { created += 1; } else { failed += 1; }
            addRow(result);
          });
          var done = Math.min(offset + slice, answer.total);
          progress.max = Math.max(answer.total, 1);
          progress.value = done;
          progressText.textContent = fill(progressText.dataset.template, { done: done, total: answer.total });
          summary.textContent = fill(summary.dataset.template, { created: created, failed: failed });
          if (done < answer.total) { return step(done); }
        });
    }
    step(0).catch(function (error) {
      summary.setAttribute("role", "alert");  // announced: nothing else on the page changes
      summary.className = "notice error";
      summary.textContent = error.message;
    }).finally(function () { button.disabled = false; });
  });
}
