"""Real-data preparation (a world, like :mod:`afford.synth`): real assets and datasets ->
the inputs of the shared geometry (:mod:`afford.geometry`) and afford's dataset formats.

- :mod:`afford.prepare.handal`: HANDAL in the BOP layout -> GT-curation inputs.
"""
