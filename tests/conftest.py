import os
import tempfile

import pytest

# Keep test caches out of the user's cache folder, but share them across the session.
os.environ.setdefault("TGDMAT_CACHE", os.path.join(tempfile.gettempdir(), "tgdmat-test-cache"))


def _have_benchmark_data() -> bool:
    from tgdmat.data.protocol import default_data_root

    root = default_data_root()
    return all((root / stem).with_suffix(".csv.gz").exists() for stem in ("perov_5/test", "perov_5/val", "perov_5_dev/train", "carbon_24/test", "carbon_24/val"))


needs_data = pytest.mark.skipif(
    not _have_benchmark_data(),
    reason="benchmark CSVs not found (put them in ../shared/data beside the clone or set TGDMAT_DATA; see README 'Data')",
)


@pytest.fixture(scope="session")
def srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
