"""A pool process builds its runtime as it starts, before its first task."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from upah.settings import get_settings
from workers.tasks import _ready_before_the_first_task, runtime


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """As a newly forked pool process: no settings read, no runtime built."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/upah.db")
    monkeypatch.setenv("UPAH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    runtime.cache_clear()
    yield
    runtime.cache_clear()
    get_settings.cache_clear()


def test_a_starting_pool_process_builds_its_runtime(fresh_process: None) -> None:
    _ready_before_the_first_task()
    assert runtime.cache_info().currsize == 1
    assert runtime().db.sessions is not None


def test_a_runtime_that_cannot_be_built_yet_is_left_to_the_first_task(
    fresh_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("UPAH_ENV", "production")  # without its keys: the settings refuse to load
    monkeypatch.delenv("UPAH_SECRET_KEYS", raising=False)
    monkeypatch.delenv("UPAH_SIGNING_KEY", raising=False)
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        _ready_before_the_first_task()
    assert runtime.cache_info().currsize == 0
    assert "first task will try again" in caplog.text
