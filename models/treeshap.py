"""Exact path-dependent TreeSHAP for small LightGBM trees, table-driven (Fast TreeSHAP v2 idea).

Path-dependent TreeSHAP (what LightGBM's `pred_contrib=True` computes) splits each tree
into one product game per leaf: for the leaf's path features, a feature in the coalition
follows the row's own decisions, a feature outside it weights the path by the training
cover. A leaf's SHAP values therefore depend on the row only through which of its path
features (at most the tree depth, `p`) the row agrees with: 2**p patterns. At load the
values are precomputed for every leaf and pattern (memory: leaves x 2**p x p floats); per
row and tree the cost is then leaves x p lookups instead of leaves x depth**2 arithmetic.
A small tree goes one step further: its SHAP vector depends on the row only through the
tree's node decisions (d bits), so for trees with at most `MAX_TREE_BITS` internal nodes the
summed vector of every one of the 2**d decision patterns is stored too, and a row costs one
lookup of the tree's few features per tree (`PATTERN_BUDGET` bounds that memory; larger
trees keep the per-leaf tables). The result is the same exact SHAP value as LightGBM's
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
MAX_TREE_BITS = 14  # trees with at most this many internal nodes (15 leaves) get a whole-tree table
PATTERN_BUDGET = 1 << 23  # floats (64 MB) over all whole-tree tables
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
    tree_pattern_start: np.ndarray  # per tree: offset in `pattern_table`, -1 = use the leaf tables
    tree_feature_start: np.ndarray
    tree_feature: np.ndarray
    pattern_table: np.ndarray


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
    for info in model["tree_info"]:
        root = info["tree_structure"]
        if "leaf_value" in root and "split_feature" not in root:
            bias += float(root["leaf_value"])
            tree_node_start.append(len(node_rows))
            tree_leaf_start.append(len(leaves))
            continue
        base = len(node_rows)
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
                leaves.append((feats, entries, ratios, value))
                leaf_tree_base.append(base)
                continue
            gidx = base + local
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
    whole = _tree_tables(
        np.asarray(tree_node_start, dtype=np.int64), np.asarray(tree_leaf_start, dtype=np.int64),
        np.asarray(leaf_slot_start, dtype=np.int64), np.asarray(leaf_table_start, dtype=np.int64),
        slots, np.asarray(slot_mask, dtype=np.uint64), np.asarray(slot_expect, dtype=np.uint64), table,
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
        tree_pattern_start=whole[0],
        tree_feature_start=whole[1],
        tree_feature=whole[2],
        pattern_table=whole[3],
    )


def _tree_tables(
    tree_node_start: np.ndarray, tree_leaf_start: np.ndarray, leaf_slot_start: np.ndarray,
    leaf_table_start: np.ndarray, slot_feature: np.ndarray, slot_mask: np.ndarray,
    slot_expect: np.ndarray, table: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Whole-tree tables for the small trees: (pattern start, feature start, features, values)."""
    n_trees = len(tree_node_start) - 1
    pattern_start = np.full(n_trees, -1, dtype=np.int64)
    feature_start = np.zeros(n_trees + 1, dtype=np.int64)
    features: list[int] = []
    size = 0
    for t in range(n_trees):
        d = int(tree_node_start[t + 1] - tree_node_start[t])
        leaf_slots = slot_feature[
            leaf_slot_start[tree_leaf_start[t]] : leaf_slot_start[tree_leaf_start[t + 1]]
        ]
        tree_feats = list(dict.fromkeys(leaf_slots.tolist()))
        cost = (1 << d) * len(tree_feats)
        if d <= MAX_TREE_BITS and size + cost <= PATTERN_BUDGET:
            pattern_start[t] = size
            size += cost
        features.extend(tree_feats)
        feature_start[t + 1] = len(features)
    feats = np.asarray(features, dtype=np.int64)
    values = np.zeros(size)
    _fill_tree_tables(
        values, pattern_start, feature_start, feats, tree_node_start, tree_leaf_start, leaf_slot_start,
        leaf_table_start, slot_feature, slot_mask, slot_expect, table,
    )  # fmt: skip
    return pattern_start, feature_start, feats, values


@numba.njit(cache=True)
def _fill_tree_tables(  # pragma: no cover - compiled
    values: np.ndarray, pattern_start: np.ndarray, feature_start: np.ndarray, feats: np.ndarray,
    tree_node_start: np.ndarray, tree_leaf_start: np.ndarray, leaf_slot_start: np.ndarray,
    leaf_table_start: np.ndarray, slot_feature: np.ndarray, slot_mask: np.ndarray,
    slot_expect: np.ndarray, table: np.ndarray,
) -> None:  # fmt: skip
    """Each decision pattern's SHAP vector: the sum over the tree's leaves, in leaf order."""
    for t in range(pattern_start.shape[0]):
        if pattern_start[t] < 0:
            continue
        f0 = feature_start[t]
        nf = feature_start[t + 1] - f0
        d = tree_node_start[t + 1] - tree_node_start[t]
        for b in range(1 << d):
            bits = np.uint64(b)
            base_out = pattern_start[t] + b * nf
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                s0 = leaf_slot_start[leaf]
                p = leaf_slot_start[leaf + 1] - s0
                pattern = 0
                for k in range(p):
                    if (bits & slot_mask[s0 + k]) == slot_expect[s0 + k]:
                        pattern |= 1 << k
                base = leaf_table_start[leaf] + pattern * p
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
    tree_pattern_start: np.ndarray,
    tree_feature_start: np.ndarray,
    tree_feature: np.ndarray,
    pattern_table: np.ndarray,
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
            if tree_pattern_start[t] >= 0:  # a small tree: one lookup
                f0 = tree_feature_start[t]
                nf = tree_feature_start[t + 1] - f0
                base = tree_pattern_start[t] + np.int64(bits) * nf
                for m in range(nf):
                    out[i, tree_feature[f0 + m]] += pattern_table[base + m]
                continue
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                s0 = leaf_slot_start[leaf]
                p = leaf_slot_start[leaf + 1] - s0
                pattern = 0
                for k in range(p):
                    if (bits & slot_mask[s0 + k]) == slot_expect[s0 + k]:
                        pattern |= 1 << k
                base = leaf_table_start[leaf] + pattern * p
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
        tables.tree_pattern_start,
        tables.tree_feature_start,
        tables.tree_feature,
        tables.pattern_table,
    )
