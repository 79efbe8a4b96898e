"""Small utilities shared by every stage: seeding, atomic writes, hashing, logging."""

from lirdrec.utils.io import atomic_write, hash_inputs
from lirdrec.utils.seed import seed_everything

__all__ = ["atomic_write", "hash_inputs", "seed_everything"]
