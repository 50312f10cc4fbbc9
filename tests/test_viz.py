"""Shared figures: overlays, match drawings, grids, PR and loss curves."""

import numpy as np
import pytest

from afford.data.io import read_image
from afford.errors import AffordError
from afford.viz import (
    GREEN,
    RED,
    YELLOW,
    colorize,
    draw_matches,
    heatmap_to_uint8,
    image_grid,
    overlay_heatmap,
    plot_loss_curves,
    plot_pr_curves,
)


def test_heatmap_to_uint8_and_overlay():
    heat = np.zeros((14, 14))
    heat[3, 4] = 5.0
    u8 = heatmap_to_uint8(heat, (28, 42))
    assert u8.shape == (28, 42) and u8.dtype == np.uint8
    assert u8.max() == 255 and u8.min() == 0
    assert heatmap_to_uint8(np.full((3, 3), 2.0)).tolist() == [[0] * 3] * 3

    img = np.full((28, 42, 3), 100, np.uint8)
    assert np.array_equal(overlay_heatmap(img, heat, alpha=0.0), img)
    full = overlay_heatmap(img, heat, alpha=1.0)
    assert full.shape == (28, 42, 3) and full.dtype == np.uint8
    np.testing.assert_array_equal(full, colorize(u8, "jet"))
    half = overlay_heatmap(img, heat, alpha=0.5)
    expected = np.round(0.5 * 100 + 0.5 * colorize(u8, "jet").astype(np.float32))
    np.testing.assert_array_equal(half, expected.astype(np.uint8))
    # jet: low values blue, high values red
    assert full[0, 0, 2] > full[0, 0, 0]
    r, c = np.unravel_index(np.argmax(u8), u8.shape)
    assert full[r, c, 0] > full[r, c, 2]
    with pytest.raises(AffordError, match="uint8"):
        overlay_heatmap(img.astype(np.float32), heat)
    with pytest.raises(AffordError, match="colormap"):
        overlay_heatmap(img, heat, cmap="no-such-map")


@pytest.mark.parametrize("correct,color", [([True], GREEN), ([False], RED), (None, YELLOW)])
def test_draw_matches_line_colour(correct, color):
    a = np.zeros((20, 30, 3), np.uint8)
    b = np.zeros((24, 25, 3), np.uint8)
    out = draw_matches(a, b, [[10, 5]], [[10, 20]], correct=correct, radius=0)
    assert out.shape == (24, 55, 3) and out.dtype == np.uint8
    # horizontal line from (row 10, col 5) to (row 10, col 30 + 20)
    assert tuple(out[10, 27]) == color
    assert tuple(out[10, 49]) == color
    assert out[15].max() == 0  # nothing drawn off the line
    assert out[:, 51:].max() == 0


def test_draw_matches_keeps_images_and_checks_input():
    a = np.full((8, 8, 3), 7, np.uint8)
    b = np.full((8, 6, 3), 9, np.uint8)
    out = draw_matches(a, b, np.zeros((0, 2)), np.zeros((0, 2)))
    assert (out[:, :8] == 7).all() and (out[:, 8:] == 9).all()
    with pytest.raises(AffordError, match="entries"):
        draw_matches(a, b, [[1, 1]], [[1, 1]], correct=[True, False])
    with pytest.raises(AffordError, match="differ"):
        draw_matches(a, b, [[1, 1]], np.zeros((2, 2)))


def test_image_grid_layout():
    ims = [np.full((10, 12, 3), v, np.uint8) for v in (10, 20, 30)] + [
        np.full((5, 5), 40, np.uint8)
    ]
    sheet = image_grid(ims, ncols=2, pad=2)
    assert sheet.shape == (2 * (10 + 2) + 2, 2 * (12 + 2) + 2, 3) and sheet.dtype == np.uint8
    assert (sheet[2:12, 2:14] == 10).all()
    assert (sheet[2:12, 16:28] == 20).all()
    assert (sheet[14:24, 2:14] == 30).all()
    assert (sheet[14:19, 16:21] == 40).all() and (sheet[20:24, 16:28] == 255).all()
    titled = image_grid(ims, ncols=4, titles=["a", "b", "c", "d"])
    assert titled.shape[0] == 10 + 16 + 2 * 4
    with pytest.raises(AffordError, match="titles"):
        image_grid(ims, ncols=2, titles=["a"])


def test_plots_written(tmp_path):
    curves = {
        "ours": (np.linspace(0, 1, 20), np.linspace(1, 0.5, 20)),
        "dinov2": {"recall": [0.0, 0.5], "precision": [1.0, 0.2]},
    }
    p = plot_pr_curves(curves, tmp_path / "pr.png", title="discovery @10px")
    img = read_image(p)
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 5
    hist = [{"epoch": 1, "step": s, "total": 1.0 / s, "lr": 0.1} for s in range(1, 6)]
    hist.append({"epoch": 1, "step": 5, "val_kld": 0.7})
    q = plot_loss_curves(hist, tmp_path / "sub" / "loss.png")
    assert read_image(q).shape[0] > 100
    assert sorted(x.name for x in tmp_path.rglob("*") if x.is_file()) == ["loss.png", "pr.png"]
    with pytest.raises(AffordError, match="no numeric"):
        plot_loss_curves([{"step": 1}], tmp_path / "x.png")
    with pytest.raises(AffordError, match="recall"):
        plot_pr_curves({"a": ([0, 1], [1])}, tmp_path / "y.png")
