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
