"""Exact path-dependent TreeSHAP for small LightGBM trees, table-driven (Fast TreeSHAP v2 idea).

Path-dependent TreeSHAP (what LightGBM's `pred_contrib=True` computes) splits each tree
into one product game per leaf: for the leaf's path features, a feature in the coalition
follows the row's own decisions, a feature outside it weights the path by the training
cover. A leaf's SHAP values therefore depend on the row only through which of its path
features (at most the tree depth, `p`) the row agrees with: 2**p patterns. At load the
values are precomputed for every leaf and pattern (memory: leaves x 2**p x p floats); per
row and tree the cost is then leaves x p lookups instead of leaves x depth**2 arithmetic.
Subtrees go one step further. The SHAP values that the leaves under a node N add up to
depend on the row only through the decisions at N's ancestors and at the splits inside
N's subtree; when those are at most `MAX_TABLE_BITS` decisions, the summed vector of each
of their 2**bits patterns is stored for N, and a row costs one lookup of the subtree's
few features instead of a pass over its leaves. Each tree is cut into the largest such
subtrees from the root down (a whole small tree is one; a 31-leaf depth-6 tree is
typically four); leaves left over keep their per-leaf tables, as do all trees past
`TABLE_BUDGET` floats. The result is the same exact SHAP value as LightGBM's
(tests compare them to 1e-9), not an approximation. Trees with more than
`MAX_PATH_FEATURES` distinct features on one path, linear trees and multi-class models
fall back to LightGBM itself.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import factorial
from typing import Any

import lightgbm as lgb
import numba
import numpy as np

log = logging.getLogger(__name__)

MAX_PATH_FEATURES = 10  # 2**10 patterns x 10 values per leaf at most
MAX_TABLE_BITS = 10  # decisions (ancestors + splits) behind one subtree table: 1,024 patterns
TABLE_BUDGET = 1 << 23  # floats (64 MB) over all subtree tables
_ZERO = 1e-35  # LightGBM's kZeroThreshold
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_CATEGORICAL = 3  # node kind: threshold = start of its category codes in `cat_values`


@dataclass(frozen=True)
class TreeTables:
    """Flat arrays describing every tree's nodes, leaf paths and precomputed SHAP tables."""

    n_features: int
    bias: float
    tree_node_start: np.ndarray
    tree_leaf_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_default_left: np.ndarray
    node_missing: np.ndarray
    node_cat_end: np.ndarray
    cat_values: np.ndarray
    leaf_slot_start: np.ndarray
    leaf_table_start: np.ndarray
    slot_feature: np.ndarray
    slot_mask: np.ndarray
    slot_expect: np.ndarray
    table: np.ndarray
    tree_entry_start: np.ndarray  # per tree: its subtree tables (entries) ...
    tree_rest_start: np.ndarray  # ... and its leaves outside them (`rest_leaf`)
    rest_leaf: np.ndarray
    entry_anc_start: np.ndarray  # per entry: ancestors' node bits, in `entry_anc`
    entry_anc: np.ndarray
    entry_lo: np.ndarray  # per entry: the subtree's splits are node bits lo .. lo + size - 1
    entry_size: np.ndarray
    entry_feature_start: np.ndarray  # per entry: its features, in `entry_feature`
    entry_feature: np.ndarray
    entry_table_start: np.ndarray  # per entry: offset of its (2**bits, n features) table
    entry_table: np.ndarray


def _shapley_weights(p: int) -> np.ndarray:
    return np.array([factorial(k) * factorial(p - 1 - k) / factorial(p) for k in range(p)])


