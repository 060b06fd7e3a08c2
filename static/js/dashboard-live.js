// 看板: draws the charts from the page's JSON, then listens to the server-sent events of the viewer's scope
// (EventSource reconnects by itself) and updates tile numbers and charts in place, with a brief highlight.
(function () {
  const root = document.querySelector("[data-dashboard]");
  if (!root) return;
  const wall = root.dataset.wall === "1";
  const charts = {};
  const ink = wall ? "#dbe4f3" : undefined;
  const grid = wall ? "#22314f" : undefined;

  function colour(name) {
    return window.scrmColour ? window.scrmColour(name || "blue") : "#206bc4";
  }

  function chart(name) {
    const el = root.querySelector('[data-chart="' + name + '"]');
    if (!el || !window.echarts) return null;
    if (!charts[name]) charts[name] = echarts.init(el);
    return charts[name];
  }

  // an empty chart gives its place to a sentence saying what to do next
  function empty(name, show) {
    const el = root.querySelector('[data-chart="' + name + '"]');
    if (!el) return;
    let note = el.parentElement.querySelector(".chart-empty");
    if (show && el.dataset.empty) {
      if (!note) {
        note = document.createElement("div");
        note.className = "chart-empty text-secondary";
        el.parentElement.insertBefore(note, el);
      }
      note.textContent = el.dataset.empty;
      el.style.display = "none";
    } else {
      if (note) note.remove();
      if (el.style.display === "none") {
        el.style.display = "";
        if (charts[name]) charts[name].resize();
      }
    }
  }

  const axis = wall ? { axisLabel: { color: ink }, axisLine: { lineStyle: { color: grid } }, splitLine: { lineStyle: { color: grid } } } : {};

  function renderCharts(data) {
    const trend = chart("trend");
    if (trend) {
      empty("trend", data.trend.trades.every(function (v) { return v === 0; }));
      const title = root.querySelector('[data-chart-title="trend"]');
      if (title) title.textContent = data.trend.title;
      trend.setOption({
        grid: { left: 40, right: 10, top: 20, bottom: 30 }, tooltip: { trigger: "axis" },
        xAxis: Object.assign({ type: "category", data: data.trend.labels }, axis),
        yAxis: Object.assign({ type: "value", minInterval: 1 }, axis),
        series: [{ type: "bar", name: "交易笔数", data: data.trend.trades, itemStyle: { color: colour("blue") } }],
      });
    }
    const tiers = chart("tiers");
    if (tiers) {
      const rows = data.tiers.filter(function (t) { return t.count > 0; });
      empty("tiers", rows.length === 0);
      const ordered = rows.slice().reverse(); // best tier on top
      tiers.setOption({
        grid: { left: 70, right: 56, top: 8, bottom: 8 }, tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
        xAxis: { type: "value", minInterval: 1, axisLabel: { show: false }, splitLine: { show: false } },
        yAxis: Object.assign({ type: "category", data: ordered.map(function (t) { return t.label; }) }, axis),
        series: [{ type: "bar", name: "客户数", barMaxWidth: 18, label: Object.assign({ show: true, position: "right" }, wall ? { color: ink } : {}),
          data: ordered.map(function (t) { return { value: t.count, itemStyle: { color: colour(t.colour) } }; }) }],
      }, true);
    }
    const sop = chart("sop");
    if (sop) {
      empty("sop", data.sop.values.every(function (v) { return v === 0; }));
      sop.setOption({
        grid: { left: 40, right: 10, top: 20, bottom: 30 }, tooltip: { trigger: "axis" },
        xAxis: Object.assign({ type: "category", data: data.sop.labels }, axis),
        yAxis: Object.assign({ type: "value", minInterval: 1 }, axis),
        series: [{ type: "bar", data: data.sop.values.map(function (v, i) {
          return { value: v, itemStyle: { color: colour(["blue", "red", "green"][i]) } };
        }) }],
      });
    }
  }

  function applyTiles(tiles) {
    Object.keys(tiles).forEach(function (key) {
      const tile = root.querySelector('[data-kpi="' + key + '"]');
      if (!tile) return;
      const t = tiles[key];
      const value = tile.querySelector(".kpi-value");
      tile.querySelector(".kpi-label").textContent = t.label;
      if (value.textContent !== t.text) {
        value.textContent = t.text;
        tile.classList.remove("kpi-flash");
        void tile.offsetWidth; // restart the highlight
        tile.classList.add("kpi-flash");
      }
      const previous = tile.querySelector(".kpi-previous-value");
      if (previous && t.previous_text !== undefined) previous.textContent = t.previous_text;
      const trend = tile.querySelector(".kpi-trend");
      if (trend && t.trend) {
        trend.className = "kpi-trend kpi-trend-" + t.trend;
        trend.textContent = t.trend === "up" ? "▲" : t.trend === "down" ? "▼" : "–";
      }
    });
  }

  function status(text, cls) {
    root.querySelectorAll(".live-status").forEach(function (el) {
      el.textContent = text;
      el.classList.remove("is-live", "is-down");
      if (cls) el.classList.add(cls);
    });
  }

  const source = document.getElementById("dashboard-charts");
  if (source) renderCharts(JSON.parse(source.textContent));
  window.addEventListener("resize", function () { Object.values(charts).forEach(function (c) { c.resize(); }); });

  const range = document.querySelector("[data-range-select]");
  if (range) {
    range.addEventListener("change", function () {
      document.querySelectorAll(".custom-dates").forEach(function (el) { el.classList.toggle("d-none", range.value !== "custom"); });
      if (range.value !== "custom") range.form.submit();
    });
  }

  if (!root.dataset.stream || !window.EventSource) return;
  const stream = new EventSource(root.dataset.stream);
  stream.addEventListener("open", function () { status("实时", "is-live"); });
  stream.addEventListener("error", function () { status("连接中断，正在重连…", "is-down"); });
  stream.addEventListener("tiles", function (event) {
    const payload = JSON.parse(event.data);
    status("实时", "is-live");
    applyTiles(payload.tiles);
    renderCharts(payload.charts);
    root.querySelectorAll(".updated-at").forEach(function (el) { el.textContent = payload.updated_at; });
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
  });
})();
