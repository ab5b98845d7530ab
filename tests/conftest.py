import os
import tempfile

import pytest

# Keep test caches out of the user's cache folder, but share them across the session.
os.environ.setdefault("TGDMAT_CACHE", os.path.join(tempfile.gettempdir(), "tgdmat-test-cache"))


@pytest.fixture(scope="session")
def srtio3():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
