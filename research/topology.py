"""Communication graphs for experiments, and random matchings on them (who exchanges with whom)."""

from __future__ import annotations

import numpy as np

Graph = list[list[int]]


def build(kind: str, n: int, degree: int, rng: np.random.Generator, rewire: float = 0.1) -> Graph:
    """Adjacency lists of a connected graph: ``random_regular``, ``ring``, ``full`` or ``small_world``."""
    if n == 1:
        return [[]]
    if kind == "full":
        return [[j for j in range(n) if j != i] for i in range(n)]
    if kind == "ring":
        return [sorted({(i - 1) % n, (i + 1) % n} - {i}) for i in range(n)]
    if kind == "small_world":
        return _small_world(n, max(2, degree), rewire, rng)
    if kind == "random_regular":
        return _random_regular(n, min(degree, n - 1), rng)
    raise ValueError(f"unknown topology {kind!r}: use random_regular, ring, full or small_world")


def _ring_lattice(n: int, k: int) -> set[tuple[int, int]]:
    return {tuple(sorted((i, (i + d) % n))) for i in range(n) for d in range(1, k // 2 + 1) if (i + d) % n != i}  # type: ignore[misc]


def _adjacency(n: int, edges: set[tuple[int, int]]) -> Graph:
    adj: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    return [sorted(s) for s in adj]


def _small_world(n: int, k: int, p: float, rng: np.random.Generator) -> Graph:
    """Watts-Strogatz: a ring lattice with each edge rewired with probability ``p``; the ring keeps it connected."""
    edges = _ring_lattice(n, k)
    ring = {tuple(sorted((i, (i + 1) % n))) for i in range(n)}
    out = set(ring)
    for a, b in sorted(edges - ring):
        if rng.random() < p:
            c = int(rng.integers(n))
            if c != a and tuple(sorted((a, c))) not in out:
                out.add(tuple(sorted((a, c))))  # type: ignore[arg-type]
                continue
        out.add((a, b))
    return _adjacency(n, out)  # type: ignore[arg-type]


def _random_regular(n: int, k: int, rng: np.random.Generator) -> Graph:
    """A random k-regular-ish graph: a random Hamiltonian cycle (connected) plus random perfect matchings."""
    order = rng.permutation(n)
    edges = {tuple(sorted((int(order[i]), int(order[(i + 1) % n])))) for i in range(n)}
    for _ in range(max(0, k - 2)):
        perm = rng.permutation(n)
        for i in range(0, n - 1, 2):
            a, b = int(perm[i]), int(perm[i + 1])
            if a != b:
                edges.add(tuple(sorted((a, b))))  # type: ignore[arg-type]
    return _adjacency(n, edges)  # type: ignore[arg-type]


def is_connected(graph: Graph) -> bool:
    seen, stack = {0}, [0]
    while stack:
        for j in graph[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return len(seen) == len(graph)


def random_matching(graph: Graph, online: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Each online peer, in random order, pairs with a random free online neighbor (as live peers pick)."""
    free = set(np.flatnonzero(online).tolist())
    pairs = []
    for i in rng.permutation(len(graph)).tolist():
        if i not in free:
            continue
        options = [j for j in graph[i] if j in free and j != i]
        if options:
            j = options[int(rng.integers(len(options)))]
            free -= {i, j}
            pairs.append((i, j))
    return pairs