def _leaf_tables(ratios: np.ndarray, values: np.ndarray) -> np.ndarray:
    """SHAP tables for N leaves with p path features: shape (N, 2**p, p).

    ratios (N, p): cover share of the leaf's path per feature; values (N,): leaf outputs.
    """
    n, p = ratios.shape
    bits = ((np.arange(2**p)[:, None] >> np.arange(p)[None, :]) & 1).astype(float)  # (2**p, p)
    w = _shapley_weights(p)
    out = np.empty((n, 2**p, p))
    for s in range(p):
        poly = np.zeros((n, 2**p, p))
        poly[..., 0] = 1.0
        for t in range(p):
            if t == s:
                continue
            shifted = np.zeros_like(poly)
            shifted[..., 1:] = poly[..., :-1] * bits[None, :, t, None]
            poly = poly * ratios[:, None, t, None] + shifted
        gain = (poly * w).sum(axis=-1)  # (N, 2**p)
        out[..., s] = values[:, None] * (bits[None, :, s] - ratios[:, None, s]) * gain
    return out


def build_tables(booster: lgb.Booster) -> TreeTables | None:
    """Tables for `booster`, or None when a tree needs LightGBM's own TreeSHAP (see module doc)."""
    model = booster.dump_model()
    if model.get("num_tree_per_iteration", 1) != 1:
        return None
    n_features = int(model["max_feature_idx"]) + 1
    bias = 0.0
    node_rows: list[tuple[int, float, bool, int]] = []
    tree_node_start, tree_leaf_start = [0], [0]
    leaves: list[tuple[list[int], list[list[tuple[int, bool]]], list[float], float]] = []
    leaf_tree_base: list[int] = []
    cat_values: list[int] = []
    cat_end: list[int] = []
    cuts: list[list[tuple[list[int], int, int, int, int]]] = []  # per tree: subtree entries
    rests: list[list[int]] = []  # per tree: leaves outside them
    for info in model["tree_info"]:
        root = info["tree_structure"]
        if "leaf_value" in root and "split_feature" not in root:
            bias += float(root["leaf_value"])
            tree_node_start.append(len(node_rows))
            tree_leaf_start.append(len(leaves))
            cuts.append([])
            rests.append([])
            continue
        base = len(node_rows)
        local_of: dict[int, int] = {}  # id(node dict) -> node bit / leaf number
        total = float(root["internal_count"])
        stack: list[tuple[dict[str, Any], list[tuple[int, int, bool, float]]]] = [(root, [])]
        local = 0
        while stack:
            node, path = stack.pop()
            if "leaf_value" in node:
                value = float(node["leaf_value"])
                bias += value * float(node["leaf_count"]) / total
                feats: list[int] = []
                entries: list[list[tuple[int, bool]]] = []
                ratios: list[float] = []
                for gidx, feat, left, ratio in path:
                    if feat not in feats:
                        feats.append(feat)
                        entries.append([])
                        ratios.append(1.0)
                    k = feats.index(feat)
                    entries[k].append((gidx, left))
                    ratios[k] *= ratio
                if len(feats) > MAX_PATH_FEATURES:
                    return None
                local_of[id(node)] = len(leaves)
                leaves.append((feats, entries, ratios, value))
                leaf_tree_base.append(base)
                continue
            gidx = base + local
            local_of[id(node)] = local
            local += 1
            if node.get("decision_type") == "==":  # categorical: left when the code is listed
                cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
                missing = _CATEGORICAL
                threshold = float(len(cat_values))
                cat_values.extend(cats)
                cat_end.append(len(cat_values))
            elif node.get("decision_type") == "<=":
                missing = _MISSING[str(node["missing_type"])]
                threshold = float(node["threshold"])
            else:
                return None
            node_rows.append((int(node["split_feature"]), threshold, bool(node["default_left"]), missing))
            count = float(node["internal_count"])
            for child, left in ((node["left_child"], True), (node["right_child"], False)):
                c = float(child.get("internal_count", child.get("leaf_count", 0.0)))
                stack.append((child, [*path, (gidx, int(node["split_feature"]), left, c / count)]))
        if len(node_rows) - base > 64:
            return None  # a tree's decisions must fit one 64-bit mask
        cut: list[tuple[list[int], int, int, int, int]] = []
        rest: list[int] = []
        _cut_tree(root, [], local_of, cut, rest)
        cuts.append(cut)
        rests.append(rest)
        tree_node_start.append(len(node_rows))
        tree_leaf_start.append(len(leaves))
    if model["tree_info"] and any("is_linear" in t and t["is_linear"] for t in model["tree_info"]):
        return None
    # per-leaf tables, computed in groups of equal path length
    table_parts: dict[int, np.ndarray] = {}
    by_p: dict[int, list[int]] = {}
    for i, (feats, _, _, _) in enumerate(leaves):
        by_p.setdefault(len(feats), []).append(i)
    for p, idx in by_p.items():
        if p == 0:
            continue
        ratio_arr = np.array([leaves[i][2] for i in idx], dtype=float)
        values = np.array([leaves[i][3] for i in idx], dtype=float)
        for i, t in zip(idx, _leaf_tables(ratio_arr, values), strict=True):
            table_parts[i] = t.ravel()
    leaf_slot_start, leaf_table_start = [0], [0]
    slot_feature: list[int] = []
    slot_mask: list[int] = []
    slot_expect: list[int] = []
    tables = []
    for i, (feats, entries, _, _) in enumerate(leaves):
        tree_base = leaf_tree_base[i]
        for feat, ents in zip(feats, entries, strict=True):
            slot_feature.append(feat)
            mask = expect = 0
            for gidx, left in ents:  # bit = the node's index inside its tree
                mask |= 1 << (gidx - tree_base)
                expect |= int(left) << (gidx - tree_base)
            slot_mask.append(mask)
            slot_expect.append(expect)
        leaf_slot_start.append(len(slot_feature))
        part = table_parts.get(i, np.zeros(0))
        tables.append(part)
        leaf_table_start.append(leaf_table_start[-1] + len(part))
    nodes = np.array(node_rows, dtype=object).reshape(-1, 4)
    slots = np.asarray(slot_feature, dtype=np.int64)
    table = np.concatenate(tables) if tables else np.zeros(0)
    sub = _subtree_tables(
        cuts, rests, np.asarray(tree_node_start, dtype=np.int64), np.asarray(leaf_slot_start, dtype=np.int64),
        np.asarray(leaf_table_start, dtype=np.int64), slots, np.asarray(slot_mask, dtype=np.uint64),
        np.asarray(slot_expect, dtype=np.uint64), table,
    )  # fmt: skip
    return TreeTables(
        n_features=n_features,
        bias=bias,
        tree_node_start=np.asarray(tree_node_start, dtype=np.int64),
        tree_leaf_start=np.asarray(tree_leaf_start, dtype=np.int64),
        node_feature=nodes[:, 0].astype(np.int64),
        node_threshold=nodes[:, 1].astype(np.float64),
        node_default_left=nodes[:, 2].astype(np.bool_),
        node_missing=nodes[:, 3].astype(np.int64),
        node_cat_end=_cat_ends(nodes, cat_end),
        cat_values=np.asarray(cat_values, dtype=np.int64),
        leaf_slot_start=np.asarray(leaf_slot_start, dtype=np.int64),
        leaf_table_start=np.asarray(leaf_table_start, dtype=np.int64),
        slot_feature=slots,
        slot_mask=np.asarray(slot_mask, dtype=np.uint64),
        slot_expect=np.asarray(slot_expect, dtype=np.uint64),
        table=table,
        **sub,
    )


