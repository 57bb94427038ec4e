"""Template helpers for the feature pages: token rendering and server-side SVG histograms.

The plots are drawn here as inline SVG so the dashboard needs no JS plotting library and renders the
same with scripts off (and in the OpenGraph-free screenshot the README shows).
"""

import html
import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.template.defaultfilters import floatformat
from django.utils.formats import localize
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from memicos_site.chrome import cached_reverse

register = template.Library()

# Tokens whose characters would otherwise be invisible in the page.
_VISIBLE = {"\n": "↵", "\r": "␍", "\t": "⇥"}
_VISIBLE_TABLE = str.maketrans(_VISIBLE)


@register.filter
def token_display(token: str) -> str:
    """A token as the reader should see it: newlines/tabs as arrows, a whitespace-only token as dots."""
    token = token or ""
    shown = token if token.isprintable() else token.translate(_VISIBLE_TABLE)  # most tokens need no mapping
    if token and not token.strip(" "):
        shown = "·" * len(token)  # a run of spaces; otherwise it would collapse to nothing
    return shown


@register.filter
def token_is_space(token: str) -> bool:
    return bool(token) and not token.strip()


_QUANTA = {d: Decimal(1).scaleb(-d) for d in range(1, 7)}  # 0.1 … 0.000001
_ZEROS = {d: "0." + "0" * d for d in _QUANTA}


@register.filter
def fixed(value, digits: int = 3) -> str:
    """Django's `floatformat:<digits>` for 1–6 digits (half-up rounding of the float's shortest repr, never "-0.000")
    at a tenth of its cost: a dashboard prints two per token, thousands per page, most of them for a value of 0."""
    quantum = _QUANTA.get(digits)
    if quantum is None:
        return floatformat(value, digits)
    if value == 0:
        return _ZEROS[digits]
    try:
        d = Decimal(repr(float(value)))
        if not d.is_finite():
            raise InvalidOperation
        d = d.quantize(quantum, ROUND_HALF_UP)
    except (InvalidOperation, TypeError, ValueError):  # inf, nan, huge or not a number: Django's own answer
        return floatformat(value, digits)
    return f"{abs(d) if d.is_zero() else d:f}"


# A snippet longer than SHORT_SNIPPET tokens (SAEDashboard stores 128) shows CONTEXT_BEFORE/AFTER tokens around its
# max, the rest behind "show all".
SHORT_SNIPPET, CONTEXT_BEFORE, CONTEXT_AFTER = 48, 32, 12
_TOKEN_PARTS: dict[str, tuple] = {}  # token → its markup pieces; a model's vocabulary is bounded
_TOKEN_PARTS_MAX = 65_536  # at ~0.5 KB each, a bound on the memory of a process's memo


def _token_parts(text: str) -> tuple[str, str, str, str, str]:
    """(extra class, escaped data-tok, escaped display, and the whole span at value 0, near and far from the max)
    of a token, memoised: a page shows ~500 tokens, most of them seen before and most at 0 (92 % of bench/load.py's
    values, as in real SAE activations); escaping each anew was a sixth of the dashboard's render time."""
    parts = _TOKEN_PARTS.get(text)
    if parts is None:
        if len(_TOKEN_PARTS) >= _TOKEN_PARTS_MAX:
            _TOKEN_PARTS.clear()
        space = " space" if token_is_space(text) else ""
        tok, shown = html.escape(text), html.escape(token_display(text))
        zero = f'{space}" style="--a:0.0" title="0.000" data-v="0.000" data-tok="{tok}">{shown}</span>'
        parts = _TOKEN_PARTS[text] = (space, tok, shown, f'<span class="tok{zero}', f'<span class="tok far{zero}')
    return parts


