"""lirdrec.experiments."""