def _cut_tree(
    node: dict[str, Any], ancestors: list[int], local_of: dict[int, int],
    cut: list[tuple[list[int], int, int, int, int]], rest: list[int],
) -> tuple[int, int, int]:  # fmt: skip
    """Cut the tree under `node` into subtree tables (appended to `cut`: ancestors, lo, size,
    first leaf, leaves) and leftover leaves (`rest`); returns (splits, first leaf, leaves)."""
    if "leaf_value" in node:
        rest.append(local_of[id(node)])
        return 0, local_of[id(node)], 1
    me = local_of[id(node)]
    n_cut, n_rest = len(cut), len(rest)
    sizes = [_cut_tree(node[c], [*ancestors, me], local_of, cut, rest) for c in ("left_child", "right_child")]
    splits = 1 + sizes[0][0] + sizes[1][0]
    first = min(sizes[0][1], sizes[1][1])
    n_leaves = sizes[0][2] + sizes[1][2]
    if len(ancestors) + splits <= MAX_TABLE_BITS:  # the whole subtree fits one table
        del cut[n_cut:], rest[n_rest:]
        cut.append((ancestors, me, splits, first, n_leaves))
    return splits, first, n_leaves


def _subtree_tables(
    cuts: list[list[tuple[list[int], int, int, int, int]]], rests: list[list[int]],
    tree_node_start: np.ndarray, leaf_slot_start: np.ndarray, leaf_table_start: np.ndarray,
    slot_feature: np.ndarray, slot_mask: np.ndarray, slot_expect: np.ndarray, table: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The subtree-table arrays of `TreeTables`; trees past `TABLE_BUDGET` keep leaf tables."""
    tree_entry_start, tree_rest_start = [0], [0]
    rest_leaf: list[int] = []
    anc_start, anc, lo, size, leaf_lo, leaf_hi = [0], [], [], [], [], []
    feat_start, feats, table_start = [0], [], [0]
    for cut, rest in zip(cuts, rests, strict=True):
        tree_feats = []
        cost = 0
        for ancestors, _, splits, first, n_leaves in cut:
            slots = slot_feature[leaf_slot_start[first] : leaf_slot_start[first + n_leaves]]
            tree_feats.append(list(dict.fromkeys(slots.tolist())))
            cost += (1 << (len(ancestors) + splits)) * len(tree_feats[-1])
        if table_start[-1] + cost > TABLE_BUDGET:  # this tree keeps its leaf tables
            leaves = sorted([*rest, *(f + k for _, _, _, f, n in cut for k in range(n))])
            cut, rest, tree_feats = [], leaves, []
        for (ancestors, me, splits, first, n_leaves), fs in zip(cut, tree_feats, strict=True):
            anc.extend(ancestors)
            anc_start.append(len(anc))
            lo.append(me)
            size.append(splits)
            leaf_lo.append(first)
            leaf_hi.append(first + n_leaves)
            feats.extend(fs)
            feat_start.append(len(feats))
            table_start.append(table_start[-1] + (1 << (len(ancestors) + splits)) * len(fs))
        tree_entry_start.append(len(lo))
        rest_leaf.extend(rest)
        tree_rest_start.append(len(rest_leaf))
    out = {
        "tree_entry_start": np.asarray(tree_entry_start, dtype=np.int64),
        "tree_rest_start": np.asarray(tree_rest_start, dtype=np.int64),
        "rest_leaf": np.asarray(rest_leaf, dtype=np.int64),
        "entry_anc_start": np.asarray(anc_start, dtype=np.int64),
        "entry_anc": np.asarray(anc, dtype=np.int64),
        "entry_lo": np.asarray(lo, dtype=np.int64),
        "entry_size": np.asarray(size, dtype=np.int64),
        "entry_feature_start": np.asarray(feat_start, dtype=np.int64),
        "entry_feature": np.asarray(feats, dtype=np.int64),
        "entry_table_start": np.asarray(table_start, dtype=np.int64),
        "entry_table": np.zeros(table_start[-1]),
    }
    _fill_subtree_tables(
        out["entry_table"], out["entry_table_start"], out["entry_anc_start"], out["entry_anc"],
        out["entry_lo"], out["entry_size"], np.asarray(leaf_lo, dtype=np.int64),
        np.asarray(leaf_hi, dtype=np.int64), out["entry_feature_start"], out["entry_feature"],
        leaf_slot_start, leaf_table_start, slot_feature, slot_mask, slot_expect, table,
    )  # fmt: skip
    return out


@numba.njit(cache=True, inline="always")
def _leaf_table_row(  # pragma: no cover - compiled
    bits: np.uint64, leaf: int, leaf_slot_start: np.ndarray, leaf_table_start: np.ndarray,
    slot_mask: np.ndarray, slot_expect: np.ndarray,
) -> tuple[int, int, int]:  # fmt: skip
    """(first slot, path features p, table offset) of `leaf` for the node decisions `bits`."""
    s0 = leaf_slot_start[leaf]
    p = leaf_slot_start[leaf + 1] - s0
    pattern = 0
    for k in range(p):
        if (bits & slot_mask[s0 + k]) == slot_expect[s0 + k]:
            pattern |= 1 << k
    return s0, p, leaf_table_start[leaf] + pattern * p


@numba.njit(cache=True)
def _fill_subtree_tables(  # pragma: no cover - compiled
    values: np.ndarray, table_start: np.ndarray, anc_start: np.ndarray, anc: np.ndarray, lo: np.ndarray,
    size: np.ndarray, leaf_lo: np.ndarray, leaf_hi: np.ndarray, feat_start: np.ndarray, feats: np.ndarray,
    leaf_slot_start: np.ndarray, leaf_table_start: np.ndarray, slot_feature: np.ndarray,
    slot_mask: np.ndarray, slot_expect: np.ndarray, table: np.ndarray,
) -> None:  # fmt: skip
    """Each decision pattern's summed SHAP vector over the subtree's leaves, in leaf order."""
    one = np.uint64(1)
    for e in range(lo.shape[0]):
        a0 = anc_start[e]
        na = anc_start[e + 1] - a0
        f0 = feat_start[e]
        nf = feat_start[e + 1] - f0
        for b in range(1 << (na + size[e])):
            bits = np.uint64(0)  # the node decisions this pattern stands for
            for k in range(na):
                if (b >> k) & 1:
                    bits |= one << np.uint64(anc[a0 + k])
            bits |= np.uint64(b >> na) << np.uint64(lo[e])
            base_out = table_start[e] + b * nf
            for leaf in range(leaf_lo[e], leaf_hi[e]):
                s0, p, base = _leaf_table_row(
                    bits, leaf, leaf_slot_start, leaf_table_start, slot_mask, slot_expect
                )
                for k in range(p):
                    f = slot_feature[s0 + k]
                    for m in range(nf):
                        if feats[f0 + m] == f:
                            values[base_out + m] += table[base + k]
                            break


def _cat_ends(nodes: np.ndarray, cat_end: list[int]) -> np.ndarray:
    """Per node: end of its category codes in `cat_values` (0 for numeric nodes)."""
    out = np.zeros(len(nodes), dtype=np.int64)
    ends = iter(cat_end)
    for g in range(len(nodes)):
        if nodes[g, 3] == _CATEGORICAL:
            out[g] = next(ends)
    return out


@numba.njit(cache=True, nogil=True)
def _kernel(  # pragma: no cover - compiled
    X: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_default_left: np.ndarray,
    node_missing: np.ndarray,
    node_cat_end: np.ndarray,
    cat_values: np.ndarray,
    leaf_slot_start: np.ndarray,
    leaf_table_start: np.ndarray,
    slot_feature: np.ndarray,
    slot_mask: np.ndarray,
    slot_expect: np.ndarray,
    table: np.ndarray,
    tree_entry_start: np.ndarray,
    tree_rest_start: np.ndarray,
    rest_leaf: np.ndarray,
    entry_anc_start: np.ndarray,
    entry_anc: np.ndarray,
    entry_lo: np.ndarray,
    entry_size: np.ndarray,
    entry_feature_start: np.ndarray,
    entry_feature: np.ndarray,
    entry_table_start: np.ndarray,
    entry_table: np.ndarray,
) -> None:
    n_nodes = node_feature.shape[0]
    n_rows = X.shape[0]
    go_left = np.empty((n_rows, n_nodes), dtype=np.bool_)
    n_trees = tree_node_start.shape[0] - 1
    for i in range(n_rows):
        for g in range(n_nodes):  # LightGBM's NumericalDecision / CategoricalDecision
            v = X[i, node_feature[g]]
            miss = node_missing[g]
            if miss == 3:  # categorical: NaN and negative codes go right
                go_left[i, g] = False
                if not np.isnan(v) and v >= 0:
                    code = int(v)
                    for c in range(int(node_threshold[g]), node_cat_end[g]):
                        if cat_values[c] == code:
                            go_left[i, g] = True
                            break
                continue
            if np.isnan(v) and miss != 2:
                v = 0.0
            if (miss == 1 and abs(v) <= 1e-35) or (miss == 2 and np.isnan(v)):
                go_left[i, g] = node_default_left[g]
            else:
                go_left[i, g] = v <= node_threshold[g]
    # tree by tree, so one tree's tables stay in cache while all rows use them
    one = np.uint64(1)
    for t in range(n_trees):
        n0 = tree_node_start[t]
        for i in range(n_rows):
            bits = np.uint64(0)
            for g in range(n0, tree_node_start[t + 1]):
                if go_left[i, g]:
                    bits |= one << np.uint64(g - n0)
            for e in range(tree_entry_start[t], tree_entry_start[t + 1]):  # subtree tables
                a0 = entry_anc_start[e]
                na = entry_anc_start[e + 1] - a0
                idx = (
                    np.int64((bits >> np.uint64(entry_lo[e])) & ((one << np.uint64(entry_size[e])) - one))
                    << na
                )
                for k in range(na):
                    idx |= np.int64((bits >> np.uint64(entry_anc[a0 + k])) & one) << k
                f0 = entry_feature_start[e]
                nf = entry_feature_start[e + 1] - f0
                base = entry_table_start[e] + idx * nf
                for m in range(nf):
                    out[i, entry_feature[f0 + m]] += entry_table[base + m]
            for r in range(tree_rest_start[t], tree_rest_start[t + 1]):  # leaves outside them
                s0, p, base = _leaf_table_row(
                    bits, rest_leaf[r], leaf_slot_start, leaf_table_start, slot_mask, slot_expect
                )
                for k in range(p):
                    out[i, slot_feature[s0 + k]] += table[base + k]


_POOL: ThreadPoolExecutor | None = None
MIN_ROWS_PER_THREAD = 128


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="treeshap")
    return _POOL


def contributions(tables: TreeTables, X: np.ndarray, threads: int = 1) -> np.ndarray:
    """SHAP values (n, n_features + 1) in raw score units; last column = expected value.

    With `threads` > 1 and enough rows, row blocks run in parallel (the kernel drops the GIL).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.zeros((X.shape[0], tables.n_features + 1))
    workers = max(1, min(threads, X.shape[0] // MIN_ROWS_PER_THREAD))
    if workers == 1:
        _run(tables, X, out)
    else:
        bounds = np.linspace(0, X.shape[0], workers + 1).astype(int)
        jobs = [
            _pool(workers).submit(_run, tables, X[lo:hi], out[lo:hi]) for lo, hi in itertools.pairwise(bounds)
        ]
        for job in jobs:
            job.result()
    out[:, -1] = tables.bias
    return out


def _run(tables: TreeTables, X: np.ndarray, out: np.ndarray) -> None:
    _kernel(
        X,
        out,
        tables.tree_node_start,
        tables.tree_leaf_start,
        tables.node_feature,
        tables.node_threshold,
        tables.node_default_left,
        tables.node_missing,
        tables.node_cat_end,
        tables.cat_values,
        tables.leaf_slot_start,
        tables.leaf_table_start,
        tables.slot_feature,
        tables.slot_mask,
        tables.slot_expect,
        tables.table,
        tables.tree_entry_start,
        tables.tree_rest_start,
        tables.rest_leaf,
        tables.entry_anc_start,
        tables.entry_anc,
        tables.entry_lo,
        tables.entry_size,
        tables.entry_feature_start,
        tables.entry_feature,
        tables.entry_table_start,
        tables.entry_table,
    )
