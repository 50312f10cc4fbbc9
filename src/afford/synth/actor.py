"""A simple actor (forearm, palm, fingers, thumb from capsules and spheres) and use props.

Everything is returned as :class:`afford.synth.render.SceneMesh` extras in world
coordinates: they occlude the object in renders but never enter its mask or part ids.
"""

from __future__ import annotations

import numpy as np
import trimesh

from afford.synth import shapes as S
from afford.synth.render import SceneMesh

__all__ = ["SKIN_TONES", "hand_and_arm", "contact_point", "use_prop"]

SKIN_TONES = np.array(
    [
        [0.98, 0.84, 0.72],
        [0.93, 0.76, 0.62],
        [0.84, 0.64, 0.49],
        [0.72, 0.52, 0.38],
        [0.55, 0.38, 0.26],
        [0.40, 0.27, 0.18],
    ]
)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def contact_point(vertices: np.ndarray, origin: np.ndarray, arm_dir: np.ndarray) -> np.ndarray:
    """Where a hand coming from ``arm_dir`` touches a part.

    Picks the part vertex (N,3) that faces the arm most while staying near the part's
    functional origin: argmax of ``v . arm_dir - 0.5 |v - origin|``.
    """
    score = vertices @ arm_dir - 0.5 * np.linalg.norm(vertices - origin, axis=1)
    return vertices[int(np.argmax(score))]


def hand_and_arm(
    contact: np.ndarray,
    arm_dir: np.ndarray,
    part_axis: np.ndarray,
    rng: np.random.Generator,
    scale: float = 1.0,
) -> list[SceneMesh]:
    """Forearm + palm + 4 fingers + thumb grasping at ``contact`` (world coordinates).

    Args:
        contact: (3,) surface point where the palm touches the part.
        arm_dir: (3,) unit direction from the contact towards the shoulder.
        part_axis: (3,) the part's long axis (fingers lie across it, spread along it).
        rng: randomness for skin tone, sleeve and finger curl.
        scale: overall size (1.0 ~ a hand for an object of max |coord| 0.5).
    """
    arm_dir = _unit(np.asarray(arm_dir, dtype=np.float64))
    a = np.asarray(part_axis, dtype=np.float64)
    a = a - arm_dir * (a @ arm_dir)
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(arm_dir, [0.0, 0.0, 1.0])
        if np.linalg.norm(a) < 1e-6:
            a = np.cross(arm_dir, [1.0, 0.0, 0.0])
    a = _unit(a)
    w = np.cross(arm_dir, a)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * (1 + rng.uniform(-0.05, 0.05, 3))
    skin = np.clip(skin, 0, 1)
    s = scale
    palm_c = contact + arm_dir * 0.045 * s
    palm = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    palm.apply_scale([0.06 * s, 0.075 * s, 0.035 * s])
    R = np.stack([w, a, arm_dir], 1)  # palm's thin axis along the arm direction
    palm.apply_transform(S.transform(R, palm_c))
    meshes = [palm]
    curl = rng.uniform(0.6, 1.0)
    for k, off in enumerate(np.linspace(-0.05, 0.05, 4) * s):
        base = palm_c + a * off + w * 0.045 * s
        tip = contact + a * off + w * 0.05 * s - arm_dir * 0.05 * s * curl
        meshes.append(S.capsule((0.017 - 0.001 * abs(k - 1.5)) * s, base, tip, count=(8, 8)))
    meshes.append(
        S.capsule(0.019 * s, palm_c - a * 0.06 * s - w * 0.02 * s, contact - w * 0.05 * s, (8, 8))
    )
    wrist = palm_c + arm_dir * 0.05 * s - a * 0.02 * s
    elbow = wrist + arm_dir * 0.55 * s + rng.normal(0, 0.05, 3) * s
    forearm = S.capsule(0.045 * s, wrist, elbow, count=(12, 12))
    out = [SceneMesh(trimesh.util.concatenate(meshes), color=skin, specular=0.1, name="hand")]
    if rng.uniform() < 0.5:  # sleeve
        cloth = rng.uniform(0.1, 0.9, 3)
        mid = wrist + (elbow - wrist) * rng.uniform(0.3, 0.6)
        out.append(SceneMesh(S.capsule(0.046 * s, wrist, mid, (12, 12)), skin, 0.1, name="arm"))
        out.append(
            SceneMesh(S.capsule(0.056 * s, mid, elbow, (12, 12)), cloth, 0.05, name="sleeve")
        )
    else:
        out.append(SceneMesh(forearm, color=skin, specular=0.1, name="arm"))
    return out


def use_prop(affordance: str, frame_world: np.ndarray, rng: np.random.Generator) -> list[SceneMesh]:
    """A simple thing the affordance part acts on (a cup under a spout, bread under a blade,
    a board for a hammer, a pot around a spoon, a head at a rim ...), touching the part's
    functional point.  Returns [] for "hold" and "open".

    Args:
        affordance: the action.
        frame_world: (4,4) world-from-functional-frame of the affordance part.
    """
    o, x, z = frame_world[:3, 3], frame_world[:3, 0], frame_world[:3, 2]
    col = rng.uniform(0.2, 0.9, 3)
    if affordance == "pour":
        r = rng.uniform(0.08, 0.12)
        c = o + x * 0.12 + np.array([0, 0, -0.25])
        m = S.revolve(
            [[0, 0], [r, 0], [r * 1.1, 0.18], [r * 0.95, 0.18], [r * 0.9, 0.02], [0, 0.02]]
        )
        m.apply_translation(c - np.array([0, 0, 0.09]))
        return [SceneMesh(m, col, 0.3, name="prop")]
    if affordance == "cut_with":
        size = rng.uniform(0.12, 0.18)
        m = trimesh.creation.icosphere(2, 1.0)
        m.apply_scale([size * 1.4, size, size * 0.8])
        m.apply_translation(o + z * size * 0.75)
        return [
            SceneMesh(m, np.array([0.85, 0.65, 0.35]) * rng.uniform(0.85, 1.1), 0.05, name="prop")
        ]
    if affordance in ("hit", "brush_with"):
        thick = 0.06
        m = trimesh.creation.box([thick, 0.5, 0.5])
        m.apply_transform(frame_world @ S.transform(t=[thick / 2 + 0.01, 0, 0]))
        return [SceneMesh(m, col, 0.1, name="prop")]
    if affordance == "stir":
        r = rng.uniform(0.2, 0.28)
        m = S.revolve([[0, 0], [r, 0], [r, 0.2], [r - 0.015, 0.2], [r - 0.015, 0.015], [0, 0.015]])
        m.apply_translation(o + np.array([0, 0, -0.15]))
        return [SceneMesh(m, col * 0.6, 0.5, name="prop")]
    if affordance == "stick":
        r = rng.uniform(0.06, 0.09)
        m = trimesh.creation.icosphere(2, r)
        m.apply_translation(o + x * r * 0.6)
        return [SceneMesh(m, np.array([0.9, 0.3, 0.2]) * rng.uniform(0.8, 1.1), 0.2, name="prop")]
    if affordance == "drink_with":
        r = 0.13
        m = trimesh.creation.icosphere(2, 1.0)
        m.apply_scale([r, r * 0.9, r * 1.2])
        m.apply_translation(o + x * r * 0.9 + np.array([0, 0, r * 0.6]))
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
        return [SceneMesh(m, skin, 0.1, name="head")]
    return []
