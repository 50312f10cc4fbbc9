"""The shared geometry and the taxonomy load without the mesh stack (the optional [synth] extra)."""

import subprocess
import sys


def test_geometry_and_taxonomy_import_without_trimesh():
    code = (
        "import sys\n"
        "import afford.geometry.camera, afford.geometry.visible\n"
        "import afford.geometry.curation, afford.geometry.pseudolabel, afford.taxonomy\n"
        "from afford.taxonomy import Taxonomy\n"
        "Taxonomy.shipped('synth')\n"
        "bad = sorted(m for m in ('trimesh', 'embreex', 'skimage', 'afford.synth',"
        " 'afford.correspondence') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
