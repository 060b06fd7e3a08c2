// Page behaviour declared with data attributes, so that no template needs an inline on*= handler, hx-on or
// an inline script for it (the Content-Security-Policy allows neither). Loaded on every page by base.html;
// every listener sits on the document, so content that htmx swaps in later works without rebinding.
//   <select data-autosubmit>                submits its form when changed
//   <form data-confirm="…">                 asks before submitting; cancelling stops the submission
//   <form data-no-submit>                   never submits (its buttons post through htmx)
//   <input type=checkbox data-check-all="S"> ticks or unticks every checkbox matching the selector S
//   <button data-copy="#id" data-copied="…"> copies the element's text to the clipboard, then shows data-copied
//   <button data-clear-closest="S">         empties the closest ancestor matching S (the flow editor's cancel)
//   <select data-show-kinds="A">            shows the elements whose attribute A (space-separated values) holds
//                                           the selected value and hides the others; applied on load too
//   <div data-enter-changes>                Enter in one of its inputs fires "change" instead of submitting
//   <form data-selection="S">               has the class has-selection while a checkbox matching S inside it is
//                                           ticked; its [data-selection-count="… {n} …"] shows how many
//   <a data-filter-remove="#id" data-filter-value="v">  a filter chip: empties that value of the control #id and
//                                           submits the control's form (htmx answers in place); the href is the fallback
(function () {
  "use strict";

  function syncKinds(select) {
    const attr = select.dataset.showKinds;
    document.querySelectorAll("[" + attr + "]").forEach(function (el) {
      el.hidden = !el.getAttribute(attr).split(" ").includes(select.value);
    });
  }

  function syncSelection(form) {
    const n = form.querySelectorAll(form.dataset.selection + ":checked").length;
    form.classList.toggle("has-selection", n > 0);
    form.querySelectorAll("[data-selection-count]").forEach(function (el) {
      el.textContent = n > 0 ? el.dataset.selectionCount.replace("{n}", n) : "";
    });
  }

  document.addEventListener("change", function (event) {
    const el = event.target;
    if (!(el instanceof Element)) return;
    if (el.matches("[data-autosubmit]") && el.form) el.form.submit();
    if (el.matches("select[data-show-kinds]")) syncKinds(el);
    if (el.matches("input[type=checkbox][data-check-all]")) {
      document.querySelectorAll(el.dataset.checkAll).forEach(function (box) { box.checked = el.checked; });
    }
    const selection = el.closest("form[data-selection]");
    if (selection) syncSelection(selection);
  });

  // capture phase: decided before htmx or any other listener of the form sees the submission
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.matches("[data-no-submit]") || (form.dataset.confirm && !window.confirm(form.dataset.confirm))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("click", function (event) {
    if (!(event.target instanceof Element)) return;
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const source = document.querySelector(copy.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.innerText).then(function () {
          if (copy.dataset.copied) copy.textContent = copy.dataset.copied;
        });
      }
    }
    const clear = event.target.closest("[data-clear-closest]");
    if (clear) {
      const box = clear.closest(clear.dataset.clearClosest);
      if (box) box.replaceChildren();
    }
    const chip = event.target.closest("[data-filter-remove]");
    if (chip) {
      const control = document.querySelector(chip.dataset.filterRemove);
      if (control && control.form && control.form.requestSubmit) {
        event.preventDefault();
        if (control instanceof HTMLSelectElement && control.multiple) {
          Array.from(control.options).forEach(function (o) { if (o.value === chip.dataset.filterValue) o.selected = false; });
        } else {
          control.value = "";
        }
        control.form.requestSubmit();
      }
    }
  });

  document.addEventListener("keydown", function (event) {
    const input = event.target;
    if (event.key !== "Enter" || !(input instanceof HTMLInputElement) || !input.closest("[data-enter-changes]")) return;
    event.preventDefault();
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-show-kinds]").forEach(syncKinds);
  });
})();
