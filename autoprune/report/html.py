"""``report.html``: one self-contained page per run (opens from disk, fetches nothing).

The Pareto plot is drawn in the page (SVG) from the run's own data: hovering or clicking a point
shows its plan (ratio and kept/original channels per group); the channel chart of the front's plans
and the static plot are embedded as images; the trials table sorts by any column; the run's config
and timings close the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from autoprune.core.files import write_atomic
from autoprune.core.records import RATIO_PREFIX, RunConfig, Status
from autoprune.report.channels import channels_of, kept_channels
from autoprune.report.frames import best_within_budget
from autoprune.space.space import SearchSpace

TABLE_COLUMNS = ("trial", "status", "accuracy", "confirmed_accuracy", "confirmed_sd", "latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms",
                 "meets_budget", "macs", "mac_cut", "params", "wall_s", "error")


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def report_data(run_dir: Path) -> dict[str, Any]:
    """What the page shows, as plain data (also what tests read back from the page)."""
    conf = RunConfig.read(run_dir, what="report")
    trials = pd.read_csv(run_dir / "trials.csv") if (run_dir / "trials.csv").is_file() else pd.DataFrame()
    front = pd.read_csv(run_dir / "pareto.csv") if (run_dir / "pareto.csv").is_file() else pd.DataFrame()
    space = SearchSpace.model_validate(conf.space)
    channels = channels_of(space)
    rows = []
    for _, row in trials.iterrows():
        ratios = {c.removeprefix(RATIO_PREFIX): float(row[c]) for c in trials.columns
                  if c.startswith(RATIO_PREFIX) and not pd.isna(row[c])}
        kept = kept_channels(ratios, channels, round_to=space.round_to) if channels else {}
        plan = {g: {"ratio": r, "kept": kept.get(g), "of": channels.get(g)} for g, r in ratios.items()}
        rows.append({**{c: _clean(row[c]) for c in TABLE_COLUMNS if c in trials}, "plan": plan})
    sense = conf.sense
    best = best_within_budget(trials, sense=sense) if len(trials) else None
    flags = []  # plans whose cut in MACs bought no time on a target: not faster than a heavier plan
    for prof in conf.profiles:
        col = f"not_faster_than@{prof['name']}"
        for _, row in (trials[trials[col].fillna("").astype(str) != ""] if col in trials else trials.iloc[0:0]).iterrows():
            flags.append({"trial": str(row["trial"]), "profile": prof["name"], "not_faster_than": str(row[col]),
                          "speedup": _clean(row.get(f"speedup@{prof['name']}")), "mac_cut": _clean(row.get("mac_cut"))})
    primary = conf.profiles[0]["name"]
    base = conf.baseline.get("profiles", {}).get(primary, {})
    return {"run": run_dir.name, "model": conf.model, "data": conf.data, "profile": primary, "budget": conf.budget,
            "budget_ms": conf.budget_ms, "metric": conf.metric, "label": sense.label, "percent": sense.percent,
            "higher_is_better": sense.higher_is_better,
            "unpruned": {"accuracy": _clean(conf.baseline.get("accuracy")),
                         "latency_p50_ms": _clean(base.get("latency_p50_ms"))},
            "front": [str(t) for t in front.get("trial", [])], "trials": rows, "mac_flags": flags,
            "best": None if best is None else str(best["trial"]),
            "completed": int((trials["status"] == Status.COMPLETED).sum()) if len(trials) else 0}


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` from the run's files; returns its path."""
    run = Path(run_dir)
    data = report_data(run)
    config_text = (run / "config.yaml").read_text()
    summary = yaml.safe_load((run / "summary.yaml").read_text()) if (run / "summary.yaml").is_file() else {}
    timings = yaml.safe_dump({"timings_s": summary.get("timings_s", {}), "status": summary.get("status", {})},
                             sort_keys=False)
    payload = json.dumps(data).replace("</", "<\\/")  # nothing in the data can close the script element
    page = (_PAGE.replace("{title}", html.escape(f"autoprune run {data['run']}"))
            .replace("{heading}", html.escape(f"{data['run']}: {data['model']} on {data['data']}"))
            .replace("{subtitle}", html.escape(f"budget {data['budget']} ({data['budget_ms']:.3g} ms on "
                                               f"{data['profile']}); {len(data['trials'])} trials, "
                                               f"{data['completed']} completed; front of {len(data['front'])}"))
            .replace("{channels}", _image(run / "pareto_channels.png", "channels kept per group, plans of the front")
                     or "<p>no channel chart (no completed plan on the front)</p>")
            .replace("{static}", _image(run / "pareto.png", "metric against latency"))
            .replace("{macs}", _mac_flags(data["mac_flags"]))
            .replace("{config}", html.escape(config_text)).replace("{timings}", html.escape(timings))
            .replace("{data}", payload))
    path = run / "report.html"
    return write_atomic(path, page)  # a reader never sees half a page


