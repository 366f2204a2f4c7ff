"""The brokers' transports: kombu's filesystem one publishing atomically, Redis not dying.

kombu's own `_put` creates the .msg file and then writes it, so a worker polling in between
reads an empty message and dies with a JSONDecodeError (celery/kombu#1551). Writing the
message aside and renaming it into the queue folder makes it appear whole or not at all.

Queues are read in the order the worker consumes them (urgent first, see settings), not in
turn: the Redis transport does the same with queue_order_strategy "priority".

When Redis dies, a worker's consumer closes its channel, and closing puts the unacknowledged
messages back first (QoS.restore_unacked_once). With the connection already gone, that
reconnects through `connection.client`, which is None by then: the worker stops with
"Unrecoverable error: AttributeError('NoneType' object has no attribute 'hostname')" (the
class of celery/kombu#582; kombu 5.7.0 still does it). The Redis channel below does not
restore on close. Nothing is lost: an unacknowledged message is given back by Redis after
the visibility timeout, and long before that the sweep re-enqueues its run from the database
(tasks are idempotent).
"""

from __future__ import annotations

import os
import time
import uuid
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps
from kombu.utils.scheduling import FairCycle


class InOrderCycle(FairCycle):
    """Always try the first queue first: a message waiting there goes before any other."""

    def get(self, callback, **kwargs):
        self.pos = 0
        return super().get(callback, **kwargs)


class AtomicChannel(filesystem.Channel):
    def _reset_cycle(self):
        self._cycle = InOrderCycle(self._get_and_deliver, self._active_queues, Empty)

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


class NoRestoreOnCloseRedisChannel(redis.Channel):
    do_restore = False


class RedisTransport(redis.Transport):
    Channel = NoRestoreOnCloseRedisChannel
