"""The embedded default's broker: kombu's filesystem transport, with every message written whole.

kombu's filesystem transport creates a message file and then writes into it. A worker polling
the folder can take the file in between, read it empty, and the JSON error that follows stops
its consumer for good (a demo run once stalled on it). Here a message is written under a name
the workers skip and then renamed into place: a rename within one folder is atomic, so a
worker sees a message whole or not at all.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "upah.broker:Transport"
"""What ``broker_transport`` names for the embedded default."""

WRITING = ".writing"
"""The suffix of a message still being written (workers take only names ending in ``.msg``)."""


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]  # as kombu's own
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + WRITING
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
