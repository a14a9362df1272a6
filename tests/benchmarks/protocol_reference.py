"""Reference implementations of the data protocol, written independently of benchmarks/data
(sets and one-element-at-a-time peeling instead of rounds over counts), for tests to compare
the suite's code with."""
from __future__ import annotations

LEAVE_ONE_OUT_MINIMUM = 3  # train >= 1, validation 1, test 1


def reference_k_core(sequences: dict[str, list[str]], k: int) -> dict[str, list[str]]:
    """The largest sub-log in which every user keeps >= max(k, 3) items and every item has >= k
    users: peel off one user or item that falls short at a time until none does (the result of
    peeling does not depend on the order, because removing anything only lowers counts)."""
    need_user = max(k, LEAVE_ONE_OUT_MINIMUM)
    users = set(sequences)
    items = {item for seq in sequences.values() for item in seq}
    while True:
        short_user = next((u for u in sorted(users) if len(set(sequences[u]) & items) < need_user), None)
        if short_user is not None:
            users.discard(short_user)
            continue
        rare_item = next((i for i in sorted(items) if sum(i in sequences[u] for u in users) < k), None)
        if rare_item is None:
            break
        items.discard(rare_item)
    return {u: [i for i in seq if i in items] for u, seq in sequences.items() if u in users}


def satisfies_k_core(sequences: dict[str, list[str]], k: int) -> bool:
    if any(len(seq) < max(k, LEAVE_ONE_OUT_MINIMUM) for seq in sequences.values()):
        return False
    users_of: dict[str, set] = {}
    for user, seq in sequences.items():
        for item in seq:
            users_of.setdefault(item, set()).add(user)
    return all(len(users) >= k for users in users_of.values())


def ml1m_pipeline(rows: list[tuple[int, int, int]], k: int) -> dict[str, list[str]]:
    """ratings rows (user, item, timestamp) in file order -> what the protocol keeps: per user, a
    stable sort by time, the first of repeated items, then the reference k-core."""
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for position, (user, item, time) in enumerate(rows):
        by_user.setdefault(str(user), []).append((time, position, str(item)))
    sequences = {}
    for user, events in by_user.items():
        seen, seq = set(), []
        for _, _, item in sorted(events):
            if item not in seen:
                seen.add(item)
                seq.append(item)
        sequences[user] = seq
    return reference_k_core(sequences, k)
