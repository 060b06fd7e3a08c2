// Tabler colour names (blue, green, secondary …) → a colour the canvas (ECharts) can draw. The custom
// properties may hold light-dark(…) or var(…), so let the browser resolve them on a probe element.
window.scrmColour = (function () {
  const cache = {};
  return function (name) {
    if (!(name in cache)) {
      const probe = document.createElement("span");
      probe.style.color = "var(--tblr-" + name + ", #206bc4)";
      probe.style.display = "none";
      document.body.appendChild(probe);
      cache[name] = getComputedStyle(probe).color || "#206bc4";
      probe.remove();
    }
    return cache[name];
  };
})();
