"""The dashboard's token spans are built in Python (features/templatetags/memicos.token_spans) for speed; these
tests hold them to the markup the template loop produced before, character for character."""

import random

from django.template import Context, Template
from django.template.defaultfilters import floatformat

from features.templatetags.memicos import floatformat3, token_spans

# The template loop token_spans replaced (templates/features/_act_row.html before bench/load.py's profile).
TEMPLATE_LOOP = (
    '{% load memicos %}{% for t in tokens %}<span class="tok{% if t.is_max %} max{% endif %}{% if t.far %} far'
    '{% endif %}{% if t.text|token_is_space %} space{% endif %}" style="--a:{{ t.alpha }}" title="{{ t.value|'
    'floatformat:3 }}" data-v="{{ t.value|floatformat:3 }}" data-tok="{{ t.text }}">{{ t.text|token_display }}'
    "</span>{% endfor %}"
)
AWKWARD_TOKENS = [" the", "<b>", "&amp;", '"quoted"', "it's", "  ", "\n", "\t", " \n", "", "é", "\u2003", "a<>&'\""]
AWKWARD_VALUES = [0.0, -0.0, 1.0005, 2.0005, -0.0004, -0.0005, 0.0015, 1e-7, 12345.6785, -3.25, 7, 1e21, 0.1 + 0.2]


def test_floatformat3_matches_djangos_floatformat_on_ties_signs_and_random_values():
    rng = random.Random(0)
    values = AWKWARD_VALUES + [rng.uniform(-20, 20) for _ in range(5000)]
    values += [round(rng.uniform(-5, 5), 4) for _ in range(5000)]  # four decimals: many half-way ties
    values += [float("inf"), float("nan"), "x"]
    mismatches = [(v, floatformat3(v), floatformat(v, 3)) for v in values if floatformat3(v) != floatformat(v, 3)]
    assert mismatches == []


def test_token_spans_render_the_same_markup_as_the_template_loop():
    rng = random.Random(1)
    tokens = []
    for i in range(400):
        text = rng.choice(AWKWARD_TOKENS) if i % 3 == 0 else f" w{rng.randrange(1000)}"
        value = rng.choice(AWKWARD_VALUES) if i % 5 == 0 else round(rng.uniform(-1, 9), 3)
        tokens.append(
            {
                "text": text,
                "value": value,
                "alpha": round(rng.random(), 3) if i % 7 else 0.0,
                "is_max": i == 17,
                "far": i % 11 == 0,
            }
        )
    expected = Template(TEMPLATE_LOOP).render(Context({"tokens": tokens}))
    assert token_spans(tokens) == expected
    assert 'class="tok max"' in expected and "&lt;b&gt;" in expected  # the comparison covers these cases
