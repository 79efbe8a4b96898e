"""Full-ranking evaluation and metrics."""

from lirdrec.evaluate.metrics import METRICS, hits_from_topk, ranking_metrics
from lirdrec.evaluate.ranking import (
    DEFAULT_KS,
    auto_batch_size,
    evaluate,
    evaluate_splits,
    per_user_metrics,
    topk_items,
)
from lirdrec.evaluate.statistics import holm, paired_tests, seed_summary

__all__ = ["evaluate", "evaluate_splits", "per_user_metrics", "auto_batch_size", "topk_items",
           "ranking_metrics", "hits_from_topk", "METRICS", "DEFAULT_KS", "seed_summary",
           "paired_tests", "holm"]
