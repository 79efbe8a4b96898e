"""lirdrec.diagnostics."""
