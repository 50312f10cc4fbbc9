"""Real-format test assets (GLB scene with nested transforms and a texture, OBJ + MTL, PLY,
a corrupt file) and a taxonomy in the official shapes, written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

# node transforms of the GLB: root (rotation + translation + scale) -> body, root -> arm -> handle
T_ROOT = trimesh.transformations.compose_matrix(
    scale=[2.0, 2.0, 2.0], angles=[0.3, -0.2, 0.5], translate=[1.0, -2.0, 0.5]
)
T_ARM = trimesh.transformations.compose_matrix(angles=[0.0, 0.0, 0.4], translate=[0.0, 0.35, 0.0])
T_HANDLE = trimesh.transformations.translation_matrix([0.0, 0.1, 0.05])

RED, BLUE = (220, 20, 20), (20, 20, 220)


def textured_box() -> trimesh.Trimesh:
    """A box whose faces map a half-red, half-blue texture (u < 0.5 red)."""
    box = trimesh.creation.box(extents=[0.5, 0.3, 0.6])
    box.unmerge_vertices()  # 3 corners per face, own UVs
    v = np.asarray(box.vertices)
    # u along x, v along z: the texture's left half (red) covers x < 0
    uv = np.stack([(v[:, 0] + 0.25) / 0.5, (v[:, 2] + 0.3) / 0.6], 1) * 0.8 + 0.1
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :4] = RED
    img[:, 4:] = BLUE
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(img))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
    return box


def handle_mesh() -> trimesh.Trimesh:
    m = trimesh.creation.cylinder(radius=0.04, height=0.25, sections=16)
    m.visual = trimesh.visual.ColorVisuals(
        m, face_colors=np.tile([30, 200, 30, 255], (len(m.faces), 1))
    )
    return m


def write_glb(path: Path) -> dict[str, np.ndarray]:
    """GLB scene: root -> body (textured box), root -> arm -> handle (green cylinder).

    Returns the expected world-space vertices of both pieces (transforms applied)."""
    scene = trimesh.Scene()
    scene.graph.update(frame_from=scene.graph.base_frame, frame_to="root", matrix=T_ROOT)
    body, handle = textured_box(), handle_mesh()
    scene.add_geometry(body, geom_name="body_geom", node_name="body", parent_node_name="root")
    scene.graph.update(frame_from="root", frame_to="arm", matrix=T_ARM)
    scene.add_geometry(
        handle,
        geom_name="cyl",
        node_name="mug_handle.001",
        parent_node_name="arm",
        transform=T_HANDLE,
    )
    path.write_bytes(scene.export(file_type="glb"))
    return {
        "body": trimesh.transform_points(body.vertices, T_ROOT),
        "handle": trimesh.transform_points(handle.vertices, T_ROOT @ T_ARM @ T_HANDLE),
    }


OBJ = """mtllib crate.mtl
o crate
v -1 -1 -1
v 1 -1 -1
v 1 1 -1
v -1 1 -1
v -1 -1 1
v 1 -1 1
v 1 1 1
v -1 1 1
usemtl green_paint
f 1 3 2
f 1 4 3
f 5 6 7
f 5 7 8
f 1 2 6
f 1 6 5
f 2 3 7
f 2 7 6
f 3 4 8
f 3 8 7
f 4 1 5
f 4 5 8
"""
MTL = """newmtl green_paint
Ka 0 0 0
Kd 0.1 0.8 0.1
Ks 0 0 0
"""


def write_assets(folder: Path) -> dict[str, dict]:
    """All test assets in ``folder``; returns their expectations by asset id."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = write_glb(folder / "a1b2c3---mug.glb")
    (folder / "crate.obj").write_text(OBJ)
    (folder / "crate.mtl").write_text(MTL)
    (folder / "crate.json").write_text(json.dumps({"category": "box", "id": "crate01"}))
    ball = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    colors = np.zeros((len(ball.vertices), 4), np.uint8)
    colors[:, 3] = 255
    colors[:, 0] = 250 * (ball.vertices[:, 2] > 0)  # red top, black bottom
    colors[:, 2] = 250 * (ball.vertices[:, 2] <= 0)
    ball.visual = trimesh.visual.ColorVisuals(ball, vertex_colors=colors)
    sub = folder / "scans"
    sub.mkdir()
    (sub / "ball.ply").write_bytes(ball.export(file_type="ply"))
    (folder / "manifest.csv").write_text("file,category,id\nscans/ball.ply,ball,ball-7\n")
    (folder / "deadbeef---mug.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage that is no mesh")
    return {"a1b2c3": {"vertices": expected}, "crate01": {}, "ball-7": {}}


def write_official_taxonomy(folder: Path) -> Path:
    """A taxonomy folder in the shapes of the official 0_taxonomy_and_metadata/."""
    sub = folder / "Objaverse"
    sub.mkdir(parents=True)
    (folder / "action2objects.json").write_text(
        json.dumps({"pour-with": ["mug"], "hold": ["mug", "box"], "roll-onto": ["ball"]})
    )
    (sub / "obj2part2function.json").write_text(
        json.dumps(
            {
                "mug": {"body": ["pour-with"], "handle": ["hold"]},
                "box": {"lid": [], "side": ["hold"]},
                "ball": {"surface": ["roll-onto", "hold"]},
            }
        )
    )
    (sub / "obj2part_descriptions.json").write_text(
        json.dumps({"mug": {"handle": "the loop on the side", "body": "the cup"}})
    )
    (sub / "duplicated_parts.json").write_text(json.dumps({"mug": {"grip": "handle"}}))
    (sub / "train_split.json").write_text(json.dumps(["a1b2c3---mug.glb"]))
    (sub / "test_split.json").write_text(json.dumps(["ball-7---ball.ply"]))
    (sub / "unseen_test_split.json").write_text(json.dumps(["crate01---box.obj"]))
    return folder
