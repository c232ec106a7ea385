"""Unit tests of the retrieval metrics (immich_search.ranking.metrics)."""

from __future__ import annotations

import doctest

import pytest

from immich_search.ranking import metrics
from immich_search.ranking.metrics import evaluate, recall_at_k, reciprocal_rank


def test_doctests():
    result = doctest.testmod(metrics)
    assert result.attempted >= 3
    assert result.failed == 0


def test_recall_at_k_counts_relevant_within_cutoff():
    ranked = ["a", "x", "b", "c"]
    assert recall_at_k(ranked, {"a", "b", "c"}, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, {"a", "b", "c"}, 10) == 1.0
    assert recall_at_k([], {"a"}, 10) == 0.0


def test_recall_at_k_counts_duplicates_once():
    assert recall_at_k(["a", "a", "a"], ["a", "b"], 3) == 0.5
    assert recall_at_k(["a"], ["a", "a"], 3) == 1.0  # duplicate judgements too


def test_recall_at_k_rejects_undefined_cases():
    with pytest.raises(ValueError):
        recall_at_k(["a"], [], 10)
    with pytest.raises(ValueError):
        recall_at_k(["a"], ["a"], 0)


def test_reciprocal_rank():
    assert reciprocal_rank(["a", "b"], {"a"}) == 1.0
    assert reciprocal_rank(["x", "a", "b"], {"a", "b"}) == 0.5
    assert reciprocal_rank(["x", "y", "z", "a"], {"a"}) == 0.25
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0


def test_reciprocal_rank_with_cutoff():
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=3) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=2) == 0.0
    with pytest.raises(ValueError):
        reciprocal_rank(["a"], {"a"}, k=0)


def test_evaluate_averages_per_query_and_lists_misses():
    results = {
        "q1": ["a", "b"],  # recall 1, rr 1
        "q2": ["x", "c", "y"],  # relevant c, d: recall 1/2, rr 1/2
        "q3": ["x", "y", "z", "e"],  # e at rank 4, beyond k=3: recall 0, rr 0
    }
    queries = [
        {"query": "q1", "relevant": ["a", "b"]},
        {"query": "q2", "relevant": ["d", "c"]},
        {"query": "q3", "relevant": ["e"]},
    ]
    recall, mrr, misses = evaluate(results.__getitem__, queries, k=3)
    assert recall == pytest.approx((1 + 0.5 + 0) / 3)
    assert mrr == pytest.approx((1 + 0.5 + 0) / 3)
    assert misses == {"q2": ["d"], "q3": ["e"]}


def test_evaluate_perfect_run():
    queries = [{"query": "发票", "relevant": ["b.jpg", "a.png"]}]
    recall, mrr, misses = evaluate(lambda q: ["a.png", "b.jpg"], queries, k=10)
    assert (recall, mrr, misses) == (1.0, 1.0, {})


def test_evaluate_only_looks_at_top_k():
    seen = []

    def run(query: str) -> list[str]:
        seen.append(query)
        return ["x"] * 5 + ["a"]

    recall, mrr, _ = evaluate(run, [{"query": "q", "relevant": ["a"]}], k=5)
    assert (recall, mrr) == (0.0, 0.0)
    assert seen == ["q"]


def test_evaluate_rejects_empty_input():
    with pytest.raises(ValueError):
        evaluate(lambda q: [], [], k=10)
    with pytest.raises(ValueError):
        evaluate(lambda q: [], [{"query": "q", "relevant": []}], k=10)
