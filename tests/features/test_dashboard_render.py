"""The dashboard's activation rows are built in Python (features/templatetags/memicos.activation_row) for speed;
these tests hold them to the markup the template include produced before, character for character."""

import random
from types import SimpleNamespace

import pytest
from django.template import Context, Template
from django.template.defaultfilters import floatformat

from features.templatetags.memicos import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    SHORT_SNIPPET,
    activation_row,
    activation_rows,
    fixed,
    logit_rows,
    similar_rows,
    token_display,
)

# What activation_row replaced: templates/features/_act_row.html, included once per row, with its token loop
# and the per-token data views._token_rows prepared (both as of bench/load.py's profile).
TEMPLATE_ROW = (
    '{% load memicos %}<div class="act-row" data-max="{{ row.activation.max_value }}">\n'
    '  <div class="act-max" title="maximum activation in this snippet">{{ row.activation.max_value|fmt:2 }}</div>\n'
    '  <div class="act-text">{% spaceless %}\n'
    '    {% if row.truncated %}<span class="ellipsis">…</span>{% endif %}\n'
    '    {% for t in row.tokens %}<span class="tok{% if t.is_max %} max{% endif %}{% if t.far %} far{% endif %}'
    '{% if t.text|token_is_space %} space{% endif %}" style="--a:{{ t.alpha }}" title="{{ t.value|floatformat:3 }}" '
    'data-v="{{ t.value|floatformat:3 }}" data-tok="{{ t.text }}">{{ t.text|token_display }}</span>{% endfor %}\n'
    '    {% if row.truncated %}<button type="button" class="more" aria-expanded="false"><span class="collapsed-label">'
    'show all {{ row.tokens|length }} tokens</span><span class="expanded-label">show less</span></button>{% endif %}\n'
    "  {% endspaceless %}</div>\n"
    "</div>"
)
AWKWARD_TOKENS = [" the", "<b>", "&amp;", '"quoted"', "it's", "  ", "\n", "\t", " \n", "", "é", "a<>&'\""]
AWKWARD_VALUES = [0.0, -0.0, 1.0005, 2.0005, -0.0004, -0.0005, 0.0015, 1e-7, 12345.6785, -3.25, 7, 1e21, 0.1 + 0.2]


def _token_rows(activation, scale: float) -> dict:
    values = list(activation.values) + [0.0] * max(0, len(activation.tokens) - len(activation.values))
    max_i = activation.max_value_token_index
    if len(activation.tokens) <= SHORT_SNIPPET:
        lo, hi = 0, len(activation.tokens)
    else:
        lo, hi = max_i - CONTEXT_BEFORE, max_i + CONTEXT_AFTER
    tokens = [
        {
            "text": tok,
            "value": val,
            "alpha": round(max(0.0, min(1.0, val / scale)), 3) if scale > 0 else 0.0,
            "is_max": i == max_i,
            "far": not (lo <= i <= hi),
        }
        for i, (tok, val) in enumerate(zip(activation.tokens, values, strict=False))
    ]
    return {"activation": activation, "tokens": tokens, "truncated": any(t["far"] for t in tokens)}


@pytest.mark.parametrize("digits", [1, 2, 3, 6])
def test_fixed_matches_djangos_floatformat_on_ties_signs_and_random_values(digits):
    rng = random.Random(digits)
    values = AWKWARD_VALUES + [rng.uniform(-20, 20) for _ in range(5000)]
    values += [round(rng.uniform(-5, 5), digits + 1) for _ in range(5000)]  # one more decimal: many half-way ties
    values += [float("inf"), float("nan"), "x", None, 10**30]
    mismatches = [
        (v, fixed(v, digits), floatformat(v, digits)) for v in values if fixed(v, digits) != floatformat(v, digits)
    ]
    assert mismatches == []


