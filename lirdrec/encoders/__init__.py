"""Trainable item encoders: NoteLLM-2 and aligned image-text dual encoders, with their losses.

The stage between frozen features (`lirdrec.features`) and graphs: these modules are trained,
either on their own objective (item-to-item contrastive, image-text contrastive) or inside a
recommender, and their item vectors become a modality like any `<name>_feat.npy`.
"""
