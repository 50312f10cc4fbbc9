"""Analytic test scenes for GT curation and pseudo-labelling: objects made of spheres.

A ray-sphere intersection gives exact z-depth, surface points and part ids per pixel without
the synthetic renderer, so the generic code is checked against closed-form geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    """OpenCV (R, t) of a camera at ``eye`` looking at ``target`` (x right, y down, z forward)."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


def intrinsics(size, focal):
    c = (size - 1) / 2.0
    return np.array([[focal, 0, c], [0, focal, c], [0, 0, 1.0]])


@dataclass
class SphereObject:
    centres: np.ndarray  # (k, 3)
    radii: np.ndarray  # (k,)

    def render(self, K, R, t, size):
        """z-depth (inf bg), part id (-1 bg) and surface points (nan bg) at (size, size)."""
        rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        pix = np.stack([cols, rows, np.ones_like(rows)], -1).astype(float)
        d_cam = pix @ np.linalg.inv(K).T  # z = 1
        d_obj = d_cam @ R  # R^T d
        o = -R.T @ t  # camera centre
        best = np.full((size, size), np.inf)
        part = np.full((size, size), -1, np.int16)
        for k, (c, r) in enumerate(zip(self.centres, self.radii)):
            oc = o - c
            a = (d_obj**2).sum(-1)
            b = 2 * (d_obj @ oc)
            cc = oc @ oc - r**2
            disc = b**2 - 4 * a * cc
            lam = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
            lam = np.where(lam > 0, lam, np.inf)
            closer = lam < best
            best = np.where(closer, lam, best)
            part[closer] = k
        pts = o + d_obj * np.where(np.isfinite(best), best, np.nan)[..., None]
        return best.astype(np.float32), part, pts.astype(np.float32)

    def cloud(self, n_per_sphere=4000):
        """Fibonacci samples on every sphere, minus points inside another sphere; part labels."""
        i = np.arange(n_per_sphere) + 0.5
        phi = np.arccos(1 - 2 * i / n_per_sphere)
        theta = np.pi * (1 + 5**0.5) * i
        unit = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)
        pts, labels = [], []
        for k, (c, r) in enumerate(zip(self.centres, self.radii)):
            p = c + r * unit
            inside = np.zeros(len(p), bool)
            for j, (c2, r2) in enumerate(zip(self.centres, self.radii)):
                if j != k:
                    inside |= np.linalg.norm(p - c2, axis=1) < r2 - 1e-9
            pts.append(p[~inside])
            labels.append(np.full((~inside).sum(), k))
        return np.concatenate(pts), np.concatenate(labels)


def ring_cameras(n, size=64, radius=2.0, focal=80.0, elevation=0.4):
    """n cameras on a ring around the origin, all looking at it: (K, R, t) stacked."""
    Ks, Rs, ts = [], [], []
    for a in np.linspace(0, 2 * np.pi, n, endpoint=False):
        eye = radius * np.array(
            [np.cos(a) * np.cos(elevation), np.sin(a) * np.cos(elevation), np.sin(elevation)]
        )
        R, t = look_at(eye)
        Ks.append(intrinsics(size, focal))
        Rs.append(R)
        ts.append(t)
    return np.stack(Ks), np.stack(Rs), np.stack(ts)


def render_views(obj, K, R, t, size):
    """Stacked (depth (V,S,S), part (V,S,S), points (V,S,S,3)) of all cameras."""
    out = [obj.render(K[v], R[v], t[v], size) for v in range(len(K))]
    return tuple(np.stack([o[i] for o in out]) for i in range(3))