def _activation(rng: random.Random, n_tokens: int, n_values: int):
    tokens = [rng.choice(AWKWARD_TOKENS) if i % 3 == 0 else f" w{rng.randrange(1000)}" for i in range(n_tokens)]
    values = [rng.choice(AWKWARD_VALUES) if i % 5 == 0 else round(rng.uniform(-1, 9), 3) for i in range(n_values)]
    max_i = rng.randrange(n_tokens)
    return SimpleNamespace(
        tokens=tokens,
        values=values,
        max_value_token_index=max_i,
        max_value=rng.choice([9.25, 1e-7, 12.3456789, 0.5, 1e21, 7, 0.1 + 0.2]),
    )


def test_activation_rows_render_the_same_markup_as_the_template_include():
    rng = random.Random(1)
    template = Template(TEMPLATE_ROW)
    # short and long snippets (the window around the max), values shorter than tokens, max at either end
    shapes = [(8, 8), (24, 20), (SHORT_SNIPPET, SHORT_SNIPPET), (SHORT_SNIPPET + 1, 40), (128, 128), (64, 0)]
    seen = set()
    for n_tokens, n_values in shapes * 20:
        activation = _activation(rng, n_tokens, n_values)
        scale = rng.choice([9.5, 0.0, 3.0])
        expected = template.render(Context({"row": _token_rows(activation, scale)}))
        got = activation_row(activation, scale)
        assert got == expected
        seen.update(c for c in ("tok max", " far", "show all", "&lt;b&gt;", " space") if c in expected)
    assert seen == {"tok max", " far", "show all", "&lt;b&gt;", " space"}  # the comparison covers these cases
    # stored data the importer lets through: more values than tokens, a max index outside the snippet
    for n_tokens, n_values, max_i in [(20, 30, 3), (30, 30, -1), (30, 30, 45), (100, 100, -40), (100, 90, 150)]:
        activation = _activation(rng, n_tokens, n_values)
        activation.max_value_token_index = max_i
        assert activation_row(activation, 9.5) == template.render(Context({"row": _token_rows(activation, 9.5)}))
    # The include's {% spaceless %} also emptied the span of a token that is only non-ASCII whitespace (an em
    # space); the Python row keeps it, the one difference (so AWKWARD_TOKENS leaves it out above).
    row = _activation(rng, 4, 4)
    row.tokens[1] = "\u2003"
    assert ">\u2003</span>" in activation_row(row, 9.5)
    assert ">\u2003</span>" not in template.render(Context({"row": _token_rows(row, 9.5)}))
    assert activation_rows([row, row], 9.5) == activation_row(row, 9.5) * 2


def test_logit_and_similar_rows_render_what_the_template_loops_did():
    """logit_rows and similar_rows replaced these Jinja loops: the same markup, entities spelt as html.escape spells
    them (&quot; and &#x27; for Jinja's &#34; and &#39;)."""
    from jinja2 import Environment

    env = Environment(autoescape=True)
    env.filters.update(fixed=fixed, token_display=token_display)
    logits = env.from_string(
        '{% for s, v in pairs %}<tr><td class="tokcell" title="{{ s }}"><span>{{ s|token_display }}</span></td>'
        '<td class="num">{{ v|fixed(2) }}</td></tr>{% endfor %}'
    )
    similar = env.from_string(
        '{% for s in similar %}\n        <tr><td class="mono"><a href="{{ s.url }}">{{ name }} #{{ s.index }}</a></td>'
        '<td class="num">{{ s.value|fixed(3) }}</td></tr>{% endfor %}'
    )

    def spelt(html: str) -> str:
        return html.replace("&#34;", "&quot;").replace("&#39;", "&#x27;")

    pairs = list(zip(AWKWARD_TOKENS, AWKWARD_VALUES, strict=False))
    assert logit_rows(pairs) == spelt(logits.render(pairs=pairs))
    rows = [{"index": i, "value": v, "url": f"/m/<s>&'{i}/"} for i, v in enumerate(AWKWARD_VALUES)]
    assert similar_rows(rows, 'a<"b">') == spelt(similar.render(similar=rows, name='a<"b">'))
    assert "&lt;b&gt;" in logit_rows(pairs) and "&amp;#x27;" not in similar_rows(rows, "x")
