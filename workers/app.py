"""The Celery application. ``celery_app`` is an empty shell at import; it is configured
from the settings the first time Celery reads its configuration (``on_configure``).

With ``REDIS_URL`` (or ``CELERY_BROKER_URL``) the broker is Redis; without, it is kombu's
filesystem transport in the data folder — a real broker that needs no server, so the
embedded default runs real workers.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from upah import bootstrap
from upah.settings import Settings, get_settings
from workers.schedule import beat_schedule

celery_app = Celery("upah", include=["workers.tasks"])


def configure(app: Celery, settings: Settings) -> None:
    app.conf.update({**bootstrap.celery_config(settings), "beat_schedule": beat_schedule()})


@celery_app.on_configure.connect
def _from_settings(sender: Celery, **_: Any) -> None:
    configure(sender, get_settings())
