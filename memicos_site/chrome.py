"""URLs that every page prints and that cannot change while the process runs, reversed once.

base.html's header and footer had nine `{% url %}` and four `{% static %}` tags, and the breadcrumbs three more:
on the feature dashboard they were 8 % of the page's CPU (3.85 → 3.52 ms in-process), for the same answers on
every request.
"""

import functools
import re

from django.conf import settings
from django.template.backends.utils import csrf_input_lazy
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.functional import SimpleLazyObject

_ROUTES = {
    "home": "home",
    "steer": "inference:steer",
    "sae_bench": "sae-bench",
    "graphs": "graph-list",
    "explanations": "autointerp:search",
    "search": "inference:search",
    "api_docs": "api-docs",
    "account": "account",
    "login": "login",
    "logout": "logout",
    "signup": "signup",
}
_FILES = {"favicon": "favicon.svg", "css": "css/memicos.css", "js": "js/memicos.js", "jobs_js": "js/jobs.js"}


@functools.lru_cache(maxsize=4096)  # names × (model, source) arguments: thousands at most, a few MB
def _reverse(urlconf: str, prefix: str, name: str, args: tuple) -> str:
    # reverse() reads the URLconf and the script prefix itself; they are the key, so a mounted site or a test's
    # override of ROOT_URLCONF gets its own answers
    return reverse(name, urlconf=urlconf, args=args)


def cached_reverse(name: str, *args) -> str:
    """`reverse(name, args=args)` for URLs with few distinct arguments (a model's or a source's page)."""
    return _reverse(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix(), name, args)


@functools.lru_cache(maxsize=256)  # the static files pages name: dozens
def _static(static_url: str, path: str) -> str:
    return static(path)


def cached_static(path: str) -> str:
    """`static(path)`, which reads the manifest and joins URLs on every call, once per file (STATIC_URL is the key,
    so a test's override gets its own answer)."""
    return _static(settings.STATIC_URL, path)


@functools.cache
def _chrome(urlconf: str, prefix: str) -> dict[str, str]:
    return {key: _reverse(urlconf, prefix, name, ()) for key, name in _ROUTES.items()} | {
        key: static(path) for key, path in _FILES.items()
    }


_SECTIONS = (
    ("/steer", "steer"),
    ("/explanations", "explanations"),
    ("/search", "search"),
    ("/graphs", "graphs"),
    ("/sae-bench", "sae-bench"),
)
_MODEL_GRAPHS = re.compile(r"/[^/]+/graph/?")  # a model's graph list and viewer (`/<model>/graph?slug=…`)


def _section(path: str) -> str:
    """The header's tab that a path belongs to ('' for none)."""
    if path == "/":
        return "browse"
    if _MODEL_GRAPHS.fullmatch(path):
        return "graphs"
    return next((name for prefix, name in _SECTIONS if path.startswith(prefix)), "")


def chrome(request) -> dict:
    """Context processor for base.html, which both template engines render (so it calls no method and takes no tag
    but block): `{{ chrome.home }}`, `{{ chrome.css }}` …, the active tab `nav`, the signed-in user's page
    `account_url` and the logout form's `csrf_input` (both lazy: most pages are read signed out)."""
    user = getattr(request, "user", None)
    return {
        "chrome": _chrome(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix()),
        "nav": _section(request.path),
        "account_url": SimpleLazyObject(lambda: reverse("user", args=[user.get_username()])),
        "csrf_input": csrf_input_lazy(request),
        "embed": getattr(request, "is_embed", False),  # set by memicos_site.embed.embeddable: no chrome
    }
