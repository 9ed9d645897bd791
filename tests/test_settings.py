"""Settings refuse values that would make the service misbehave, at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.api.conftest import settings_for


@pytest.mark.parametrize("minimum", [0, -1])
def test_a_minimum_payout_below_one_rupiah_is_refused(tmp_path: Path, minimum: int) -> None:
    with pytest.raises(ValidationError, match="upah_minimum_payout"):
        settings_for("sqlite://", tmp_path, upah_minimum_payout=minimum)
