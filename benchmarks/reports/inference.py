"""Every row timed as published and at its best: the records' inference settings (latency.settings:
bfloat16, torch.compile) beside the eager run at the model's own precision, with the test metrics
under each setting, and each row's time against the proposed row's, both ways (a setting that
failed in its run is named with its error, never left out silently). The paper's
efficiency claim is a ratio of times; a ratio means something only when both sides were timed at
their best, and a faster setting that ranks differently must show it."""
from __future__ import annotations

import pandas as pd

from .records import Record


def inference_table(ok: dict[str, list[Record]], proposed: set[str]) -> pd.DataFrame | None:
    """One row per run with inference settings (its first seed): published ms, the fastest
    setting and its ms, the speed-up, R@10 as published and under that setting, and the ratio of
    its time to the (first) proposed row's, as published and best against best."""
    rows = {}
    for run, recs in ok.items():
        recorded = recs[0].raw.get("inference_settings") or []
        settings = [s for s in recorded if "latency" in s]  # a failed setting holds its error instead
        failed = [f"{s['label']} ({s['error']})" for s in recorded if "error" in s]
        published = (recs[0].latency or {}).get("ms_per_batch_median")
        if not recorded or published is None:
            continue
        # the published run competes with its settings; a tie keeps "as published"
        as_published = {"label": "as published", "latency": recs[0].latency, "metrics": recs[0].raw["metrics"]}
        best = min([as_published, *settings], key=lambda s: s["latency"]["ms_per_batch_median"])
        rows[run] = {"model": run, "published ms": published,
                     "best setting": best["label"], "best ms": best["latency"]["ms_per_batch_median"],
                     "R@10 published": as_published["metrics"].get("recall@10"),
                     "R@10 best": best["metrics"].get("recall@10"),
                     "share of peak, best": best["latency"].get("share_of_peak"),
                     "failed": "; ".join(failed)}
    if not rows:
        return None
    reference = next((rows[r] for r in rows if r in proposed), None)
    out = []
    for row in rows.values():
        shown = {"model": row["model"], "published ms/batch": f"{row['published ms']:.2f}",
                 "best setting": row["best setting"], "best ms/batch": f"{row['best ms']:.2f}",
                 "speed-up": f"{row['published ms'] / row['best ms']:.2f}x",
                 "R@10 published": f"{row['R@10 published']:.4f}", "R@10 best": f"{row['R@10 best']:.4f}",
                 "share of peak (best)": "n/a" if row["share of peak, best"] is None else f"{row['share of peak, best']:.3f}"}
        if any(r["failed"] for r in rows.values()):
            shown["settings that failed"] = row["failed"] or "-"
        if reference is not None:
            shown[f"/ {reference['model']} published"] = f"{row['published ms'] / reference['published ms']:.1f}x"
            shown[f"/ {reference['model']} best vs best"] = f"{row['best ms'] / reference['best ms']:.1f}x"
        out.append(shown)
    return pd.DataFrame(out)
