"""Data: MMRec-format reading, validation, the :class:`Dataset`, synthetic data and builders."""

from lirdrec.data.cold import hold_out_items
from lirdrec.data.dataset import Dataset, Split
from lirdrec.data.loader import load_dataset, parse_modalities
from lirdrec.data.sample import subsample_users

__all__ = ["Dataset", "Split", "load_dataset", "parse_modalities", "hold_out_items",
           "subsample_users"]
