"""Embeds: `?embed=true` on the pages that opt in (feature dashboard with its activation-test box, search via
inference, steer, list, quick list, UMAP, graph) renders them compact, without the site chrome, and lets other sites
frame that answer under EMBED_FRAME_ANCESTORS. Every other response keeps `X-Frame-Options: DENY` and
`frame-ancestors 'none'`, so a page that is not meant to be framed cannot be clickjacked through a stray
`?embed=true`."""

import functools
import re

from django.conf import settings

_FRAME_ANCESTORS = re.compile(r"frame-ancestors[^;]*", re.IGNORECASE)


def embed_requested(request) -> bool:
    return request.GET.get("embed") == "true"


def embed_flag(request, name: str) -> bool:
    """Neuronpedia's embed switches (`embedexplanation`, `embedplots`, `embedtest`, …): on unless `false`."""
    return request.GET.get(name) != "false"


def embed_policy(policy: str, ancestors: str) -> str:
    """The site's Content-Security-Policy with its frame-ancestors directive replaced by `ancestors`."""
    directive = f"frame-ancestors {ancestors}"
    if _FRAME_ANCESTORS.search(policy):
        return _FRAME_ANCESTORS.sub(directive, policy)
    return f"{policy}; {directive}" if policy else directive


def embeddable(view):
    """A page that may be embedded: with `?embed=true`, base.html drops the chrome (request.is_embed) and a
    successful answer may be framed by EMBED_FRAME_ANCESTORS. Error answers (a 404 for a private object) stay
    unframable like any page."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        request.is_embed = embed_requested(request)
        response = view(request, *args, **kwargs)
        ancestors = settings.EMBED_FRAME_ANCESTORS
        if request.is_embed and ancestors and response.status_code == 200:
            response.xframe_options_exempt = True  # read by Django's XFrameOptionsMiddleware
            response["Content-Security-Policy"] = embed_policy(settings.CONTENT_SECURITY_POLICY, ancestors)
        return response

    return wrapped
