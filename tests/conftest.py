import sys
from pathlib import Path

import pytest

# Test helpers (videogen, official_reference) are imported as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared material not found at {SHARED} (present in CI; absent in a user's clone)")
    return SHARED
