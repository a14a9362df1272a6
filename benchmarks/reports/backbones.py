"""Backbones compared on validation: the runs of one experiment that differ only in
`model.backbone` (P5 on MiniLM beside P5 on SmolLM2, ...) side by side on the validation metric
their stopping rule reads, so that a table's default backbone is chosen on validation and both
stay on record. Test numbers never enter the choice. A comparison where a row was cut by a cap,
or where the rows validated on different users, says so: it is then not a finished choice."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .records import Record
from .significance import converged
from .tables import STOP_LABELS, short, stopped_by_cell


def _family_key(rec: Record) -> str | None:
    """The run's model settings without its backbone (None: the model has no backbone setting)."""
    model = dict(rec.model_config)
    if model.pop("backbone", None) is None:
        return None
    return json.dumps(model, sort_keys=True, default=str)


def backbone_comparison(ok: dict[str, list[Record]]) -> tuple[pd.DataFrame, list[str]] | None:
    """One row per run of every family with two or more backbones (`ok`: run -> its finished
    main records), and one sentence per family: which backbone validation favours, and why the
    choice is not final where it is not. None where no family has two backbones."""
    families: dict[str, dict[str, list[Record]]] = {}
    for run, recs in ok.items():
        key = _family_key(recs[0]) if recs else None
        if key is not None:
            families.setdefault(key, {})[run] = recs
    rows, sentences = [], []
    for runs in families.values():
        if len({recs[0].model_config["backbone"] for recs in runs.values()}) < 2:
            continue
        metric = next(iter(runs.values()))[0].valid_metric
        scored, validated_on = {}, {}
        for run, recs in runs.items():
            values = [rec.raw.get("valid_metrics", {}).get(metric) for rec in recs]
            values = [v for v in values if v is not None]
            if not values:
                continue
            scored[run] = float(np.mean(values))
            validated_on[run] = "; ".join(sorted({str(rec.evaluation.get("valid_users") or rec.evaluation.get("users"))
                                                  for rec in recs}))
            rows.append({"model": run, "backbone": recs[0].model_config["backbone"],
                         f"validation {short(metric)}": f"{scored[run]:.4f}",
                         "validated on": validated_on[run], "stopped by": stopped_by_cell(recs),
                         "training s": f"{np.mean([float(r.training.get('seconds') or 0) for r in recs]):,.0f}",
                         "seeds": len(recs)})
        if len(scored) < 2:
            continue
        ranked = sorted(scored, key=scored.get, reverse=True)
        best, others = ranked[0], ranked[1:]
        sentence = (f"{' / '.join(ranked)}: validation {short(metric)} favours {best} "
                    f"({runs[best][0].model_config['backbone']}, {scored[best]:.4f} against "
                    + ", ".join(f"{scored[r]:.4f}" for r in others) + ")")
        capped = [r for r in ranked if not all(converged(rec) for rec in runs[r])]
        caveats = []
        if capped:
            caveats.append(", ".join(capped) + " stopped by a cap ("
                           + ", ".join(sorted({STOP_LABELS.get(s.get("stopped_by"), "unknown") for r in capped
                                               for rec in runs[r] for s in rec.stages})) + ")")
        if len(set(validated_on.values())) > 1:
            caveats.append("the rows validated on different users")
        sentence += ("; not a finished choice: " + " and ".join(caveats) + "." if caveats else
                     f"; {'both' if len(ranked) == 2 else 'all'} converged on the same validation users.")
        sentences.append(sentence)
    if not rows:
        return None
    return pd.DataFrame(rows), sentences
