"""Diagnostics, one module per job: the gradient-bias recorder callback (``recorder``), model
introspection and probes (``introspection``), popularity buckets (``popularity``), the summary
(``summary``), figures (``plots``) and the thin driver behind ``lirdrec gradient-bias``
(``gradient_bias``, which re-exports the public names of the others).
"""