def activation_row(activation, scale: float) -> str:
    """One activation snippet as the dashboard shows it: its max, then one shaded span per token (alpha =
    value / the feature's max activation, negatives unshaded), tokens far from the max hidden until "show
    all". Built in Python: as a template include per row it took close to half the page's render time."""
    tokens, values = activation.tokens, activation.values
    n, n_values = len(tokens), len(values)
    max_i = activation.max_value_token_index
    lo, hi = (0, n) if n <= SHORT_SNIPPET else (max_i - CONTEXT_BEFORE, max_i + CONTEXT_AFTER)
    get = _TOKEN_PARTS.get
    parts = [get(text) or _token_parts(str(text)) for text in tokens]
    # Every token first as its memoised span at value 0 (most are), near the max in [a, b), far outside it; then
    # the few with a value, and the max, are written out. Slices and comprehensions instead of one Python-level
    # step per token: a third of the row's time.
    a, b = max(0, lo), max(0, min(n, hi + 1))
    spans = [p[4] for p in parts[:a]] + [p[3] for p in parts[a:b]] + [p[4] for p in parts[b:]]
    truncated = a > 0 or b < n
    marked = [i for i, value in enumerate(values[:n]) if value]
    if 0 <= max_i < n and not (max_i < n_values and values[max_i]):
        marked.append(max_i)
    for i in marked:
        value = values[i] if i < n_values else 0.0
        far = not (lo <= i <= hi)
        space, tok, shown = parts[i][:3]
        alpha = round(max(0.0, min(1.0, value / scale)), 3) if scale > 0 and value else 0.0
        v = fixed(value, 3)
        spans[i] = (
            f'<span class="tok{" max" if i == max_i else ""}{" far" if far else ""}{space}" style="--a:{alpha}" '
            f'title="{v}" data-v="{v}" data-tok="{tok}">{shown}</span>'
        )
    top = activation.max_value
    shown_max = repr(top) if type(top) is float else ""
    if not shown_max or "e" in shown_max or "n" in shown_max:  # what localize() writes otherwise (no exponent)
        shown_max = localize(top)
    head = (
        f'<div class="act-row" data-max="{shown_max}">\n  <div class="act-max" title="maximum activation in '
        f'this snippet">{fmt(top, 2)}</div>\n  <div class="act-text">'
    )
    if not truncated:
        return f"{head}{''.join(spans)}</div>\n</div>"
    more = (
        f'<button type="button" class="more" aria-expanded="false"><span class="collapsed-label">show all {n} '
        f'tokens</span><span class="expanded-label">show less</span></button>'
    )
    return f'{head}<span class="ellipsis">…</span>{"".join(spans)}{more}</div>\n</div>'


@register.simple_tag
def activation_rows(activations, scale) -> SafeString:
    return mark_safe("".join(activation_row(a, scale) for a in activations))


def logit_rows(pairs) -> SafeString:
    """The top-logits tables' rows (token, its weight). Built in Python like the activation rows: through the
    template's loop each row cost three autoescapes and as many lookups, ~30 rows a page."""
    esc = html.escape
    return mark_safe(
        "".join(
            f'<tr><td class="tokcell" title="{esc(str(s))}"><span>{esc(token_display(s))}</span></td>'
            f'<td class="num">{fixed(v, 2)}</td></tr>'
            for s, v in pairs
        )
    )


def similar_rows(similar, source_name: str) -> SafeString:
    """The similar-features table's rows: `similar` holds {index, value, url} (features.views.feature_page)."""
    name, esc = html.escape(source_name), html.escape
    return mark_safe(
        "".join(
            f'\n        <tr><td class="mono"><a href="{esc(s["url"])}">{name} #{s["index"]}</a></td>'
            f'<td class="num">{fixed(s["value"], 3)}</td></tr>'
            for s in similar
        )
    )


@register.simple_tag
def crumbs(*, model=None, source_set=None, source=None, feature=None) -> SafeString:
    """The breadcrumb trail Home / model / source set or source / feature index, as far as it is given."""
    parts = [f'<nav class="crumbs" aria-label="Breadcrumb"><a href="{cached_reverse("home")}">Home</a>']
    sep = '<span class="sep">/</span>'
    if model:
        parts.append(f'{sep}<a href="{escape(cached_reverse("model", model.id))}">{escape(model.id)}</a>')
    for named in (source_set, source):
        if named:
            url = cached_reverse("set-or-source", model.id, named.name)
            parts.append(f'{sep}<a href="{escape(url)}">{escape(named.name)}</a>')
    if feature:
        parts.append(f"{sep}<span>{feature.index}</span>")
    parts.append("</nav>")
    return mark_safe("".join(parts))


@register.filter
def pct(value, digits: int = 3) -> str:
    """A 0–1 fraction as a percentage with enough significant digits for rare features (0.0123 → 1.23%)."""
    if value is None:
        return "—"
    p = float(value) * 100
    if p == 0:
        return "0%"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(p))))) if p else 0
    return f"{p:.{min(decimals, 6)}f}%"


@register.filter
def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    v = float(value)
    if v and abs(v) < 10 ** -int(digits):
        return f"{v:.{int(digits)}g}"  # tiny values would otherwise print as 0.000
    return f"{v:.{int(digits)}f}"


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi] (the usual 1-2-5 steps)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k" if abs(v) < 1e6 else f"{v:.1e}"
    if abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:g}" if abs(v) >= 1 else f"{v:.2f}".rstrip("0").rstrip(".")


