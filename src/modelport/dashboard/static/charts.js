// Hand-drawn SVG time charts: bars (stackable) and lines over fixed time buckets, with a hover readout.
// The SVG scales with its box (viewBox), so a chart is drawn once per data change, not per resize.

import { h, s } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const MARGIN = { top: 12, right: 12, bottom: 24, left: 40 };
// Axis text is 10.5px: wide enough for a digit or letter of the system font, so labels are measured
// before drawing and the left margin grows to fit the longest one instead of clipping it.
const CHAR_W = 6.4;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
const DAY = 86_400_000;

/**
 * times: bucket starts (ms); series: [{name, values, kind: "bar"|"line", tone}] where tone is a CSS class
 * suffix; bars are stacked in the order given. format: value → text for axis and readout; integer: counts,
 * so the axis never shows fractions.
 */
export function timeChart({ title, times, bucketMs, series, format, integer = false }) {
  const bars = series.filter((item) => item.kind === "bar");
  const lines = series.filter((item) => item.kind === "line");
  const top = niceCeiling(Math.max(integer ? 4 : 0, ...times.map((_, i) => stackTotal(bars, i)), ...lines.flatMap((l) => l.values.filter(finite))));
  const ticks = [0, 1, 2, 3, 4].map((step) => (top * step) / 4);
  const left = Math.max(MARGIN.left, Math.ceil(Math.max(...ticks.map((value) => format(value).length)) * CHAR_W) + 10);
  const plotW = WIDTH - left - MARGIN.right;
  const band = plotW / Math.max(times.length, 1);
  const y = (value) => MARGIN.top + PLOT_H - (value / top) * PLOT_H;
  const x = (index) => left + (index + 0.5) * band;

  const svg = s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart-svg", role: "img", "aria-label": title });
  svg.append(yAxis(ticks, y, format, left), xAxis(times, bucketMs, x));
  times.forEach((_, index) => drawStack(svg, bars, index, x(index), Math.max(band * 0.72, 1), y));
  for (const line of lines) svg.append(s("path", { class: `line tone-${line.tone}`, d: linePath(line.values, x, y) }));

  const readout = h("div", { class: "readout", hidden: true });
  const guide = s("line", { class: "guide", y1: MARGIN.top, y2: MARGIN.top + PLOT_H, visibility: "hidden" });
  const overlay = s("rect", { class: "overlay", x: left, y: MARGIN.top, width: plotW, height: PLOT_H });
  svg.append(guide, overlay);
  const box = h("div", { class: "chart-box" }, svg, readout);
  overlay.addEventListener("mousemove", (event) => {
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
    const index = Math.min(times.length - 1, Math.max(0, Math.floor((point.x - left) / band)));
    guide.setAttribute("x1", x(index));
    guide.setAttribute("x2", x(index));
    guide.setAttribute("visibility", "visible");
    showReadout(readout, box, svg, x(index), times[index], bucketMs, series, index, format);
  });
  overlay.addEventListener("mouseleave", () => {
    guide.setAttribute("visibility", "hidden");
    readout.hidden = true;
  });
  return h("figure", { class: "chart" }, h("figcaption", {}, h("span", {}, title), legend(series)), box);
}

function showReadout(readout, box, svg, atX, time, bucketMs, series, index, format) {
  readout.replaceChildren(
    h("div", { class: "readout-time" }, bucketLabel(time, bucketMs, true)),
    ...series.map((item) => h("div", {}, swatch(item.tone), `${item.name}: `, h("b", {}, format(item.values[index])))),
  );
  readout.hidden = false;
  const scale = svg.getBoundingClientRect().width / WIDTH;
  const left = atX * scale;
  const flip = left > box.clientWidth / 2;
  readout.style.left = flip ? "" : `${left + 10}px`;
  readout.style.right = flip ? `${box.clientWidth - left + 10}px` : "";
}

function drawStack(svg, bars, index, centre, width, y) {
  let base = 0;
  for (const bar of bars) {
    const value = bar.values[index];
    if (!finite(value) || value <= 0) continue;
    svg.append(s("rect", {
      class: `bar tone-${bar.tone}`, x: centre - width / 2, width,
      y: y(base + value), height: Math.max(y(base) - y(base + value), 0.5),
    }));
    base += value;
  }
}

function linePath(values, x, y) {
  let path = "";
  let pen = "M";
  values.forEach((value, index) => {
    if (!finite(value)) {
      pen = "M";
      return;
    }
    path += `${pen}${x(index).toFixed(1)},${y(value).toFixed(1)}`;
    pen = "L";
  });
  return path || "M0,0";
}

function yAxis(ticks, y, format, left) {
  const group = s("g", { class: "axis" });
  ticks.forEach((value, step) => group.append(
    s("line", { class: step ? "grid" : "baseline", x1: left, x2: WIDTH - MARGIN.right, y1: y(value), y2: y(value) }),
    s("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)),
  ));
  return group;
}

function xAxis(times, bucketMs, x) {
  const group = s("g", { class: "axis" });
  const every = Math.max(1, Math.ceil(times.length / 6));
  times.forEach((time, index) => {
    if (index % every) return;
    const label = bucketLabel(time, bucketMs, false, times);
    // A label centred on a bar near either edge would be cut by the chart's box: anchor it inside.
    const half = (label.length * CHAR_W) / 2;
    const anchor = x(index) - half < 0 ? "start" : x(index) + half > WIDTH ? "end" : "middle";
    const at = anchor === "start" ? 2 : anchor === "end" ? WIDTH - 2 : x(index);
    group.append(s("text", { x: at, y: HEIGHT - 6, "text-anchor": anchor }, label));
  });
  return group;
}

const pad = (n) => String(n).padStart(2, "0");

function bucketLabel(time, bucketMs, long, times = []) {
  const date = new Date(time);
  // Day buckets start at UTC midnight (the server cuts them so); name the UTC day, not the local one.
  if (bucketMs >= DAY) return date.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const day = date.toLocaleDateString("en-US", { month: "short", day: "numeric" });
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const spansDays = times.length && times[times.length - 1] - times[0] > DAY * 1.5;
  return long || spansDays ? `${day} ${clock}` : clock;
}

function legend(series) {
  return h("span", { class: "legend" }, series.map((item) => h("span", {}, swatch(item.tone), item.name)));
}

function swatch(tone) {
  return h("i", { class: `swatch tone-${tone}` });
}

function stackTotal(bars, index) {
  return bars.reduce((sum, bar) => sum + (finite(bar.values[index]) ? bar.values[index] : 0), 0);
}

function finite(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** The smallest 1/2/4/6/8 × 10^n at or above value, so four grid steps land on round numbers. */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 4, 6, 8, 10].find((factor) => factor * magnitude >= value * (1 - 1e-9));
  return step * magnitude;
}
