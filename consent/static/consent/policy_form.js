/* Adding a consent-policy version: choosing another property reloads the form with that
   property's current purposes (?property=<id>), unless a purpose was already edited.
   A file, not an inline script: the admin holds under a strict Content-Security-Policy. */
(function () {
  "use strict";

  function edited(form) {
    var fields = form.querySelectorAll(".purposes-editor input[type=text], .purposes-editor textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) {
        return true;
      }
    }
    return false;
  }

  function start() {
    var select = document.querySelector("select#id_property");
    if (!select || !select.form || !select.form.querySelector(".purposes-editor")) {
      return;
    }
    select.addEventListener("change", function () {
      if (edited(select.form) || !select.value) {
        return;
      }
      var params = new URLSearchParams(window.location.search);
      params.set("property", select.value);
      window.location.search = params.toString();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
