import numpy as np
import pytest

from afford.cli import main
from afford.data.cache import MapCache, content_key, file_key
from afford.data.io import read_image, read_json, read_npz, write_image, write_json, write_npz
from afford.errors import AffordError


def test_atomic_writers_roundtrip(tmp_path):
    write_json(tmp_path / "a" / "x.json", {"b": np.float32(1.5), "a": np.arange(3)})
    assert read_json(tmp_path / "a" / "x.json") == {"a": [0, 1, 2], "b": 1.5}
    write_npz(tmp_path / "y.npz", m=np.eye(2))
    assert np.array_equal(read_npz(tmp_path / "y.npz")["m"], np.eye(2))
    img = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    write_image(tmp_path / "i.png", img)
    assert np.array_equal(read_image(tmp_path / "i.png"), img)
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "i.png", "y.npz"]


def test_failed_write_keeps_old_file(tmp_path):
    write_json(tmp_path / "x.json", {"v": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"v": object()})
    assert read_json(tmp_path / "x.json") == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(AffordError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(AffordError, match="missing.json"):
        read_json(tmp_path / "missing.json")


def test_map_cache(tmp_path):
    (tmp_path / "im.jpg").write_bytes(b"abc")
    key = file_key(tmp_path / "im.jpg")
    assert key == content_key(b"abc") and len(key) == 64
    cache = MapCache(tmp_path / "cache", "simulated-clip", simulated=True)
    assert cache.get(key) is None
    cache.put(key, {"action:hold": np.ones((14, 14))})
    cache.put(key, {"entity:hold": np.zeros((14, 14))})
    again = MapCache.open(tmp_path / "cache", "simulated-clip")
    assert again.simulated
    entry = again.get(key)
    assert set(entry) == {"action:hold", "entity:hold"} and entry["action:hold"].dtype == np.float32
    with pytest.raises(AffordError):
        MapCache.open(tmp_path / "cache", "other-model")


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
