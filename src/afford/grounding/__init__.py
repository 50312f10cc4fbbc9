"""Selective Contrastive Learning for weakly supervised affordance grounding (+ baselines).

Modules (import them directly; this package stays cheap to import, no torch here):

* ``config``       -- :class:`~afford.grounding.config.GroundingConfig` (every Table 2 row) and
  the experiment tree :class:`~afford.grounding.config.GroundingExperiment` (data, backbone,
  model, train sections of the one config system, :mod:`afford.config`).
* ``prompts``      -- action / entity text prompts (REFERENCE_NOTES A).
* ``prototypes``   -- Eq. 1 prototypes ``phi_pos`` / ``phi_neg``.
* ``parts``        -- object affinity maps, exocentric part discovery (K-means + pIoU),
  egocentric part criterion ``rho`` (Eq. 6), Q+ / Q- (Eq. 7).
* ``losses``       -- prototype loss (Eq. 3-5) and pixel loss (Eq. 8), paper / official.
* ``heads``        -- trainable heads on frozen DINO keys (released-code module names).
* ``calibration``  -- CAM calibration with the object affinity map (Sec. 3.5).
* ``locate``       -- LOCATE baseline losses (part distillation + concentration).
* ``model``        -- :class:`~afford.grounding.model.GroundingModel` (losses + heatmap).
* ``build``        -- backbones, the affinity-map cache, the runtime config, checkpoint loading.
* ``train`` / ``evaluate`` / ``infer`` / ``import_ckpt`` -- training, KLD/SIM/NSS, one-image
  heatmaps, conversion of the released checkpoints.
"""
