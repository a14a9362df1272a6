"""The index, reports/README.md: the protocol stated once, from what the records hold (split,
ranking, how tables and stars read, the evaluations, the timer, the devices, the data, the
libraries and the commits the records were made at), and a link to every page. A record made
without git (its commit named by $SUITE_GIT_COMMIT) is checked here against that commit's code."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from .. import records as records_mod
from .pages import protocol_line
from .paper import proposed_model
from .records import RecordSet
from .text import render
from .writer import Writer


def _named_commit_check(git: dict) -> str:
    """For a record made without git (its commit named by $SUITE_GIT_COMMIT): whether the code
    that ran, by content hash, is that commit's code."""
    if not git.get("commit_from"):
        return ""
    expected = records_mod.code_hash_at(git["commit"]) if git.get("commit") else None
    if expected is None:
        return f" (named by {git['commit_from']}, not checkable here)"
    if expected == git.get("code_hash"):
        return f" (named by {git['commit_from']}; its code hash matches)"
    return f" (named by {git['commit_from']}; the code that ran DIFFERS from that commit's)"


def protocol(records: RecordSet) -> dict:
    """What the index's protocol section states, from the records (templates/index.md.j2)."""
    evaluations = defaultdict(int)
    for r in records.ok:
        evaluations[protocol_line(r.evaluation).removeprefix("Protocol: leave-one-out; ").rstrip(".")] += 1
    lats = [r.latency for r in records.ok if r.latency]
    dtypes = defaultdict(set)
    for x in lats:
        dtypes[(x["device_name"], x["device"], x["torch_threads"])].add(str(x.get("dtype", "n/a")))
    data = {}
    for r in (r for r in records if r.has_data):
        data[(r.dataset, r.content_hash)] = {"dataset": r.dataset, "source": r.source, "k_core": r.stats["k_core"],
                                             "content_hash": r.content_hash[:12], "source_hash": r.source_hash[:12]}
    versions = defaultdict(set)
    for r in records:
        for lib, version in r.libraries.items():
            versions[lib].add(str(version))
    commits = defaultdict(int)
    for r in records:
        commits[r.commit[:10] + (" (uncommitted changes)" if r.git.get("dirty") else "") + _named_commit_check(r.git)] += 1
    return {
        "evaluations": sorted(evaluations.items(), key=lambda kv: -kv[1]),
        "latency": lats[0] if lats else None,
        "devices": [(*key, ", ".join(sorted(kinds))) for key, kinds in sorted(dtypes.items())],
        "data": [data[k] for k in sorted(data)],
        "libraries": ", ".join(f"{lib} {' / '.join(sorted(v))}" for lib, v in versions.items()),
        "commits": ", ".join(f"{c} ({n} records)" for c, n in sorted(commits.items())),
        "variants": ", ".join(f"{tag} ({n})" for tag, n in sorted(Counter(r.variant for r in records.variants).items())),
    }


def index_page(records: RecordSet, pages: list[tuple[str, Path, str]], writer: Writer) -> Path:
    """pages: (title, page file, what it shows) in the order the index lists them."""
    text = render("index.md.j2", protocol=protocol(records) if records or records.variants else None,
                  proposed=proposed_model()["label"],
                  pages=[(title, path.name, what) for title, path, what in pages])
    return writer.text("README.md", text)
