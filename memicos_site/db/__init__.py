"""Django's PostgreSQL backend (psycopg 3) with a health check that costs no round trip, and binary results that
load as Django's text ones do (see base.py)."""
