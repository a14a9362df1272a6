"""Does a trained model tell its users apart? A check of a kept model for representation collapse.

    python -m tools.representation_spread .cache/trained/<run>.pt [--users 128] [--json]
    python -m tools.representation_spread .cache/checkpoints/<run>.pt --run EXPERIMENT/DATASET/RUN
        [--state model|best_state]   # a training checkpoint (--checkpoint-minutes): its weights
                                     # loaded into the run's model as its experiment file builds it

A model whose hidden states have collapsed (every token of every prompt mapped to the same
vector) ranks every user alike: its scores are its output bias, so it recommends popularity and
nothing more, whatever its loss says. The numbers below say so directly, from the validation
histories of the model's own split (no test data):

- lists: the users' top-10 lists (history removed, as the evaluator ranks): the mean share of
  items two users' lists have in common (Jaccard, over all pairs), and how many distinct items
  all the lists hold. MostPopular's lists differ only by the history masked out of them.
- scores (a model that scores every item): the spread of an item's score across users, relative
  to the spread of one user's scores across items; 0 means one ranking for everyone.
- layers (a model whose forward passes through numbered transformer blocks, `*.layer.N` /
  `*.layers.N` / `*.block.N`): per block, the spread of its output states over every position
  of every prompt, padding included (standard deviation over states, averaged over the width),
  relative to their mean absolute value. A pretrained encoder keeps this around 0.1-1; a
  collapsed one drops it by orders of magnitude in its last blocks. Only each block's first call
  counts (a beam search calls a decoder's blocks once per step).

A kept model or a checkpoint is pickled Python (benchmarks/kept_models.py): load only files this
checkout wrote. A checkpoint is read with the model the experiment file declares now, so its model
section must be the one it was trained with (another learning rate does not matter; another width
fails to load).
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.evaluate import score_spread, top_k_items, user_arguments
from benchmarks.split import leave_one_out

BLOCK = re.compile(r"(^|\.)(layer|layers|block)\.\d+$")
K = 10


def numbered_blocks(model) -> list[tuple[str, torch.nn.Module]]:
    """The transformer blocks of the model's torch modules, in registration order; the outermost
    only (a T5 block's own sub-layers are named `block.N.layer.M`)."""
    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module):
        return []
    blocks: list[tuple[str, torch.nn.Module]] = []
    for name, mod in module.named_modules():
        if BLOCK.search(name) and not any(name.startswith(outer + ".") for outer, _ in blocks):
            blocks.append((name, mod))
    return blocks


def block_spread(states: torch.Tensor) -> dict:
    flat = states.detach().float().reshape(-1, states.shape[-1])
    std = float(flat.std(0).mean()) if len(flat) > 1 else 0.0
    scale = float(flat.abs().mean())
    return {"std": std, "mean_abs": scale, "relative": std / scale if scale else 0.0}


def list_overlap(lists: np.ndarray) -> dict:
    sets = [set(row[row > 0].tolist()) for row in lists]
    pairs = [len(a & b) / max(len(a | b), 1) for a, b in itertools.combinations(sets, 2)]
    return {"mean_jaccard": float(np.mean(pairs)) if pairs else float("nan"),
            "distinct_items": len(set().union(*sets)), "users": len(sets), "k": K}


def spread(model, n_users: int = 128) -> dict:
    """The three checks above on the first `n_users` validation histories of the model's split."""
    split = leave_one_out(model.dataset)
    histories = [np.asarray(h) for h in split.valid_histories[:n_users]]
    users = user_arguments(model, None, len(histories))
    captured: dict[str, torch.Tensor] = {}

    def keep_first(name):
        def hook(_module, _inputs, output):
            if name not in captured:
                captured[name] = output[0] if isinstance(output, tuple) else output
        return hook

    hooks = [mod.register_forward_hook(keep_first(name)) for name, mod in numbered_blocks(model)]
    module = getattr(model, "module", None)
    if isinstance(module, torch.nn.Module):
        module.eval()
    report: dict = {"model": type(model).__name__}
    try:
        with torch.inference_mode():
            batch = model.prepare(histories, **users)
            if getattr(model, "output", "scores") == "scores":
                padded_scores = model.score(batch)
                lists = top_k_items(padded_scores, histories, model.n_items, K).cpu().numpy()
                spread = score_spread(padded_scores)  # None for one user or item, or a non-finite score
                if spread is not None:
                    across_users, across_items = spread
                    report["scores"] = {"std_across_users": across_users, "std_across_items": across_items,
                                        "relative": across_users / across_items if across_items else 0.0}
            else:
                lists = torch.as_tensor(model.recommend(batch, k=K)).cpu().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    report["lists"] = list_overlap(lists)
    report["layers"] = {name: block_spread(states) for name, states in captured.items()}
    return report


def model_from_checkpoint(path: Path, run: str, state: str):
    """The run's model (`EXPERIMENT/DATASET/RUN`, as its experiment file declares it, on the CPU)
    with the weights of a training checkpoint: the last epoch's (`model`) or the best validation's
    (`best_state`)."""
    from benchmarks import config as cfgmod
    from benchmarks.data import load_dataset
    from benchmarks.models import build_model

    experiment, dataset_name, run_name = run.split("/", 2)
    _, exp = cfgmod.load_experiment(experiment)
    config = cfgmod.resolve_run(experiment, exp, run_name, dataset_name, 0).config
    model = build_model(config["model"], load_dataset(config["data"], verbose=False), torch.device("cpu"))
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get(state) is None:
        raise ValueError(f"{path} holds no {state!r} weights (its keys: {sorted(saved)})")
    model.module.load_state_dict(saved[state])
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kept_model", type=Path, help="a file under .cache/trained/ (--keep-models), or "
                        "with --run a checkpoint under .cache/checkpoints/")
    parser.add_argument("--run", help="EXPERIMENT/DATASET/RUN whose model the checkpoint's weights go into")
    parser.add_argument("--state", choices=("model", "best_state"), default="model",
                        help="a checkpoint's last weights (model, the default) or its best validation's")
    parser.add_argument("--users", type=int, default=128, help="validation users to read (default 128)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not args.kept_model.is_file():
        print(f"no such kept model: {args.kept_model}", file=sys.stderr)
        return 2
    if args.users < 2:
        print("--users must be at least 2", file=sys.stderr)
        return 2
    if args.run:
        if args.run.count("/") < 2:
            print(f"--run must be EXPERIMENT/DATASET/RUN, got {args.run!r}", file=sys.stderr)
            return 2
        from benchmarks.errors import ConfigError
        try:
            model = model_from_checkpoint(args.kept_model, args.run, args.state)
        except (ConfigError, ValueError) as err:  # an unknown experiment, dataset or run; no such weights
            print(f"{args.run}: {err}", file=sys.stderr)
            return 2
    else:
        model = torch.load(args.kept_model, map_location="cpu", weights_only=False)["model"]
    report = spread(model, args.users)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    lists = report["lists"]
    print(f"{report['model']}: {lists['users']} validation users' top-{K} lists share "
          f"{lists['mean_jaccard']:.3f} of their items on average (Jaccard); {lists['distinct_items']} "
          f"distinct items in all")
    if "scores" in report:
        s = report["scores"]
        print(f"scores: std across users {s['std_across_users']:.3g}, across items "
              f"{s['std_across_items']:.3g} (relative {s['relative']:.3g})")
    for name, layer in report["layers"].items():
        print(f"  {name}: std {layer['std']:.3g}, mean |state| {layer['mean_abs']:.3g}, "
              f"relative {layer['relative']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
