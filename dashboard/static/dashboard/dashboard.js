/* Draws every dashboard chart from the figure JSON the page embeds with json_script
   (<div class="dash-chart" data-figure="<id of a script type=application/json>">).
   No inline script anywhere: the pages hold under a strict Content-Security-Policy. */
(function () {
  "use strict";

  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-figure"));
    if (!source || !window.Plotly) {
      return;
    }
    var figure = JSON.parse(source.textContent);
    window.Plotly.newPlot(el, figure.data || [], figure.layout || {}, {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["sendDataToCloud"],
    });
  }

  function start() {
    document.querySelectorAll(".dash-chart[data-figure]").forEach(draw);
    // Choosing another property reloads the page so its slots and segments can be chosen.
    var property = document.querySelector(".dash-filters select[name=property]");
    if (property && property.form) {
      property.addEventListener("change", function () {
        ["slot", "segment"].forEach(function (name) {
          var field = property.form.elements[name];
          if (field) {
            field.value = "";
          }
        });
        property.form.submit();
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
