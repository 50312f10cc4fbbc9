"""Dense functional correspondence (Stojanov et al., ICCV 2025): function-conditioned features,
functional/spatial/mask losses, label transfer and discovery, pseudo-labels, GT curation."""
