"""lirdrec.cli."""
