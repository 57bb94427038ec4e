"""The Jinja2 environment of the templates rendered on every busy request (the feature dashboard): Django's template
language spent ~1.4 ms of the page's ~4 ms of CPU resolving variables and running loops there, and its rendering of
base.html another ~0.35 ms. base.html is written in what both engines share, so Django-template pages and the
dashboard extend the same file; names here mirror Django's tags and filters, so a template reads the same in both.
"""

from django.conf import settings
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.template.defaultfilters import pluralize, urlencode, yesno
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from jinja2 import Environment, StrictUndefined

from features.templatetags.memicos import (
    activation_rows,
    crumbs,
    fixed,
    fmt,
    histogram_svg,
    logit_rows,
    pct,
    similar_rows,
    token_display,
)
from memicos_site.chrome import cached_static


def url(name: str, *args) -> str:
    """`{% url name arg … %}`."""
    return reverse(name, args=args)


def django_include(template_name: str, **context) -> str:
    """A Django template shared with Django-template pages (`{% include name with k=v %}`), rendered as it is."""
    return mark_safe(render_to_string(template_name, context))


def environment(**options) -> Environment:
    if settings.DEBUG or settings.TESTING:
        options["undefined"] = StrictUndefined  # a misspelt name fails the tests instead of printing nothing
    env = Environment(**options)
    env.globals.update(url=url, static=cached_static, django_include=django_include, activation_rows=activation_rows,
                       crumbs=crumbs, histogram_svg=histogram_svg, logit_rows=logit_rows, similar_rows=similar_rows)  # fmt: skip
    env.filters.update(fixed=fixed, fmt=fmt, pct=pct, token_display=token_display, pluralize=pluralize,
                       yesno=yesno, naturaltime=naturaltime, urlencode=urlencode)  # fmt: skip
    return env
