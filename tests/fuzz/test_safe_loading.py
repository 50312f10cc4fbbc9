"""Safe loading: no code path unpickles an untrusted file. Each case hands a pickle payload
(a ``__reduce__`` that creates a file when unpickled; ``test_the_payload_is_live`` shows it
does under a plain unpickler) to a command or API function that takes a path, and checks the
refusal is a one-line DataError / exit 1 and that the file never appears."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

import afford
from afford.errors import AffordError

sys.path.insert(0, str(Path(__file__).parent))
import cli_cases  # noqa: E402

PAYLOAD_FILES = ("pickle", "legacy.pth", "zip.pth", "ts.pt", "npzpickle")
CLI = [c for c in cli_cases.all_cases() if any(p in a for a in c.argv for p in PAYLOAD_FILES)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return cli_cases.build_world(tmp_path_factory.mktemp("payload_world"))


def test_the_payload_is_live(tmp_path):
    target = tmp_path / "ran"
    pickle.loads(cli_cases.payload_bytes(target))
    assert target.exists()


def test_every_reader_of_paths_is_covered():
    covered = {c.argv[0] if c.argv[0] not in ("eval", "train", "prepare")
               else " ".join(c.argv[:2]) for c in CLI}  # fmt: skip
    assert {"ground", "correspond", "eval grounding", "eval correspondence", "import-checkpoint",
            "export", "train grounding", "train correspondence", "serve",
            "prepare correspondence", "prepare eval-pairs", "prepare handal"} <= covered  # fmt: skip
    # every path argument of the prepare commands gets a pickle somewhere
    flags = {a for c in CLI if c.argv[0] == "prepare" for a, v in zip(c.argv, c.argv[1:])
             if any(p in v for p in PAYLOAD_FILES)}  # fmt: skip
    assert {"--assets", "--taxonomy", "--labeler", "--manifest", "--alignments"} <= flags
    assert any(c.argv[:2] == ("prepare", "handal") and "pickle" in c.argv[2] for c in CLI)
    assert len(CLI) >= 30


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_cli_never_unpickles(world, case):
    out = cli_cases.run_case(case, world)
    assert not (world / cli_cases.PWNED).exists(), case.id
    assert out.kind == "clear" and out.code in (1, 2), f"{out.kind}: {out.detail} | {out.line}"


def _api_calls(w: Path) -> dict:
    from afford.api.images import to_rgb
    from afford.backbones.weights import read_state_dict
    from afford.config import load, read_yaml
    from afford.data.correspondence import CorrespondenceDataset
    from afford.data.io import read_npz
    from afford.engine import load_checkpoint
    from afford.grounding.config import GroundingExperiment
    from afford.grounding.import_ckpt import read_released
    from afford.prepare.assets import load_asset
    from afford.prepare.correspondence import load_taxonomy
    from afford.prepare.evalpairs import read_alignments
    from afford.prepare.handal import HandalDataset
    from afford.prepare.labelers import BoxesFileLabelers
    from afford.taxonomy import Taxonomy

    r = w / "released"
    ds = w / "corr" / "npzpickle"
    p = w / "prep"
    calls = {
        "Grounder.from_checkpoint": lambda: afford.Grounder.from_checkpoint(w / "ck/gr_pickle"),
        "Corresponder.from_checkpoint": lambda: afford.Corresponder.from_checkpoint(
            w / "ck/co_pickle"
        ),  # fmt: skip
        "to_rgb": lambda: to_rgb(w / "img/pickle.png"),
        "read_npz": lambda: read_npz(next((ds / "eval").glob("*.npz"))),
        "CorrespondenceDataset.load_pair": lambda: CorrespondenceDataset(ds).load_pair(
            CorrespondenceDataset(ds).eval_pairs()[0]
        ),  # fmt: skip
        "config.load": lambda: load(GroundingExperiment, w / "cfg/pickle.yaml"),
        "read_yaml": lambda: read_yaml(w / "cfg/pickle.yaml"),
        "load_checkpoint[co_pickle]": lambda: load_checkpoint(w / "ck/co_pickle"),
        "Taxonomy.load": lambda: Taxonomy.load(p / "tax_pickle.json"),
        "load_taxonomy": lambda: load_taxonomy(p / "tax_pickle.json"),
        "BoxesFileLabelers": lambda: BoxesFileLabelers(p / "boxes_pickle.json"),
        "read_alignments": lambda: read_alignments(p / "align_pickle.json"),
        "load_asset[glb]": lambda: load_asset(p / "pickleonly" / "p---mug.glb"),
        "load_asset[ply]": lambda: load_asset(p / "mixed" / "m4---mug.ply"),
        "HandalDataset.views[scene_gt]": lambda: HandalDataset(w / "handal/picklegt").views(1),
        "HandalDataset.model[ply]": lambda: HandalDataset(w / "handal/pickleply").model(1),
    }
    for f in ("legacy.pth", "zip.pth", "ts.pt", "pickle.safetensors"):
        calls[f"read_state_dict[{f}]"] = lambda f=f: read_state_dict(r / f)
        calls[f"read_released[{f}]"] = lambda f=f: read_released(r / f)
        calls[f"load_dino[{f}]"] = lambda f=f: afford.backbones.load_dino(r / f, variant="tiny")
        calls[f"load_clip[{f}]"] = lambda f=f: afford.backbones.load_clip(r / f, variant="tiny")
        calls[f"load_dinov2[{f}]"] = lambda f=f: afford.backbones.load_dinov2(
            r / f, variant="tiny")  # fmt: skip
        calls[f"Corresponder.baseline[{f}]"] = lambda f=f: afford.Corresponder.baseline(
            "tiny", weights=r / f, device="cpu")  # fmt: skip
    return calls


API = sorted(_api_calls(Path("/")))


@pytest.mark.parametrize("name", API)
def test_api_never_unpickles(world, name):
    with pytest.raises(AffordError) as info:
        _api_calls(world)[name]()
    assert not (world / cli_cases.PWNED).exists(), name
    assert "\n" not in str(info.value)
