"""The embedded broker: kombu's filesystem transport, publishing atomically.

kombu's own `_put` creates the .msg file and then writes it, so a worker polling in between
reads an empty message and dies with a JSONDecodeError (celery/kombu#1551). Writing the
message aside and renaming it into the queue folder makes it appear whole or not at all.
"""

from __future__ import annotations

import os
import time
import uuid

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        # Not ending in .msg, so consumers skip it until the rename.
        aside = os.path.join(self.data_folder_out, f"publishing-{uuid.uuid4().hex}")
        try:
            with open(aside, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(aside, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicChannel
