"""lirdrec: graph-based multimodal collaborative filtering around LIRDRec."""

__version__ = "0.1.0"
