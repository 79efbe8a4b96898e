"""Experiment runner: YAML -> every combination trained -> tidy results table."""

from lirdrec.experiments.runner import Experiment, load_experiment, results_table, run_experiment

__all__ = ["Experiment", "load_experiment", "run_experiment", "results_table"]
