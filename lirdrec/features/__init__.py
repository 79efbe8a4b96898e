"""lirdrec.features."""
