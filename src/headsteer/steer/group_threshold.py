"""Thresholds with one shift per group of (image, head) pairs: per head, or per class.

The steered layer keeps head h of image n when a_nh + b_g > 0, where g is the pair's group (its head, or
its image's class). At a fixed number K of kept pairs, a choice of shifts is a split of K into per-group
counts q_g (group g keeps its q_g largest logits). The search starts from the single threshold's split
(the K largest logits overall) and moves `step` kept pairs from one group to another while that raises
accuracy on the fit rows, halving `step` when no move does; so on its fit rows a grouped threshold is never
below the single threshold at the same usage. A move is scored on the images it changes only (at most 2 *
step), so a search costs little more than its moves. No library does this search over a lookup table of
outcomes, hence by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

ALL_PAIRS_UP_TO = 64
"""With at most this many ordered group pairs, every move is tried; above, only the 8 cheapest removals
times the 8 best additions (each screened alone first)."""


@dataclass
class GroupedThreshold:
    """A fitted grouped threshold."""

    shifts: torch.Tensor
    """(G,) shift b_g added to the logits of group g's pairs."""
    counts: list[int]
    """Kept pairs per group on the fit rows."""
    moves: int
    """Moves accepted by the search."""


def ranks(logits: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(N, H) rank of each pair's logit within its group (0 = the largest; ties by position)."""
    flat, g = logits.flatten(), groups.flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    order = order[torch.argsort(g[order], stable=True)]  # grouped, largest first within a group
    sizes = torch.bincount(g, minlength=num_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(flat, dtype=torch.long)
    rank[order] = torch.arange(flat.numel()) - starts[g[order]]
    return rank.view_as(logits)


def shifts_for(logits: torch.Tensor, groups: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(G,) shifts b_g under which group g keeps exactly its counts[g] largest logits (up to exact ties)."""
    out = torch.empty(counts.numel(), dtype=torch.float64)
    for g in range(counts.numel()):
        v = logits[groups == g].double().sort(descending=True).values
        q = int(counts[g])
        if v.numel() == 0 or q == 0:
            out[g] = -(v[0].item() if v.numel() else 0.0)  # a + b <= 0 for every pair of the group
        elif q == v.numel():
            out[g] = -v[-1].item() + 1e-6 * max(1.0, abs(v[-1].item()))
        else:
            out[g] = -(v[q - 1].item() + v[q].item()) / 2
    return out


class _State:
    """Per-group orders, the current counts and each row's current mask and correctness; a move is scored on
    the rows it changes only."""

    def __init__(self, logits, groups, num_groups, q, correct_rows):
        rank = ranks(logits, groups, num_groups)
        self.H, self.correct_rows = logits.shape[1], correct_rows
        flat_g, flat_r = groups.flatten(), rank.flatten()
        by_group = torch.argsort(flat_g * flat_r.numel() + flat_r, stable=True)  # grouped, rank order within
        sizes = torch.bincount(flat_g, minlength=num_groups)
        self.order = list(torch.split(by_group, sizes.tolist()))
        self.sizes, self.q = sizes, q
        self.masks = (rank < q[groups]).float()
        self.right = correct_rows(self.masks, torch.arange(logits.shape[0]))

    def gain(self, moves: list[tuple[int, int]]) -> tuple[float, torch.Tensor, torch.Tensor]:
        """(change in right rows, rows changed, their new masks) of moves [(group, +/- count)]."""
        flips = torch.cat([self._pairs(g, d) for g, d in moves])
        rows = torch.unique(flips // self.H)
        new = self.masks[rows].clone()
        for g, d in moves:
            pairs = self._pairs(g, d)
            local = torch.searchsorted(rows, pairs // self.H)
            new[local, pairs % self.H] = 1.0 if d > 0 else 0.0
        return (self.correct_rows(new, rows) - self.right[rows]).sum().item(), rows, new

    def _pairs(self, g: int, d: int) -> torch.Tensor:
        q = int(self.q[g])
        return self.order[g][q : q + d] if d > 0 else self.order[g][q + d : q]

    def apply(self, moves: list[tuple[int, int]], rows: torch.Tensor, new: torch.Tensor) -> None:
        self.right[rows] = self.correct_rows(new, rows)
        self.masks[rows] = new
        for g, d in moves:
            self.q[g] += d


def search(
    logits: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    kept: int,
    correct_rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_moves: int = 400,
) -> GroupedThreshold:
    """Grouped shifts keeping `kept` of the (image, head) pairs of logits (N, H), groups (N, H) in
    [0, num_groups); correct_rows(masks (r, H), rows (r,)) says which of those rows are right under masks."""
    top = torch.zeros(logits.numel(), dtype=torch.bool)
    top[torch.argsort(logits.flatten(), descending=True, stable=True)[:kept]] = True
    q = torch.bincount(groups.flatten()[top], minlength=num_groups)  # the single threshold's split
    state, moves = _State(logits, groups, num_groups, q.clone(), correct_rows), 0
    step = max(1, kept // (4 * num_groups))
    while step >= 1 and moves < max_moves:
        move = _best_move(state, step)
        if move is not None and move[0] > 1e-9:
            state.apply(*move[1:])
            moves += 1
        else:
            step //= 2
    return GroupedThreshold(shifts_for(logits, groups, state.q).float(), state.q.tolist(), moves)


def _best_move(state: _State, step: int):
    """(gain, moves, rows, new masks) of the best transfer of `step` kept pairs between two groups; None if none."""
    q, sizes, G = state.q, state.sizes, state.q.numel()
    donors = [g for g in range(G) if q[g] >= step]
    takers = [g for g in range(G) if q[g] + step <= sizes[g]]
    if len(donors) * len(takers) > ALL_PAIRS_UP_TO:
        donors = sorted(donors, key=lambda g: -state.gain([(g, -step)])[0])[:8]
        takers = sorted(takers, key=lambda g: -state.gain([(g, step)])[0])[:8]
    best = None
    for i in donors:
        for j in takers:
            if i != j:
                moves = [(i, -step), (j, step)]
                gain, rows, new = state.gain(moves)
                if best is None or gain > best[0]:
                    best = (gain, moves, rows, new)
    return best
