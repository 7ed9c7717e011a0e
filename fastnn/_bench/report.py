"""The benchmark's outputs: a text table, a JSON document and a bar chart PNG."""

import json

COLUMNS = ("workload", "impl", "dtype", "thr", "samples/s", "x best peer", "x cython",
           "GFLOP/s", "% peak", "same work")


def _number(value, digits=3):
    if value is None:
        return "-"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _check_text(check):
    if not check:
        return "-"
    if check.get("ok") is None:
        return "n/a"
    if check.get("rel_err") is None:
        return "reference"
    verdict = "ok" if check["ok"] else "FAIL"
    return f"{verdict} ({check['against']} {check['rel_err']:.0e})"


def table_rows(results):
    """The table's cells, one row per run that produced a figure."""
    rows = []
    for record in results:
        if record["status"] != "ok":
            continue
        rows.append((
            f"{record['workload']} {record['workload_name']}", record["impl"], record["dtype"],
            str(record["threads"]), _number(record["samples_per_s"]),
            _number(record["ratio_to_best_peer"]), _number(record["ratio_to_cython"]),
            _number(record["gflops"]),
            _number(record["percent_of_peak"], 2), _check_text(record["check"]),
        ))
    return rows


def format_table(document):
    """The results as an aligned text table, then one line per run that did not run."""
    rows = table_rows(document["results"])
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows)]
    numeric = {4, 5, 6, 7, 8}

    def line(cells):
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(COLUMNS), line(["-" * w for w in widths])]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            lines.append("")
        lines.append(line(row))
        previous = row[0]
    not_run = [r for r in document["results"] if r["status"] != "ok"]
    seen = set()
    for record in not_run:
        key = (record["impl"], record["status"], record["reason"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"{record['impl']} {record['status']} ({record['workload']}...): "
                     f"{record['reason']}")
    for workload, note in document.get("notes", {}).items():
        lines.append(f"{workload}: {note}")
    return "\n".join(lines)


def write_json(document, path):
    """Write the result document (machine info, peak, import time, every run's fields)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=False)
        handle.write("\n")


def plot(document, path):
    """A bar chart PNG: each implementation's samples/s relative to the best peer, one
    group of bars per workload, dtype and thread count (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(
            "--plot needs matplotlib, which is not installed (pip install matplotlib)."
        ) from None
    done = [r for r in document["results"]
            if r["status"] == "ok" and r["ratio_to_best_peer"] is not None]
    if not done:
        raise RuntimeError("nothing to plot: no run has a peer to compare with.")
    groups = list(dict.fromkeys((r["workload"], r["dtype"], r["threads"]) for r in done))
    impls = list(dict.fromkeys(r["impl"] for r in done))
    width = 0.8 / len(impls)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
    for i, impl in enumerate(impls):
        ratios = {(r["workload"], r["dtype"], r["threads"]): r["ratio_to_best_peer"]
                  for r in done if r["impl"] == impl}
        positions = [g + (i - (len(impls) - 1) / 2) * width
                     for g, key in enumerate(groups) if key in ratios]
        axes.bar(positions, [ratios[key] for key in groups if key in ratios], width, label=impl)
    axes.set_yscale("log")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels([f"{w}\n{d}\n{t} thr" for w, d, t in groups], fontsize=8)
    axes.set_ylabel("samples/s relative to the best peer")
    axes.set_title(f"fastnn bench ({document['machine']['cpu']}, {document['date'][:10]})",
                   fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
