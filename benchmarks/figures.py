"""Figures for the reports (matplotlib and seaborn, drawn off-screen), each saved as PNG for the
markdown pages and PDF for papers. Every function takes a small tidy table that the reports
(benchmarks/reports/charts.py and views.py) built from the records, so nothing here reads
results/ itself.

- `latency_breakdown`: Figure 2's view, the share of each model's time per batch spent in each
  named section (beam search, decoding, ...), with the total milliseconds beside each bar.
- `grouped_bars`: Figures 4, 5 and 6: one bar per model (or ablation) and metric, with the 95%
  confidence interval over seeds as an error bar when there is more than one seed.
- `accuracy_latency`: Recall@10 against milliseconds per batch (log scale) with the Pareto
  frontier (no other model is both faster and more accurate).
- `learning_curves`: each trained row's validation metric against epoch and against training
  seconds, the best validation marked, so a reader sees which rows converged.
- `tuning_curves`: one study's trials, drawn by Optuna's own matplotlib plots: the objective and
  the best so far against trial, and each trial's validation curve (where the pruner cut it).
  They take the study (an in-memory copy of a summary's trials, built by the reports).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

PNG_DPI = 150
# Fixed metadata: a figure rebuilt from the same records gives the same bytes (no churn in git).
PNG_METADATA = {"Software": None}
PDF_METADATA = {"CreationDate": None, "Producer": None, "Creator": None}
SECTION_ORDER = ["encode", "beam_search", "decode", "score", "other"]
SECTION_LABELS = {"beam_search": "beam search", "encode": "encode", "decode": "decode (tokens -> items)",
                  "score": "score and top-k", "other": "other (outside named sections)"}


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")


def save(fig, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf; return both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.savefig(png, dpi=PNG_DPI, bbox_inches="tight", metadata=PNG_METADATA)
    fig.savefig(pdf, bbox_inches="tight", metadata=PDF_METADATA)
    plt.close(fig)
    return [png, pdf]


def ordered_sections(names) -> list[str]:
    known = [s for s in SECTION_ORDER if s in names and s != "other"]
    rest = sorted(s for s in names if s not in SECTION_ORDER)
    return known + rest + (["other"] if "other" in names else [])


def latency_breakdown(sections: pd.DataFrame, totals: dict[str, float], title: str, stem: Path,
                      batch_size: int = 32) -> list[Path]:
    """Horizontal 100% stacked bars: one per model, one segment per section.

    `sections` has columns model, section, ms (the median of each section over the timed
    batches); `totals` is each model's median milliseconds per batch, printed after its bar
    because the models' times differ by orders of magnitude, which shares make comparable.
    """
    _style()
    models = list(dict.fromkeys(sections["model"]))
    names = ordered_sections(set(sections["section"]))
    wide = sections.pivot_table(index="model", columns="section", values="ms", aggfunc="sum").reindex(
        index=models, columns=names).fillna(0.0)
    shares = wide.div(wide.sum(axis=1).replace(0.0, np.nan), axis=0).fillna(0.0)
    colours = dict(zip(names, sns.color_palette("colorblind", len(names))))
    fig, ax = plt.subplots(figsize=(8.5, 0.65 * len(models) + 1.9))
    left = np.zeros(len(models))
    y = np.arange(len(models))
    for name in names:
        ax.barh(y, shares[name].to_numpy(), left=left, color=colours[name], label=SECTION_LABELS.get(name, name),
                height=0.6, edgecolor="white")
        for row, (start, width) in enumerate(zip(left, shares[name].to_numpy())):
            if width >= 0.08:  # label only segments wide enough to hold the text
                ax.text(start + width / 2, row, f"{width:.0%}", ha="center", va="center", fontsize=9, color="white")
        left += shares[name].to_numpy()
    for row, model in enumerate(models):
        ax.text(1.02, row, f"{totals.get(model, float('nan')):,.1f} ms", va="center", fontsize=9)
    ax.set_yticks(y, models)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel(f"share of the median time per batch of {batch_size} users (total at right)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22 - 0.02 * max(0, 4 - len(models))),
              ncol=min(len(names), 3), frameon=False, fontsize=9)
    return save(fig, stem)


def grouped_bars(table: pd.DataFrame, title: str, stem: Path, *, hue_order: list[str] | None = None) -> list[Path]:
    """Bars of metric values: one panel per metric family (Recall, NDCG), @K on the x axis, one
    bar per model. `table` has columns model, metric (e.g. 'R@10'), mean, half_width (NaN for
    one seed: no error bar)."""
    _style()
    table = table.copy()
    table["family"] = table["metric"].str.split("@").str[0]
    table["k"] = "@" + table["metric"].str.split("@").str[1]
    families = list(dict.fromkeys(table["family"]))
    models = hue_order or list(dict.fromkeys(table["model"]))
    colours = dict(zip(models, sns.color_palette("colorblind", len(models))))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families) + 1.0, 3.8), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, family in zip(axes[0], families):
        part = table[table["family"] == family]
        ks = sorted(dict.fromkeys(part["k"]), key=lambda k: int(k[1:]))
        for i, model in enumerate(models):
            rows = part[part["model"] == model].set_index("k").reindex(ks)
            x = np.arange(len(ks)) + (i - (len(models) - 1) / 2) * width
            errors = rows["half_width"].to_numpy(dtype=float)
            ax.bar(x, rows["mean"].to_numpy(dtype=float), width=width * 0.95, color=colours[model],
                   label=model, yerr=None if np.isnan(errors).all() else errors,  # NaN: one seed, no bar
                   error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "0.25"})
        ax.set_xticks(np.arange(len(ks)), [f"{family}{k}" for k in ks])
        ax.set_ylabel({"R": "Recall", "N": "NDCG"}.get(family, family))
        ax.set_ylim(0, max(0.01, float(np.nanmax(part["mean"] + part["half_width"].fillna(0)))) * 1.15)
        ax.grid(axis="x", visible=False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    fig.suptitle(title, x=0.02, ha="left", fontsize=11)
    fig.tight_layout()
    return save(fig, stem)


def pareto_front(ms: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True for the points no other point beats on both axes (at most as slow and at least as
    accurate, and strictly better on one)."""
    ms, accuracy = np.asarray(ms, dtype=float), np.asarray(accuracy, dtype=float)
    on_front = np.ones(len(ms), dtype=bool)
    for i in range(len(ms)):
        dominated_by = (ms <= ms[i]) & (accuracy >= accuracy[i]) & ((ms < ms[i]) | (accuracy > accuracy[i]))
        on_front[i] = not dominated_by.any()
    return on_front


