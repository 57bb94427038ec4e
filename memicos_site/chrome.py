"""URLs that every page prints and that cannot change while the process runs, reversed once.

base.html's header and footer had nine `{% url %}` and four `{% static %}` tags, and the breadcrumbs three more:
on the feature dashboard they were 8 % of the page's CPU (3.85 → 3.52 ms in-process), for the same answers on
every request.
"""

import functools

from django.conf import settings
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse

_ROUTES = {
    "home": "home",
    "steer": "inference:steer",
    "explanations": "autointerp:search",
    "search": "inference:search",
    "api_docs": "api-docs",
    "account": "account",
    "login": "login",
    "logout": "logout",
    "signup": "signup",
}
_FILES = {"favicon": "favicon.svg", "css": "css/memicos.css", "js": "js/memicos.js"}


@functools.lru_cache(maxsize=4096)  # names × (model, source) arguments: thousands at most, a few MB
def _reverse(urlconf: str, prefix: str, name: str, args: tuple) -> str:
    # reverse() reads the URLconf and the script prefix itself; they are the key, so a mounted site or a test's
    # override of ROOT_URLCONF gets its own answers
    return reverse(name, urlconf=urlconf, args=args)


def cached_reverse(name: str, *args) -> str:
    """`reverse(name, args=args)` for URLs with few distinct arguments (a model's or a source's page)."""
    return _reverse(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix(), name, args)


@functools.cache
def _chrome(urlconf: str, prefix: str) -> dict[str, str]:
    return {key: _reverse(urlconf, prefix, name, ()) for key, name in _ROUTES.items()} | {
        key: static(path) for key, path in _FILES.items()
    }


def chrome(request) -> dict:
    """Context processor: `{{ chrome.home }}`, `{{ chrome.css }}` …"""
    return {"chrome": _chrome(get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())}
