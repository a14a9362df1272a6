"""Figures: the Pareto frontier, label placement, and PNG + PDF files that rebuild byte for byte."""
import numpy as np
import pandas as pd

from benchmarks import figures


def test_pareto_front_keeps_exactly_the_undominated_points():
    ms = np.array([1.0, 2.0, 2.0, 50.0, 1500.0, 3.0])
    recall = np.array([0.05, 0.21, 0.20, 0.30, 0.25, 0.21])
    # 2.0/0.20 is beaten by 2.0/0.21; 1500/0.25 by 50/0.30; 3.0/0.21 by 2.0/0.21 (faster, as accurate)
    assert figures.pareto_front(ms, recall).tolist() == [True, True, False, True, False, False]
    assert figures.pareto_front(np.array([5.0, 5.0]), np.array([0.1, 0.1])).tolist() == [True, True]


def test_labels_of_crowded_points_do_not_overlap():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = np.array([1500.0, 1550.0, 1600.0, 1.5, 1.5, 1.6])
    ys = np.array([0.25, 0.25, 0.26, 0.30, 0.31, 0.29])
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    ax.set_xlim(0.5, 5000)
    ax.set_ylim(0, 0.4)
    labels = ["POD", "P5", "P5_seq", "fixT5", "fixHead", "Lite-LLM4Rec"]
    figures.place_labels(ax, xs, ys, labels)
    renderer = fig.canvas.get_renderer()
    import matplotlib.text  # the label text itself, without the leader line an Annotation's extent spans

    for t in ax.texts:
        t.update_positions(renderer)
    boxes = [matplotlib.text.Text.get_window_extent(t, renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == sorted(labels)
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))
    plt.close(fig)


def test_every_figure_writes_png_and_pdf_that_rebuild_identically(tmp_path):
    bars = pd.DataFrame({"model": ["Lite", "Lite", "fixT5", "fixT5"], "metric": ["R@10", "N@10"] * 2,
                         "mean": [0.27, 0.15, 0.22, 0.12], "half_width": [0.01, np.nan, 0.02, np.nan]})
    sections = pd.DataFrame({"model": ["P5", "P5", "Lite"], "section": ["beam_search", "other", "encode"],
                             "ms": [1600.0, 46.0, 6.0]})
    points = pd.DataFrame({"label": ["SASRec", "Lite", "P5"], "ms": [2.4, 6.1, 1646.0],
                           "accuracy": [0.18, 0.27, 0.21]})
    points["on_front"] = figures.pareto_front(points["ms"].to_numpy(), points["accuracy"].to_numpy())
    drawn = {
        "bars": lambda stem: figures.grouped_bars(bars, "ablations", stem),
        "sections": lambda stem: figures.latency_breakdown(sections, {"P5": 1646.0, "Lite": 6.1}, "Figure 2", stem),
        "scatter": lambda stem: figures.accuracy_latency(points, "accuracy vs latency", stem),
    }
    for name, draw in drawn.items():
        first = draw(tmp_path / "a" / name)
        second = draw(tmp_path / "b" / name)
        assert [p.suffix for p in first] == [".png", ".pdf"]
        assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and first[1].read_bytes()[:5] == b"%PDF-"
        for a, b in zip(first, second):  # no timestamps: committed figures change only with the records
            assert a.read_bytes() == b.read_bytes(), a.name
