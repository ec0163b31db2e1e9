"""Bar charts of Tables 1, 3 and 6 and Figure 2 on a fixed 0-100 axis, with the 95 % intervals as error bars
(matplotlib, imported only when a chart is drawn)."""
import os

import paper_numbers as P
from scores import column


def bars(path, groups, series, title):
    """Grouped bars on a fixed 0-100 axis; series = [(name, [cell or None per group])], intervals as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 2), 4))
    w = 0.8 / max(1, len(series))
    for k, (name, cells) in enumerate(series):
        xs = [i + k * w for i in range(len(groups))]
        ys = [c["score"] if c else 0.0 for c in cells]
        err = [[max(0.0, y - c["ci"][0]) if c and c["ci"] else 0.0 for y, c in zip(ys, cells)],
               [max(0.0, c["ci"][1] - y) if c and c["ci"] else 0.0 for y, c in zip(ys, cells)]]
        ax.bar(xs, ys, w, yerr=err, capsize=3, label=name)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels(groups, rotation=30)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100), 95 % interval")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    ylim = ax.get_ylim()
    plt.close(fig)
    print(f"chart: {path}")
    return ylim


def charts(png, t1, rows3, t6, held_in, held_out, t3, fig2):
    """Bar charts of Tables 1, 3 and 6 and Figure 2; returns {path: y limits}."""
    stem, ext, out = *os.path.splitext(png), {}
    if t1:
        envs = [e for e in held_in + held_out if any(e in s for s in t1.values())]
        envs += sorted({e for s in t1.values() for e in s if not e.startswith(("avg_", "part_"))} - set(envs))
        out[png] = bars(png, [column(e) + ("*" if e in held_out else "") for e in envs],
             [(label, [s.get(e) for e in envs]) for label, s in t1.items()], "held-in and held-out (*) environments")
    if rows3:
        out[f"{stem}_table3{ext}"] = bars(f"{stem}_table3{ext}", [f"{d} {s}" for d, s, _ in rows3],
             [("held-in AVG", [t3[label]["in"] for _, _, label in rows3]),
              ("held-out AVG", [t3[label]["out"] for _, _, label in rows3])], "Table 3: random vs critical steps")
    if t6:
        keys = [(label, env) for label, envs in t6.items() for env in envs]
        out[f"{stem}_table6{ext}"] = bars(f"{stem}_table6{ext}", [f"{column(e)} ({label})" for label, e in keys],
             [(name, [t6[label][e][k] for label, e in keys]) for name, k in
              (("from scratch", "scratch"), ("from critical step (mean)", "critical"), ("per-task best", "best"))],
             "Table 6: from scratch vs from a critical step")
    if fig2:
        # a backbone's held-in and held-out bars; one with several ATLaS rows (selectors) shows its first
        groups = [(b, split) for b in fig2 for split in ("in", "out")]
        series = []
        for row, name in (("complete", "full trajectories"), ("critical", f"ATLaS ({P.RATIO:.0%})")):
            first = {b: next((r for r in rows.values() if r["row"] == row), None) for b, rows in fig2.items()}
            series.append((name, [first[b][split] if first[b] else None for b, split in groups]))
            series.append((f"{name}, paper", [{"score": first[b][f"paper_{split}"], "ci": None}
                                              if first[b] and first[b][f"paper_{split}"] is not None else None
                                              for b, split in groups]))
        path = f"{stem}_figure2{ext}"
        out[path] = bars(path, [f"{b or '-'} held-{split}" for b, split in groups], series,
                         "Figure 2: ATLaS vs full trajectories (held-in / held-out averages, k/N partial)")
    return out
