// Trading calendar: clicking a day fills the "设置某一天" form with that day and the opposite state.
document.addEventListener("click", (event) => {
  const cell = event.target.closest("[data-pick-day]");
  if (!cell) return;
  document.getElementById("id_day").value = cell.dataset.pickDay;
  document.getElementById("id_is_open").value = cell.dataset.pickOpen;
  document.getElementById("id_note").focus();
});