# Where a label may sit around its point, in points: beside, above and below, then further out.
LABEL_OFFSETS = [(6, 4, "left", "bottom"), (6, -4, "left", "top"), (-6, 4, "right", "bottom"),
                 (-6, -4, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top")]


def place_labels(ax, xs, ys, labels, fontsize: float = 8.5, segments=()) -> None:
    """Label every point without two labels (or a label and a point, or a label and one of the
    axis-parallel `segments` ((x0, y0), (x1, y1)) in data coordinates) overlapping: each label takes
    the first free place around its point; where none is free it moves further out, joined to its
    point by a thin line, and where nothing is free at all it takes the place that overlaps least.
    Greedy, in the order of the points from left to right."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    radius = 5 * fig.dpi / 72
    taken = [matplotlib.transforms.Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius)
             for cx, cy in centres]
    for start, end in segments:  # after the points, so that index i is still point i's own box
        (x0, y0), (x1, y1) = ax.transData.transform([start, end])
        taken.append(matplotlib.transforms.Bbox.from_extents(min(x0, x1) - 1, min(y0, y1) - 1,
                                                             max(x0, x1) + 1, max(y0, y1) + 1))

    def clash(box, own) -> float:
        """0 where the box is free (inside the axes, touching nothing but its own point), else
        how much it overlaps (square pixels; leaving the axes counts as much as covering a label)."""
        inside = box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
        covered = sum(max(0.0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0.0, min(box.y1, o.y1) - max(box.y0, o.y0))
                      for j, o in enumerate(taken) if j != own)
        return covered + (0.0 if inside else box.width * box.height)

    for i in np.argsort(xs, kind="stable"):
        candidates = [(dx, dy, ha, va, False) for dx, dy, ha, va in LABEL_OFFSETS]
        candidates += [(dx * step, dy * step * 2, ha, va, True) for step in (2, 3, 4, 5, 6, 8) for dx, dy, ha, va in LABEL_OFFSETS]
        best = None  # (clash, text, box): where no place is free, the one that overlaps least
        for dx, dy, ha, va, leader in candidates:
            text = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize, zorder=5,
                               arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if leader else None)
            # the text alone: an Annotation's own extent spans its leader line down to the point
            text.update_positions(renderer)
            box = matplotlib.text.Text.get_window_extent(text, renderer).padded(2)
            score = clash(box, i)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if score == 0:
                break
        taken.append(best[2])


def accuracy_latency(points: pd.DataFrame, title: str, stem: Path, *, metric_label: str = "Recall@10",
                     batch_size: int = 32) -> list[Path]:
    """Scatter of accuracy against ms per batch (log x), every model labelled, the Pareto
    frontier drawn as a step line through its points. `points` has columns label, ms, accuracy,
    on_front."""
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    front = points[points["on_front"]].sort_values("ms")
    rest = points[~points["on_front"]]
    if len(rest):
        ax.scatter(rest["ms"], rest["accuracy"], s=45, color="0.55", zorder=3, label="dominated")
    ax.scatter(front["ms"], front["accuracy"], s=60, color=sns.color_palette("colorblind")[3], zorder=4,
               label="Pareto frontier")
    steps = []  # the frontier as a staircase: the best accuracy within each time budget
    if len(front) > 1:
        ax.step(front["ms"], front["accuracy"], where="post", color=sns.color_palette("colorblind")[3],
                linewidth=1.2, zorder=2)
        corners = list(zip(front["ms"], front["accuracy"]))
        for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
            steps += [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))]
    ax.set_xscale("log")
    low, high = float(points["ms"].min()), float(points["ms"].max())
    span = np.log10(high / low) if high > low else 0.0
    # over a few decades 1-2-5 ticks, so that a short axis still has numbers to read
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if span < 2.5 else (1.0,)))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    pad = 10 ** max(0.25, 0.12 * span)
    ax.set_xlim(low / pad, high * pad)
    top = float(points["accuracy"].max())
    ax.set_ylim(0, top * 1.18 if top > 0 else 0.05)
    place_labels(ax, points["ms"].to_numpy(), points["accuracy"].to_numpy(), list(points["label"]), segments=steps)
    ax.set_xlabel(f"milliseconds per batch of {batch_size} users (median, log scale)")
    ax.set_ylabel(metric_label)
    ax.set_title(title, loc="left", fontsize=11)
    # below the axes: inside, it would cover points wherever they happen to fall
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False, fontsize=9)
    return save(fig, stem)


def learning_curves(curves: pd.DataFrame, title: str, stem: Path, *, metric_label: str = "Recall@10",
                    floors: list[tuple[str, float]] = ()) -> list[Path]:
    """Two panels sharing the y axis: the validation metric against epoch and against training
    seconds, one line per row (seed 0's curve when there are several), a ring at each row's
    best validation (the weights the row kept) and a cross where a row was cut by a cap.

    `curves` has columns model, epoch, seconds, value, best (bool), cut (bool: the row's last
    point when it stopped by a cap rather than by patience). `floors`: (label, value) of each
    untrained row's level on the curves' validation users, drawn as grey horizontal lines."""
    _style()
    models = list(dict.fromkeys(curves["model"]))
    # colorblind has 10 colours; a longer table gets distinct ones rather than repeats
    colours = dict(zip(models, sns.color_palette("colorblind" if len(models) <= 10 else "tab20", len(models))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, x, label in ((axes[0], "epoch", "epoch"), (axes[1], "seconds", "training seconds")):
        for model in models:
            rows = curves[curves["model"] == model].sort_values("epoch")
            ax.plot(rows[x], rows["value"], marker=".", markersize=3, linewidth=1.2, color=colours[model],
                    label=model)
            best = rows[rows["best"]]
            ax.scatter(best[x], best["value"], s=60, facecolors="none", edgecolors=colours[model], linewidths=1.5,
                       zorder=3)
            cut = rows[rows["cut"]]
            ax.scatter(cut[x], cut["value"], s=45, marker="x", color=colours[model], zorder=3)
        for (name, value), style in zip(floors, ("--", ":", "-.", (0, (5, 1, 1, 1)))):
            ax.axhline(value, color="0.45", linestyle=style, linewidth=1.1, label=f"{name}: {value:.4f}", zorder=1)
        ax.set_xlabel(label)
        if x == "seconds" and curves["seconds"].max() / max(curves["seconds"].min(), 1e-9) > 100:
            ax.set_xscale("log")
    axes[0].set_ylabel(f"validation {metric_label}")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8.5)
    fig.suptitle(title)
    fig.text(0.01, -0.03, "ring: best validation (weights kept); cross: last validation of a row cut by a cap",
             fontsize=8.5)
    return save(fig, stem)


def tuning_curves(study, metric_label: str, title: str, stem: Path) -> list[list[Path]]:
    """Optuna's plot_optimization_history (each trial's objective, the best so far) beside its
    plot_intermediate_values (each trial's validations; a pruned trial's line ends early).
    Optuna's plots switch matplotlib to its own style: the switch is kept inside this figure."""
    import warnings

    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = optuna_plots.plot_optimization_history(study, target_name=f"validation {metric_label}")
        history.set_title(f"{title}: objective and best so far", fontsize=10)  # in place of Optuna's title
        curves = optuna_plots.plot_intermediate_values(study)
        curves.set_title(f"{title}: validation curves of the trials", fontsize=10)
        history.set_xlabel("trial (counted trials, in the order they finished)")
        curves.set_xlabel("validation (step)")
        curves.set_ylabel(f"validation {metric_label}")
        if curves.get_legend() is not None:  # one entry per trial: the history's x axis names them
            curves.get_legend().remove()
        return [save(ax.figure, stem.with_name(f"{stem.name}__{part}"))
                for ax, part in ((history, "history"), (curves, "validations"))]
