"""Retrieval quality metrics for ranked search results: recall@k and mean reciprocal rank.

Shared by ``benchmarks/ocr_search_quality.py`` and ``tests/test_search_quality.py`` so that the figures
printed by the benchmark and the bar the tests hold the code to are computed by the same code.

Definitions (binary relevance, one ranked list per query, documents identified by a string such as the
photo's file name):

* recall@k = |relevant ∩ top k| / |relevant|: the fraction of the relevant documents that appear among
  the first ``k`` results. Manning, Raghavan and Schütze, *Introduction to Information Retrieval*
  (Cambridge University Press, 2008), section 8.3 (recall) and 8.4 (precision and recall at a cut-off k).
* reciprocal rank = 1 / rank of the first relevant result (ranks start at 1), 0 when none is found
  within the cut-off. Its mean over a set of queries is the mean reciprocal rank (MRR): Voorhees,
  "The TREC-8 Question Answering Track Report", TREC 1999; Manning et al., section 8.4. Here it is
  evaluated on the top ``k`` results, as the search returns (MRR@k).

Both are averaged over queries with equal weight per query (macro-average).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Return the fraction of ``relevant`` documents found among the first ``k`` of ``ranked``.

    Duplicates in ``ranked`` count once. Manning et al., *Introduction to Information Retrieval*,
    section 8.4.

    Args:
        ranked: document ids, best first.
        relevant: the ids judged relevant for the query (at least one).
        k: the cut-off (>= 1).

    Returns:
        A value in [0, 1].

    Raises:
        ValueError: ``relevant`` is empty (recall is undefined) or ``k`` < 1.

    >>> recall_at_k(["a", "x", "b"], {"a", "b", "c", "d"}, 2)
    0.25
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    wanted = set(relevant)
    if not wanted:
        raise ValueError("recall is undefined for a query without relevant documents")
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int | None = None) -> float:
    """Return 1 / (rank of the first relevant document in ``ranked``), or 0 when there is none.

    Ranks start at 1. With ``k``, only the first ``k`` results are looked at (reciprocal rank at k).
    Voorhees, TREC-8 QA track report (1999); Manning et al., *Introduction to IR*, section 8.4.

    >>> reciprocal_rank(["x", "y", "a"], {"a"})
    0.3333333333333333
    >>> reciprocal_rank(["x", "y", "a"], {"a"}, k=2)
    0.0
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    wanted = set(relevant)
    for rank, doc in enumerate(ranked[:k] if k is not None else ranked, start=1):
        if doc in wanted:
            return 1.0 / rank
    return 0.0


def evaluate(
    run_query: Callable[[str], list[str]],
    queries: Iterable[Mapping[str, object]],
    k: int,
) -> tuple[float, float, dict[str, list[str]]]:
    """Run every query and return (mean recall@k, MRR@k, misses).

    Args:
        run_query: takes a query string, returns the ranked document ids (best first); only the first
            ``k`` are looked at.
        queries: ``{"query": str, "relevant": [ids]}`` items, as in ``corpus/dev/queries.json``.
        k: the cut-off.

    Returns:
        The macro-averaged recall@k, the mean reciprocal rank within the top k, and for each query that
        left relevant documents out of its top k, those documents (sorted), keyed by the query.

    Raises:
        ValueError: no queries, a query without relevant documents, or ``k`` < 1.
    """
    recalls: list[float] = []
    ranks: list[float] = []
    misses: dict[str, list[str]] = {}
    for item in queries:
        text = str(item["query"])
        relevant = [str(doc) for doc in item["relevant"]]  # type: ignore[union-attr]
        ranked = list(run_query(text))[:k]
        recalls.append(recall_at_k(ranked, relevant, k))
        ranks.append(reciprocal_rank(ranked, relevant, k))
        missing = sorted(set(relevant).difference(ranked))
        if missing:
            misses[text] = missing
    if not recalls:
        raise ValueError("no queries to evaluate")
    return sum(recalls) / len(recalls), sum(ranks) / len(ranks), misses
