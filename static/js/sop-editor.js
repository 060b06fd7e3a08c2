/* SOP journey forms: show only the fields of the chosen type (data-show-when="select_name:value1,value2"). */
(function () {
  function sync(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("[data-show-when]").forEach(function (el) {
      var spec = el.dataset.showWhen.split(":");
      var form = el.closest("form");
      var control = form && form.querySelector("[name='" + spec[0] + "']");
      if (!control) return;
      var wrapper = el.closest(".sop-field") || el;
      wrapper.hidden = spec[1].split(",").indexOf(control.value) < 0;
    });
  }
  document.addEventListener("change", function (e) { sync(e.target.closest && e.target.closest("form")); });
  document.addEventListener("DOMContentLoaded", function () { sync(document); });
  document.addEventListener("htmx:load", function (e) { sync(e.detail.elt.parentNode || e.detail.elt); });
})();