@register.simple_tag
def histogram_svg(values, heights, *, title="", x_label="", y_label="count", kind="density", width=360, height=190):
    """An inline SVG bar chart of a Neuronpedia histogram (`*_hist_data_bar_values` are the bar centres,
    `*_bar_heights` the counts). `kind="logits"` colours bars left of zero red and right of zero blue."""
    values = [float(v) for v in (values or [])]
    heights = [float(h) for h in (heights or [])]
    n = min(len(values), len(heights))
    if n == 0:
        return mark_safe('<p class="muted">No histogram data for this feature.</p>')
    values, heights = values[:n], heights[:n]
    ml, mr, mt, mb = 46, 10, (26 if title else 8), 38  # margins: room for y tick labels, title, x labels
    pw, ph = width - ml - mr, height - mt - mb
    if n > 1:
        step = min(b - a for a, b in zip(values, values[1:], strict=False)) or (values[-1] - values[0]) / (n - 1) or 1.0
    else:
        step = abs(values[0]) or 1.0
    x_lo, x_hi = values[0] - step / 2, values[-1] + step / 2
    y_hi = max(heights) or 1.0
    y_ticks = _nice_ticks(0, y_hi, 4)
    y_top = max(y_hi, y_ticks[-1])

    def sx(x):
        return ml + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y):
        return mt + ph - y / y_top * ph

    parts = [
        f'<svg class="hist hist-{escape(kind)}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title or y_label + " by " + x_label)}" xmlns="http://www.w3.org/2000/svg">',
    ]
    if title:
        parts.append(f'<text class="hist-title" x="{ml}" y="15">{escape(title)}</text>')
    for t in y_ticks:
        y = sy(t)
        parts.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{ml - 6}" y="{y + 3.5:.1f}" text-anchor="end">{_tick_label(t)}</text>')
    bar_w = max(1.0, pw / n - (1.5 if n < 80 else 0.3))
    # sx and sy inlined, the constant attributes formatted once: two histograms' ~100 bars were 8 % of the page
    x0, kx, base, ky = ml - x_lo * pw / (x_hi - x_lo) - bar_w / 2, pw / (x_hi - x_lo), mt + ph, ph / y_top
    width_attr = f'" width="{bar_w:.1f}" height="'
    for v, h in zip(values, heights, strict=False):
        y = base - h * ky
        cls = "bar" if kind != "logits" else ("bar bar-neg" if v < 0 else "bar bar-pos")
        parts.append(
            f'<rect class="{cls}" x="{x0 + v * kx:.1f}" y="{y:.1f}{width_attr}{base - y:.1f}">'
            f"<title>{_tick_label(round(v, 4))}: {h:g}</title></rect>"
        )
    parts.append(f'<line class="axis" x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}"/>')
    parts.append(f'<line class="axis" x1="{ml}" x2="{ml}" y1="{mt}" y2="{mt + ph}"/>')
    for t in _nice_ticks(x_lo, x_hi, 6):
        x = sx(t)
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle">{_tick_label(t)}</text>')
    if kind == "logits" and x_lo < 0 < x_hi:
        parts.append(f'<line class="zero" x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{mt}" y2="{mt + ph}"/>')
    parts.append(
        f'<text class="axis-label" x="{ml + pw / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text class="axis-label" transform="translate(11 {mt + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))


@register.simple_tag(takes_context=True)
def query_with(context, **kwargs) -> str:
    """The current query string with some parameters replaced (for pager links)."""
    params = context["request"].GET.copy()
    for k, v in kwargs.items():
        params[k] = v
    return params.urlencode()


@register.inclusion_tag("features/_evals_pane.html")
def evals_pane(source):
    """A source page's benchmarks pane, self-contained: the page's view already decided the source is readable."""
    import json

    from features.selectors import eval_list_for_source, eval_metric_value, eval_sae_kind, eval_type_metrics

    evals = []
    for row in eval_list_for_source(source=source):
        values = [(m, eval_metric_value(row.output, m)) for m in eval_type_metrics(row.type)]
        values = [
            {"title": m.title, "description": m.description, "category": m.category, "metric": m.metric, "value": v,
             "headline": m.default_display}
            for m, v in values if v is not None
        ]  # fmt: skip
        known = {(v["category"], v["metric"]) for v in values}
        for category, group in (row.output.get("eval_result_metrics") or {}).items():
            for metric, v in (group or {}).items() if isinstance(group, dict) else ():
                if (category, metric) not in known and isinstance(v, (int, float)) and not isinstance(v, bool):
                    values.append({"title": metric, "description": "", "category": category, "metric": metric,
                                   "value": v, "headline": False})  # fmt: skip
        evals.append(
            {
                "type_name": row.type_id,
                "transcoder": eval_sae_kind(row.output) == "transcoder",
                "title": row.type.display_name or row.type_id,
                "description": row.type.description,
                "headline": [v for v in values if v["headline"]],
                "more": [v for v in values if not v["headline"]],
                "config": json.dumps(row.output.get("eval_config") or {}, indent=1),
                "created": row.updated_at,
            }
        )
    return {"source": source, "evals": evals}
