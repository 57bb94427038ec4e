"""`{% genre_spread feature %}`: the genre table of a passage feature (nothing when its source has no passages)."""

from django import template

from retrieval.selectors import genre_spread as genre_spread_select

register = template.Library()


@register.inclusion_tag("retrieval/_genre_spread_table.html")
def genre_spread(feature, top: int = 20):
    return {"feature": feature, "spread": genre_spread_select(feature=feature, top=top) if feature else None}