def _mac_flags(flags: list[dict[str, Any]]) -> str:
    if not flags:
        return "<p>none: on every target, each plan with fewer MACs than another was also faster.</p>"
    items = "".join(
        f"<li>{html.escape(f['trial'])} on {html.escape(f['profile'])}: not faster than "
        f"{html.escape(f['not_faster_than'])}, which has more MACs"
        + (f" (speedup {f['speedup']:.2f}x for a {f['mac_cut']:.2f}x MAC cut)"
           if isinstance(f["speedup"], float) and isinstance(f["mac_cut"], float) else "") + "</li>"
        for f in flags)
    return (f"<ul>{items}</ul><p>Widths off the target's channel multiple or memory-bound layers; "
            "<code>autoprune profile probe --profile P</code> finds the multiple.</p>")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 20px; margin-bottom: 0; } h2 { font-size: 16px; margin-top: 28px; }
.sub { color: #555; margin-top: 4px; }
#plot-row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
#plot { border: 1px solid #ddd; background: #fff; }
#plan { min-width: 320px; } #plan table { border-collapse: collapse; } #plan td, #plan th { padding: 2px 8px; }
.pt { cursor: pointer; } .pt:hover { stroke: #000; stroke-width: 2; }
table.trials { border-collapse: collapse; font-size: 12px; }
table.trials th { cursor: pointer; background: #f0f0f0; position: sticky; top: 0; }
table.trials td, table.trials th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
tr.front td { font-weight: bold; } tr.failed td { color: #a33; }
img { max-width: 100%; } pre { background: #f7f7f7; padding: 8px; overflow: auto; max-height: 400px; }
</style></head>
<body>
<h1>{heading}</h1>
<p class="sub">{subtitle}</p>
<h2>Accuracy against latency (hover or click a point for its plan)</h2>
<div id="plot-row"><svg id="plot" width="640" height="420" role="img" aria-label="Pareto plot"></svg>
<div id="plan"><p>Click a point to see its plan.</p></div></div>
<h2>Channels kept per group, plans of the front</h2>
{channels}
<h2>Trials (click a column to sort)</h2>
<table class="trials" id="trials"><thead></thead><tbody></tbody></table>
<h2>Where MACs fell and latency did not</h2>
{macs}
<h2>The static plot</h2>
{static}
<h2>Config</h2>
<pre>{config}</pre>
<h2>Timings</h2>
<pre>{timings}</pre>
<script type="application/json" id="data">{data}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a fetch
const front = new Set(D.front);
// the metric as it reads: a percentage (accuracy) or its own value (perplexity)
const pct = v => v == null ? "" : (D.percent ? (100 * v).toFixed(1) + " %" : Number(v).toPrecision(4));
const num = v => v == null ? "" : (typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(3)) : String(v));

function showPlan(t) {
  const rows = Object.entries(t.plan).map(([g, p]) =>
    `<tr><td>${g}</td><td>${p.ratio.toFixed(3)}</td><td>${p.kept == null ? "" : p.kept + " / " + p.of}</td></tr>`).join("");
  document.getElementById("plan").innerHTML =
    `<h3 id="plan-title">${t.trial} (${t.status})</h3>` +
    `<p>${D.label} ${pct(t.accuracy)}` +
    (t.confirmed_accuracy == null ? "" : ` (fresh seeds: ${pct(t.confirmed_accuracy)} ± ${pct(t.confirmed_sd)})`) +
    `, ${num(t.latency_p50_ms)} ms on ${D.profile}` +
    (t.meets_budget ? ", within budget" : ", over budget") + `</p>` +
    `<table><tr><th>group</th><th>ratio</th><th>channels kept</th></tr>${rows}</table>`;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.appendChild(e);
  return e;
}

function drawPlot() {
  const svg = document.getElementById("plot"), W = 640, H = 420, L = 60, R = 20, T = 20, B = 50;
  const pts = D.trials.filter(t => t.accuracy != null && t.latency_p50_ms != null);
  const xs = pts.map(t => t.latency_p50_ms).concat([D.budget_ms, D.unpruned.latency_p50_ms].filter(v => v != null));
  const ys = pts.map(t => t.accuracy).concat([D.unpruned.accuracy].filter(v => v != null));
  if (!xs.length) { el("text", {x: L, y: H / 2}, svg).textContent = `no trial has both ${D.label} and latency yet`; return; }
  const lo = Math.min(...ys), hi = Math.max(...ys), pad = D.percent ? 0 : 0.05 * (hi - lo || Math.abs(hi) || 1);
  const x0 = 0, x1 = Math.max(...xs) * 1.05;
  const y0 = D.percent ? Math.max(0, lo - 0.05) : lo - pad, y1 = D.percent ? Math.min(1, hi + 0.02) : hi + pad;
  const X = v => L + (v - x0) / (x1 - x0 || 1) * (W - L - R), Y = v => H - B - (v - y0) / (y1 - y0 || 1) * (H - T - B);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#444"}, svg);
  for (let i = 0; i <= 4; i++) {
    const xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    el("text", {x: X(xv), y: H - B + 16, "text-anchor": "middle", "font-size": 11}, svg).textContent = xv.toFixed(2);
    el("text", {x: L - 6, y: Y(yv) + 4, "text-anchor": "end", "font-size": 11}, svg).textContent = D.percent ? (100 * yv).toFixed(1) : yv.toPrecision(3);
  }
  el("text", {x: (L + W - R) / 2, y: H - 10, "text-anchor": "middle"}, svg).textContent = `latency p50 (ms per batch) on ${D.profile}`;
  el("text", {x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`, "text-anchor": "middle"}, svg).textContent = D.percent ? `${D.label} (%)` : `${D.label} (lower is better)`;
  el("line", {x1: X(D.budget_ms), y1: T, x2: X(D.budget_ms), y2: H - B, stroke: "#c0392b", "stroke-dasharray": "5,4"}, svg);
  const fr = pts.filter(t => front.has(t.trial)).sort((a, b) => a.latency_p50_ms - b.latency_p50_ms);
  if (fr.length > 1) el("polyline", {points: fr.map(t => `${X(t.latency_p50_ms)},${Y(t.accuracy)}`).join(" "), fill: "none", stroke: "#1f4e79"}, svg);
  for (const t of pts) {
    const colour = front.has(t.trial) ? "#1f4e79" : (t.meets_budget ? "#7fb3d5" : "#bbbbbb");
    const c = el("circle", {cx: X(t.latency_p50_ms), cy: Y(t.accuracy), r: front.has(t.trial) ? 6 : 4, fill: colour, class: "pt", "data-trial": t.trial}, svg);
    el("title", {}, c).textContent = `${t.trial}: ${pct(t.accuracy)} at ${num(t.latency_p50_ms)} ms`;
    c.addEventListener("mouseenter", () => showPlan(t));
    c.addEventListener("click", () => showPlan(t));
  }
  if (D.unpruned.latency_p50_ms != null && D.unpruned.accuracy != null)
    el("text", {x: X(D.unpruned.latency_p50_ms), y: Y(D.unpruned.accuracy) + 5, "text-anchor": "middle", fill: "#e67e22", "font-size": 18}, svg).textContent = "★";
}

function drawTable() {
  const cols = Object.keys(D.trials[0] || {}).filter(c => c !== "plan");
  const head = document.querySelector("#trials thead"), body = document.querySelector("#trials tbody");
  head.innerHTML = "<tr>" + cols.map(c => `<th data-col="${c}">${c}</th>`).join("") + "</tr>";
  let key = "trial", asc = true;
  function fill() {
    const rows = [...D.trials].sort((a, b) => {
      const u = a[key], v = b[key];
      if (u == null) return 1; if (v == null) return -1;
      return (u < v ? -1 : u > v ? 1 : 0) * (asc ? 1 : -1);
    });
    body.innerHTML = rows.map(t => `<tr class="${front.has(t.trial) ? "front" : ""} ${t.status}">` +
      cols.map(c => `<td>${c.includes("accuracy") || c === "confirmed_sd" ? pct(t[c]) : num(t[c])}</td>`).join("") + "</tr>").join("");
  }
  head.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {
    const c = th.dataset.col; asc = key === c ? !asc : true; key = c; fill();
  }));
  fill();
}

drawPlot();
drawTable();
// Open on the best plan within budget (confirmed with fresh seeds where it was; else the most
// accurate), so the page shows a plan at once.
const ok = D.trials.filter(t => t.status === "completed");
const best = D.trials.find(t => t.trial === D.best) || ok.sort((a, b) => (D.higher_is_better ? 1 : -1) * (b.accuracy - a.accuracy))[0];
if (best) showPlan(best);
</script>
</body></html>
"""
