"""Medians of the runs, ratios against rqbit, and the Markdown table printed at the end."""

import statistics

BASELINE = "rqbit"


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rows):
    """One entry per (scenario, size, client): medians over the successful runs, then ratios
    against rqbit in the same scenario and size (wall time and peak RSS; lower is better)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["size_label"], r["client"]), []).append(r)
    summary = []
    for (scenario, size_label, client), runs in groups.items():
        good = [r for r in runs if r["ok"]]
        wall = _median([r["wall_s"] for r in good])
        rss = _median([r["peak_rss_mib"] for r in good])
        size = runs[0]["size_bytes"]
        summary.append({
            "scenario": scenario, "size_label": size_label, "size_bytes": size, "client": client,
            "ok_runs": len(good), "runs": len(runs),
            "wall_s": wall, "mb_per_s": size / 1e6 / wall if wall else None, "peak_rss_mib": rss,
            "cpu_s": _median([r.get("cpu_s") for r in good]),
            "seeder_peak_rss_mib": _median([r.get("seeder_peak_rss_mib") for r in runs]),
            "error": None if good else runs[-1].get("error"),
        })
    for s in summary:
        base = next((b for b in summary if b["client"] == BASELINE and b["scenario"] == s["scenario"]
                     and b["size_label"] == s["size_label"]), None)
        s["wall_vs_rqbit"] = _ratio(s["wall_s"], base and base["wall_s"])
        s["rss_vs_rqbit"] = _ratio(s["peak_rss_mib"], base and base["peak_rss_mib"])
    return summary


def _ratio(a, b):
    return a / b if a is not None and b else None


def _fmt(value, digits):
    return "-" if value is None else "%.*f" % (digits, value)


def table(summary):
    lines = ["| transfer | size | ok/runs | wall s | MB/s | peak RSS MiB | CPU s | wall / rqbit | RSS / rqbit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        transfer = s["scenario"].replace("CLIENT", s["client"])
        lines.append("| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
            transfer, s["size_label"], s["ok_runs"], s["runs"], _fmt(s["wall_s"], 2),
            _fmt(s["mb_per_s"], 0), _fmt(s["peak_rss_mib"], 1), _fmt(s["cpu_s"], 2),
            _fmt(s["wall_vs_rqbit"], 2), _fmt(s["rss_vs_rqbit"], 2)))
    return "\n".join(lines)
