#pragma once
// The style sheet and the script of report.html (viz/html_report.hpp), kept
// apart from the C++ that gathers the data. The script reads the inline JSON
// (id "report-data") and draws every chart as inline SVG; nothing is fetched.
//
// What it promises the tests (tests/check_report.py): when the page has
// loaded, <body data-rendered="ok">, or data-errors holding every script
// error and console.error; each <section> gets data-layout, counting its
// charts, the charts with marks drawn in them, the charts that show values on
// hover, its pictures, the pictures decoded and shown, the pictures (hidden
// frames of a series too) that did not decode, and the diagram's boxes; <body data-overflow> says
// whether the page is wider than the window (it must not be, even on a phone).

namespace glassbox::viz::detail {

inline const char* report_style() {
  return R"CSS(
body { font-family: sans-serif; margin: 0 auto; padding: 16px 20px; color: #222; max-width: 1360px; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 0; } section { margin-bottom: 36px; }
p.note { color: #555; font-size: 0.92em; max-width: 80ch; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: center; margin: 6px 0; }
.controls input[type=range] { width: 220px; max-width: 60vw; vertical-align: middle; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr)); gap: 8px 24px; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #444; margin-top: 4px; }
svg.chart { width: 100%; height: auto; max-width: 640px; background: #fff; display: block; }
.axis { stroke: #444; } .grid { stroke: #eee; } .guide { stroke: #999; stroke-dasharray: 3 3; }
.tick, .label { font-size: 11px; fill: #333; }
.s0 { --c: #2166ac; } .s1 { --c: #b2182b; } .s2 { --c: #1b7837; } .s3 { --c: #762a83; }
.s4 { --c: #e08214; } .s5 { --c: #35978f; } .s6 { --c: #8c510a; } .s7 { --c: #4d4d4d; }
.line { fill: none; stroke: var(--c); stroke-width: 2; } .dot { fill: var(--c); }
.keys { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; margin: 2px 0 0 60px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; background: var(--c); }
circle.wrong { stroke: #000; stroke-width: 0.8; }
.bar { fill: #35b779; } .bar:hover { fill: #fde725; } .ridge { stroke-width: 1.5; }
#tip { position: fixed; display: none; pointer-events: none; background: rgba(255, 255, 255, 0.96); border: 1px solid #888;
       border-radius: 4px; padding: 3px 7px; font-size: 12px; white-space: pre; z-index: 10; box-shadow: 0 1px 4px #0003; }
.pictures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, var(--cell)), 1fr));
            gap: 16px 20px; align-items: start; margin-bottom: 12px; }
.pictures img { image-rendering: pixelated; max-width: 100%; height: auto; display: block; }
.series img { image-rendering: pixelated; max-width: 100%; height: auto; display: block; } .series img[hidden] { display: none; }
.series input[type=range] { width: 320px; max-width: 70vw; vertical-align: middle; }
.model { display: flex; flex-wrap: wrap; gap: 16px 32px; align-items: flex-start; }
.diagram { max-width: 100%; } .diagram svg { max-width: 100%; height: auto; }
pre.summary { background: #f7f7f7; padding: 8px; max-width: 100%; overflow-x: auto; margin: 0; }
details { margin-top: 12px; } .scroll { max-width: 100%; overflow-x: auto; }
@media (max-width: 600px) { .tick, .label { font-size: 16px; } body { padding: 8px 10px; } }
table.confusion { border-collapse: collapse; margin-bottom: 12px; font-variant-numeric: tabular-nums; }
.confusion th, .confusion td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; min-width: 2.2em; }
table.results { border-collapse: collapse; margin-bottom: 12px; }
.results th, .results td { border: 1px solid #ccc; padding: 2px 10px; text-align: right; }
)CSS";
}

inline const char* report_error_catcher() {
  return R"JS(
window.onerror = function (m) { document.body.dataset.errors = (document.body.dataset.errors || "") + m + ";"; };
console.error = (function (original) { return function () { document.body.dataset.errors = (document.body.dataset.errors || "") + Array.from(arguments).join(" ") + ";"; original.apply(console, arguments); }; })(console.error);
)JS";
}

inline const char* report_script() {
  return R"JS(
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function tag(name, parent, text) {
    const e = document.createElement(name);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v) { return v === null || v === undefined || !isFinite(v) ? "n/a" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : (+v.toPrecision(4)).toString(); }

  // ---- hover values: one box that follows the pointer
  const tipBox = tag("div", document.body);
  tipBox.id = "tip";
  tipBox.setAttribute("role", "tooltip");
  function showTip(evt, text) {
    tipBox.textContent = text;
    tipBox.style.display = "block";
    const w = tipBox.offsetWidth, h = tipBox.offsetHeight;
    tipBox.style.left = Math.max(4, Math.min(evt.clientX + 14, window.innerWidth - w - 4)) + "px";
    tipBox.style.top = Math.max(4, evt.clientY - h - 10 < 0 ? evt.clientY + 16 : evt.clientY - h - 10) + "px";
  }
  function hideTip() { tipBox.style.display = "none"; }
  // Marks with data-tip (bars, diagram boxes) show it; charts with their own hover set it as they go.
  document.addEventListener("mousemove", evt => {
    const t = evt.target.closest ? evt.target.closest("[data-tip]") : null;
    if (t) showTip(evt, t.getAttribute("data-tip"));
    else if (!evt.target.closest || !evt.target.closest(".hover")) hideTip();
  });
  document.querySelectorAll(".diagram g.node").forEach(g => {
    const title = g.querySelector("title");
    if (title) { g.setAttribute("data-tip", title.textContent); title.remove(); }
  });

  // ---- chart frames
  const W = 560, H = 270, L = 66, R = 16, T = 22, B = 42;
  // Maps data to pixels and draws the axes; opts: y0 (fixed bottom), xlabel,
  // xticks, yticks(y) for labels, xtext(i) for category labels.
  function frame(host, xs, ys, opts) {
    const svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, class: "chart", role: "img"}, host);
    const finite = ys.filter(v => v !== null && isFinite(v));
    if (!finite.length) finite.push(0);
    let y0 = opts.y0 !== undefined ? opts.y0 : Math.min(...finite), y1 = Math.max(...finite);
    if (opts.y0 === undefined && y1 > y0) { const pad = (y1 - y0) * 0.04; y0 -= pad; y1 += pad; }
    if (!(y1 > y0)) y1 = y0 + 1;
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (!(x1 > x0)) x1 = x0 + 1;
    const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}, svg);
    el("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}, svg);
    for (let i = 0; i <= 4; ++i) {
      const y = y0 + (y1 - y0) * i / 4;
      el("text", {x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick"}, svg).textContent = opts.yticks ? opts.yticks(y) : fmt(y);
      el("line", {x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: "grid"}, svg);
    }
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "label"}, svg).textContent = opts.xlabel || "";
    if (opts.xticks)
      for (let i = 0; i <= 4; ++i) {
        const x = x0 + (x1 - x0) * i / 4;
        el("text", {x: sx(x), y: H - B + 15, "text-anchor": "middle", class: "tick"}, svg).textContent = opts.xtext ? opts.xtext(x) : fmt(x);
      }
    return {svg, sx, sy, x0, x1, y0, y1};
  }
  // The series' names and colours, under the chart (an HTML row wraps where an SVG one would not).
  function keys(host, names) {
    const row = tag("div", host);
    row.className = "keys";
    names.forEach((name, k) => {
      const key = tag("span", row);
      key.className = "s" + (k % 8);
      tag("i", key).className = "swatch";
      key.appendChild(document.createTextNode(name));
    });
  }
  // Series of [x, y] points; hovering anywhere shows every series' value at the nearest x.
  function lineChart(host, series, opts) {
    const xs = [], ys = [];
    series.forEach(s => s.points.forEach(p => { if (p[1] !== null && isFinite(p[1])) { xs.push(p[0]); ys.push(p[1]); } }));
    if (!xs.length) { tag("p", host, "Nothing recorded for this chart."); return null; }
    const f = frame(host, xs, ys, Object.assign({xticks: true}, opts));
    series.forEach((s, k) => {
      const pts = s.points.filter(p => p[1] !== null && isFinite(p[1]));
      el("polyline", {points: pts.map(p => f.sx(p[0]) + "," + f.sy(p[1])).join(" "), class: "line mark s" + (k % 8)}, f.svg);
      if (pts.length <= 60) pts.forEach(p => el("circle", {cx: f.sx(p[0]), cy: f.sy(p[1]), r: 3, class: "dot s" + (k % 8)}, f.svg));
    });
    if (series.length > 1 || opts.legend) keys(host, series.map(s => s.name));
    const guide = el("line", {x1: 0, y1: T, x2: 0, y2: H - B, class: "guide", visibility: "hidden"}, f.svg);
    const pad = el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent", class: "hover"}, f.svg);
    const allX = Array.from(new Set(xs)).sort((a, b) => a - b);
    pad.addEventListener("mousemove", evt => {
      const box = f.svg.getBoundingClientRect();
      const px = (evt.clientX - box.left) * W / box.width;
      const want = f.x0 + (px - L) / (W - L - R) * (f.x1 - f.x0);
      let x = allX[0];
      for (const c of allX) if (Math.abs(c - want) < Math.abs(x - want)) x = c;
      guide.setAttribute("x1", f.sx(x)); guide.setAttribute("x2", f.sx(x)); guide.setAttribute("visibility", "visible");
      const lines = [(opts.xname || opts.xlabel || "x") + " " + (opts.xtext ? opts.xtext(x) : fmt(x))];
      series.forEach(s => { const p = s.points.find(q => q[0] === x); if (p && p[1] !== null) lines.push(s.name + ": " + (opts.value ? opts.value(p[1]) : fmt(p[1]))); });
      showTip(evt, lines.join("\n"));
    });
    pad.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); hideTip(); });
    return f;
  }
  // One bar per label, with its value on hover.
  function barChart(host, labels, values, opts) {
    const f = frame(host, [0, labels.length], values.concat(opts.y0 !== undefined ? [opts.y0] : []), opts);
    const w = (f.sx(1) - f.sx(0)) * (opts.names ? 0.7 : 0.92);
    const base = f.sy(f.y0);
    labels.forEach((label, i) => {
      const v = values[i];
      if (v === null || !isFinite(v)) return;
      const x = f.sx(i) + (f.sx(1) - f.sx(0) - w) / 2, y = f.sy(v);
      el("rect", {x, y: Math.min(y, base), width: Math.max(1, w), height: Math.max(1, Math.abs(base - y)), class: "bar mark",
                  "data-tip": label + ": " + (opts.tip ? opts.tip(v, i) : fmt(v))}, f.svg);
      if (opts.names) el("text", {x: x + w / 2, y: H - B + 15, "text-anchor": "middle", class: "tick"}, f.svg).textContent = label;
    });
    return f;
  }
  function chartBox(host, caption) {
    const figure = tag("figure", host);
    const chart = tag("div", figure);
    tag("figcaption", figure, caption);
    return {figure, chart, caption: figure.querySelector("figcaption")};
  }
  function picker(host, name, options, onchange) {
    const label = tag("label", host, name + " ");
    const select = tag("select", label);
    select.name = name;
    options.forEach((o, i) => { const opt = tag("option", select, String(o)); opt.value = i; });
    select.onchange = () => onchange(+select.value);
    return select;
  }
  function slider(host, name, values, onchange) {
    const label = tag("label", host, name + " ");
    const input = tag("input", label);
    const shown = tag("span", label);
    input.type = "range"; input.name = name; input.min = 0; input.max = Math.max(0, values.length - 1); input.step = 1;
    input.value = input.max;
    const update = () => { shown.textContent = " " + values[+input.value]; };
    input.oninput = () => { update(); onchange(+input.value); };
    update();
    return {input, set(i) { input.max = Math.max(0, values.length - 1); input.value = i; update(); }, setValues(v) { values = v; }};
  }
  function toggle(host, name, onchange) {
    const label = tag("label", host);
    const box = tag("input", label);
    box.type = "checkbox"; box.name = name;
    label.appendChild(document.createTextNode(" " + name));
    box.onchange = () => onchange(box.checked);
    return box;
  }
  const power = y => fmt(Math.pow(10, y));
  // Views chosen in the address: report.html#log-counts&no-zeros opens the
  // activation histogram with those toggles on.
  const asked = new Set(location.hash.slice(1).split("&"));

  // ---- training
  if (data.history) {
    const h = data.history, host = document.getElementById("training-charts");
    const pts = k => h.map(e => [e.epoch + 1, e[k]]);
    lineChart(chartBox(host, "Loss per epoch: training (mean over the epoch's batches) and validation.").chart,
              [{name: "loss", points: pts("loss")}, {name: "validation loss", points: pts("val_loss")}], {xlabel: "epoch", xname: "epoch"});
    lineChart(chartBox(host, "Accuracy per epoch, training and validation.").chart,
              [{name: "accuracy", points: pts("accuracy")}, {name: "validation accuracy", points: pts("val_accuracy")}], {xlabel: "epoch", xname: "epoch", value: v => (100 * v).toFixed(2) + "%"});
  }

  // ---- activations: a histogram at any recorded step, and the layer's mean and zeros over steps
  if (data.activations) {
    const layers = data.activations, host = document.getElementById("activation-charts");
    const controls = tag("div", host); controls.className = "controls";
    const charts = tag("div", host); charts.className = "charts";
    const histBox = chartBox(charts, ""), trendBox = chartBox(charts, "");
    let layer = 0, record = layers[0].records.length - 1, logScale = false, noZeros = false;
    function draw() {
      histBox.chart.textContent = ""; trendBox.chart.textContent = "";
      const l = layers[layer], r = l.records[record];
      const n = r.counts.length, w = (r.high - r.low) / Math.max(1, n);
      const counts = r.counts.slice();
      let left = 0;
      if (noZeros && r.zeros > 0 && r.low <= 0 && 0 <= r.high) {
        const bin = Math.min(n - 1, Math.floor((0 - r.low) / (r.high - r.low) * n));
        left = Math.min(counts[bin], r.zeros);
        counts[bin] -= left;
      }
      const binned = counts.reduce((a, b) => a + b, 0);
      const labels = counts.map((c, i) => "[" + fmt(r.low + i * w) + ", " + fmt(r.low + (i + 1) * w) + (i + 1 === n ? "]" : ")"));
      const values = logScale ? counts.map(c => c > 0 ? Math.log10(c) : null) : counts;
      barChart(histBox.chart, labels, values, {y0: logScale ? -0.3 : 0, xlabel: "output value (" + fmt(r.low) + " to " + fmt(r.high) + ")",
                                               yticks: logScale ? power : undefined,
                                               tip: (v, i) => counts[i] + " values (" + (binned ? (100 * counts[i] / binned).toFixed(1) : "0") + "%)"});
      histBox.caption.textContent = l.layer + ", step " + r.step + ": histogram of " + (r.counts.reduce((a, b) => a + b, 0)) + " binned output values" +
        (logScale ? ", log count scale" : "") + (noZeros ? (left ? "; the " + left + " exact zeros are left out" : "; no exact zeros to leave out") : "") +
        ". Share of zeros among all outputs: " + (100 * r.zero_fraction).toFixed(1) + "%.";
      lineChart(trendBox.chart, [{name: "mean", points: l.records.map(q => [q.step, q.mean])}, {name: "share of zeros", points: l.records.map(q => [q.step, q.zero_fraction])}],
                {xlabel: "training step", xname: "step"});
      trendBox.caption.textContent = l.layer + ": mean output and share of exact zeros at each recorded step.";
    }
    picker(controls, "layer", layers.map(l => l.layer), i => { layer = i; record = layers[i].records.length - 1; steps.setValues(layers[i].records.map(r => r.step)); steps.set(record); draw(); });
    const steps = slider(controls, "step", layers[0].records.map(r => r.step), i => { record = i; draw(); });
    toggle(controls, "log count scale", on => { logScale = on; draw(); }).checked = logScale = asked.has("log-counts");
    toggle(controls, "exclude exact zeros", on => { noZeros = on; draw(); }).checked = noZeros = asked.has("no-zeros");
    draw();
  }

  // ---- gradient flow: across layers at one step, and over steps per layer
  if (data.gradients) {
    const g = data.gradients, host = document.getElementById("gradient-charts");
    const controls = tag("div", host); controls.className = "controls";
    const charts = tag("div", host); charts.className = "charts";
    const barBox = chartBox(charts, ""), lineBox = chartBox(charts, "");
    let index = g.steps.length - 1, shown = -1;
    const log = v => v > 0 && isFinite(v) ? Math.log10(v) : null;
    function drawBars() {
      barBox.chart.textContent = "";
      const values = g.layers.map(l => log(l.norms[index]));
      const finite = values.filter(v => v !== null);
      barChart(barBox.chart, g.layers.map(l => l.layer), values, {y0: finite.length ? Math.floor(Math.min(...finite)) - 1 : 0, names: g.layers.length <= 8,
                                                                  xlabel: "layer, input side to output side", yticks: power, tip: v => "|dL/dy| = " + fmt(Math.pow(10, v))});
      barBox.caption.textContent = "Step " + g.steps[index] + ": norm of the loss gradient with respect to each layer's output (log scale). A layer far below its neighbours passes little gradient back.";
    }
    function drawLines() {
      lineBox.chart.textContent = "";
      const chosen = shown < 0 ? g.layers : [g.layers[shown]];
      lineChart(lineBox.chart, chosen.map(l => ({name: l.layer, points: g.steps.map((s, i) => [s, log(l.norms[i])])})),
                {xlabel: "training step", xname: "step", yticks: power, value: v => fmt(Math.pow(10, v)), legend: true});
      lineBox.caption.textContent = (shown < 0 ? "Every layer" : g.layers[shown].layer) + ": |dL/dy| over the recorded steps (log scale).";
    }
    slider(controls, "step", g.steps, i => { index = i; drawBars(); });
    picker(controls, "layer over steps", ["all layers"].concat(g.layers.map(l => l.layer)), i => { shown = i - 1; drawLines(); });
    drawBars(); drawLines();
  }

  // ---- parameters: each parameter's values or gradients, one histogram per recorded epoch
  if (data.parameters) {
    const ps = data.parameters, host = document.getElementById("parameter-charts");
    const controls = tag("div", host); controls.className = "controls";
    const charts = tag("div", host); charts.className = "charts";
    const box = chartBox(charts, ""), statsBox = chartBox(charts, "");
    let which = 0, what = "value";
    function draw() {
      box.chart.textContent = ""; statsBox.chart.textContent = "";
      const p = ps[which], records = p.records.filter(r => r[what].counts.length);
      if (!records.length) { tag("p", box.chart, "No " + (what === "grad" ? "gradients" : "values") + " recorded yet."); return; }
      const lo = Math.min(...records.map(r => r[what].low)), hi = Math.max(...records.map(r => r[what].high));
      // A ridgeline: the oldest record at the top, each one lower, the newest in front.
      const f = frame(box.chart, [lo, hi], [0, records.length + 0.5], {y0: 0, xticks: true, xlabel: (what === "grad" ? "gradient" : "value") + " of " + p.parameter, yticks: () => ""});
      const band = (f.sy(0) - f.sy(1)), rows = [];
      records.forEach((r, k) => {
        const h = r[what], n = h.counts.length, top = Math.max(...h.counts) || 1, base = f.sy(records.length - 1 - k);
        const wbin = (h.high - h.low) / n, points = [[f.sx(h.low), base]];
        h.counts.forEach((c, i) => { points.push([f.sx(h.low + (i + 0.5) * wbin), base - c / top * band * 1.5]); });
        points.push([f.sx(h.high), base]);
        const shade = Math.round(200 - 170 * (records.length > 1 ? k / (records.length - 1) : 1));
        el("polygon", {points: points.map(q => q.join(",")).join(" "), class: "ridge mark", fill: "rgba(33,102,172,0.12)",
                       stroke: "rgb(" + shade + "," + shade + "," + Math.min(255, shade + 60) + ")"}, f.svg);
        if (k % Math.ceil(records.length / 10) === 0 || k === records.length - 1)  // at most about 10 labels
          el("text", {x: L - 6, y: base + 4, "text-anchor": "end", class: "tick"}, f.svg).textContent = r.epochs_done ? "epoch " + r.epochs_done : "init";
        rows.push({r, h, base, wbin});
      });
      const pad = el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "transparent", class: "hover"}, f.svg);
      pad.addEventListener("mousemove", evt => {
        const b = f.svg.getBoundingClientRect(), px = (evt.clientX - b.left) * W / b.width, py = (evt.clientY - b.top) * H / b.height;
        let row = rows[0];
        for (const q of rows) if (Math.abs(q.base - py) < Math.abs(row.base - py)) row = q;
        const v = f.x0 + (px - L) / (W - L - R) * (f.x1 - f.x0), i = Math.floor((v - row.h.low) / row.wbin);
        const label = row.r.epochs_done ? "after epoch " + row.r.epochs_done : "before training";
        showTip(evt, label + " (" + row.r.steps_taken + " steps)\n" + (i >= 0 && i < row.h.counts.length ?
          "[" + fmt(row.h.low + i * row.wbin) + ", " + fmt(row.h.low + (i + 1) * row.wbin) + "): " + row.h.counts[i] + " values" : "outside this record's range") +
          "\nmean " + fmt(row.h.mean) + ", std " + fmt(row.h.std));
      });
      pad.addEventListener("mouseleave", hideTip);
      box.caption.textContent = p.parameter + ": histogram of its " + (what === "grad" ? "gradient (the last step's before each record)" : "values") + " before training and after each epoch, oldest at the top.";
      lineChart(statsBox.chart, [{name: "std", points: records.map(r => [r.steps_taken, r[what].std])}, {name: "|mean|", points: records.map(r => [r.steps_taken, Math.abs(r[what].mean)])}],
                {xlabel: "training step", xname: "step"});
      statsBox.caption.textContent = p.parameter + ": spread (std) and |mean| of its " + (what === "grad" ? "gradient" : "values") + " at each record.";
    }
    picker(controls, "parameter", ps.map(p => p.parameter), i => { which = i; draw(); });
    picker(controls, "show", ["values", "gradients"], i => { what = i ? "grad" : "value"; draw(); });
    draw();
  }

  // ---- embeddings: samples on a plane, coloured by class; hover names the nearest one
  if (data.embeddings) {
    const host = document.getElementById("embedding-charts"), S = 400, P = 10;
    const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    data.embeddings.forEach(b => {
      tag("h3", host, b.heading);
      if (b.description) tag("p", host, b.description).className = "note";
      const dots = [];
      // The legend first: hovering a class fades the others.
      const row = tag("div", host); row.className = "keys";
      b.classes.forEach((c, k) => {
        const key = tag("span", row), swatch = tag("i", key);
        swatch.className = "swatch"; swatch.style.background = palette[k % 10];
        key.appendChild(document.createTextNode(c));
        key.onmouseenter = () => dots.forEach(d => { d.style.opacity = +d.dataset.class === k ? 1 : 0.08; });
        key.onmouseleave = () => dots.forEach(d => { d.style.opacity = ""; });
      });
      const charts = tag("div", host); charts.className = "charts";
      const name = c => b.classes[c] !== undefined ? b.classes[c] : String(c);
      const about = i => "#" + (b.ids.length ? b.ids[i] : i) + ": " + name(b.labels[i]) + (b.predicted.length ? ", predicted " + name(b.predicted[i]) : "");
      b.views.forEach(v => {
        const box = chartBox(charts, v.caption);
        const svg = el("svg", {viewBox: "0 0 " + S + " " + S, width: S, height: S, class: "chart", role: "img"}, box.chart);
        const at = (i, axis) => P + (axis ? (4000 - v.y[i]) : v.x[i]) / 4000 * (S - 2 * P);
        v.x.forEach((_, i) => dots.push(el("circle", {cx: at(i, 0), cy: at(i, 1), r: 2.2, fill: palette[b.labels[i] % 10], "data-class": b.labels[i],
                                                    class: "mark" + (b.predicted.length && b.predicted[i] !== b.labels[i] ? " wrong" : "")}, svg)));
        const ring = el("circle", {r: 5, fill: "none", stroke: "#000", visibility: "hidden"}, svg);
        const pad = el("rect", {x: 0, y: 0, width: S, height: S, fill: "transparent", class: "hover"}, svg);
        pad.addEventListener("mousemove", evt => {
          const r = svg.getBoundingClientRect(), px = (evt.clientX - r.left) * S / r.width, py = (evt.clientY - r.top) * S / r.height;
          let best = -1, d = 100;  // within 10 units
          v.x.forEach((_, i) => { const e = (at(i, 0) - px) ** 2 + (at(i, 1) - py) ** 2; if (e < d) { d = e; best = i; } });
          if (best < 0) { ring.setAttribute("visibility", "hidden"); hideTip(); return; }
          ring.setAttribute("cx", at(best, 0)); ring.setAttribute("cy", at(best, 1)); ring.setAttribute("visibility", "visible");
          showTip(evt, about(best));
        });
        pad.addEventListener("mouseleave", () => { ring.setAttribute("visibility", "hidden"); hideTip(); });
      });
    });
  }

  // ---- picture series: the slider shows one frame and its caption
  document.querySelectorAll("figure.series").forEach(figure => {
    const frames = Array.from(figure.querySelectorAll(".frames img")), caption = figure.querySelector("figcaption");
    figure.querySelector("input.frame-slider").oninput = evt => {
      frames.forEach((img, i) => { img.hidden = i !== +evt.target.value; });
      caption.textContent = frames[+evt.target.value].alt;
    };
  });

  // ---- what rendered, for a reader and for the tests
  function describe() {
    document.querySelectorAll("section").forEach(s => {
      const charts = Array.from(s.querySelectorAll("svg.chart"));
      const drawn = charts.filter(c => c.getBoundingClientRect().width > 0 && c.querySelector(".mark")).length;
      const all = Array.from(s.querySelectorAll("img")), images = all.filter(i => !i.hidden);  // a series shows one frame
      const broken = all.filter(i => !i.complete || i.naturalWidth === 0).length;
      const shown = images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width >= Math.min(i.naturalWidth, 120)).length;
      const hover = charts.filter(c => c.querySelector(".hover, [data-tip]")).length;
      s.dataset.layout = "charts=" + charts.length + " drawn=" + drawn + " hover=" + hover + " images=" + images.length + " shown=" + shown + " broken=" + broken +
                         " nodes=" + s.querySelectorAll("svg.diagram g.node").length;
    });
    document.body.dataset.overflow = document.documentElement.scrollWidth > window.innerWidth + 1 ? "yes" : "no";
    document.body.dataset.rendered = "ok";
  }
  if (document.readyState === "complete") describe(); else window.addEventListener("load", describe);
})();
)JS";
}

}  // namespace glassbox::viz::detail
