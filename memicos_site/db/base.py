"""Django's PostgreSQL backend with two changes that the busiest reads (features.selectors.feature_dashboard) need.

- **A health check without a round trip.** CONN_HEALTH_CHECKS makes Django test a kept connection before each
  request's first query, with a `SELECT 1`: on the feature API that round trip was about 5 % of the web process's
  CPU, and more of Postgres's. A Postgres restart, a terminated backend or a failover closes the socket (after a
  FATAL message), so an idle connection that has something to read, or whose state is not OK, is dead: the
  request opens a new one instead of answering 503. A socket cut without any packet (a partition) is not seen
  here; the first query then fails as it would have after `SELECT 1` and the ServiceOutageMiddleware answers 503.
- **Binary results that load like text ones.** Django loads timestamptz in the connection's time zone and jsonb
  as a string (JSONField decodes it) with its own text-format loaders; these binary loaders do the same, so a
  statement may ask for binary results (arrays of floats and strings load several times faster).
"""

import datetime
import select

from django.db.backends.postgresql import base
from psycopg import pq
from psycopg.types.datetime import TimestamptzBinaryLoader
from psycopg.types.string import TextBinaryLoader

_HEALTHY = (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS)


class _JsonbAsText(TextBinaryLoader):
    """jsonb's binary form is a version byte (1) and the JSON text: the text, as Django's jsonb TextLoader gives."""

    def load(self, data):
        return super().load(bytes(data[1:]))


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        timezone = self.timezone
        # With USE_TZ the session's TimeZone is UTC and psycopg's own (C) loader already answers in datetime.UTC,
        # as Django's text loader does; otherwise (naive datetimes) Django's BaseTzLoader, for binary results.
        if timezone != datetime.UTC:

            class TzBinaryLoader(TimestamptzBinaryLoader):
                def load(self, data):
                    return super().load(data).replace(tzinfo=timezone)

            connection.adapters.register_loader("timestamptz", TzBinaryLoader)
        connection.adapters.register_loader("jsonb", _JsonbAsText)
        return connection

    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        pgconn = connection.pgconn
        if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status not in _HEALTHY:
            return False
        # Between requests the server sends nothing unasked but a FATAL before it closes (or, rarely, a changed
        # parameter or a notice, which costs one reconnect): readable means dead.
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
        return not readable
