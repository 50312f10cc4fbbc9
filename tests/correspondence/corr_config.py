"""Build a :class:`CorrExperiment` from flat keys (every leaf name is unique across sections):
``experiment(root=..., dinov2="tiny", pairs=4, epochs=1)``; ``dinov2`` / ``clip`` name the
backbone variant. Strictly checked like a YAML file (``afford.config.from_dict``)."""

import dataclasses
import typing

from afford.config import from_dict
from afford.correspondence.config import CorrExperiment

_HINTS = typing.get_type_hints(CorrExperiment)
SECTION = {
    leaf.name: section.name
    for section in dataclasses.fields(CorrExperiment)
    for leaf in dataclasses.fields(_HINTS[section.name])
}


def experiment(**flat) -> CorrExperiment:
    raw: dict = {}
    for key, value in flat.items():
        section = SECTION[key]
        raw.setdefault(section, {})[key] = {"variant": value} if section == "backbone" else value
    return from_dict(CorrExperiment, raw)
