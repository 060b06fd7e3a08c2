// Trades by month on the 360° page (ECharts); data comes from the element's data-months attribute.
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("trade-chart");
  if (!el || !window.echarts) return;
  const months = JSON.parse(el.dataset.months || "[]");
  const chart = echarts.init(el);
  chart.setOption({
    tooltip: { trigger: "axis" },
    grid: { left: 60, right: 20, top: 20, bottom: 30 },
    xAxis: { type: "category", data: months.map((m) => m.month) },
    yAxis: { type: "value" },
    series: [{ type: "bar", name: "成交金额", data: months.map((m) => m.amount) }],
  });
  window.addEventListener("resize", () => chart.resize());
});
