"""Pages: explanation search and the per-source UMAP scatter. Reads through selectors; no torch here."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from autointerp import selectors as sel
from features.selectors import source_get, top_activations_by_feature
from memicos_site.embed import embeddable

PAGE = sel.PAGE_SIZE


def search_page(request):
    from autointerp.api.views import ServiceUnavailable, query_vector

    query = (request.GET.get("q") or "").strip()
    raw = request.GET.get("offset") or "0"
    # isdigit() alone admits "²" (which int() refuses) and other scripts' digits
    offset = min(int(raw), sel.MAX_OFFSET) if raw.isascii() and raw.isdigit() else 0
    # ?model=&source=: the search scoped to one source (the source page links it); both or neither
    model_id, source_name = (request.GET.get("model") or "").strip(), (request.GET.get("source") or "").strip()
    scope = {"model_id": model_id, "source_names": [source_name]} if model_id and source_name else {}
    context = {"query": query, "hits": [], "error": "", "offset": offset, "scope": scope and f"{model_id}/{source_name}",
               "scope_model": model_id if scope else "", "scope_source": source_name if scope else ""}  # fmt: skip
    if len(query) >= 3:
        try:
            vector, field = query_vector(query)
        except ServiceUnavailable as exc:
            context["error"] = str(exc.detail)
        else:
            hits, has_more = sel.explanation_search(user=request.user, query=query, vector=vector, field=field,
                                                    offset=offset, **scope)  # fmt: skip
            acts = top_activations_by_feature(feature_ids={h.explanation.feature_id for h in hits}, limit=1)
            context.update(
                hits=[{"hit": h, "snippet": _snippet(acts[h.explanation.feature.pk])} for h in hits],
                has_more=has_more, next_offset=offset + PAGE, prev_offset=max(0, offset - PAGE),
            )  # fmt: skip
    elif query:
        context["error"] = "Type at least 3 characters."
    return render(request, "autointerp/search.html", context)


def _snippet(activations, radius: int = 8) -> list[tuple[str, bool]]:
    """(token, is_max) pairs around the strongest token of the feature's top activation."""
    if not activations:
        return []
    a = activations[0]
    peak = a.max_value_token_index
    lo, hi = max(0, peak - radius), min(len(a.tokens), peak + radius // 2 + 1)
    return [(a.tokens[i], i == peak) for i in range(lo, hi)]


@embeddable
def umap_page(request, model_id: str, source_id: str):
    source = source_get(model_id=model_id, source_id=source_id, user=request.user)  # 404 if PRIVATE for others
    n_points = source.features.filter(umap_x__isnull=False, umap_y__isnull=False).count() if source.has_umap else 0
    return render(
        request,
        "autointerp/umap.html",
        {
            "source": source,
            "n_points": n_points,
            "points_url": reverse("autointerp:umap-points", args=[source.model_id, source.name]),
            "embed_url": request.build_absolute_uri(request.path) + "?embed=true",
        },
    )


@require_safe
def umap_points(request, model_id: str, source_id: str):
    """The scatter's data, fetched by the page: columns of index, x, y, cluster and a short label."""
    source = source_get(model_id=model_id, source_id=source_id, user=request.user)
    points = (
        sel.umap_points_lean(source=source)
        if source.has_umap
        else {"index": [], "x": [], "y": [], "cluster": [], "label": []}
    )
    return JsonResponse(points)


@require_safe
def score_breakdown_page(request, score_id: str):
    """Which examples a scorer judged right or wrong. `?fragment=1`: the table alone (the dashboard's dialog)."""
    breakdown = sel.score_breakdown(score_id=score_id, user=request.user)
    feature = breakdown.score.explanation.feature
    context = {"b": breakdown, "feature": feature, "feature_url": reverse(
        "feature", args=[feature.model_id, feature.source.name, feature.index]
    )}  # fmt: skip
    if request.GET.get("fragment") == "1":
        return render(request, "autointerp/_score_breakdown.html", context)
    return render(request, "autointerp/score_breakdown.html", context)


# --- provider keys (the account page's form posts here) ---


@login_required
@require_POST
def provider_key_add(request):
    from django.core.exceptions import ValidationError

    from autointerp.services import provider_key_set

    try:
        key = provider_key_set(
            user=request.user, provider=request.POST.get("provider", ""), api_key=request.POST.get("api_key", ""),
            base_url=request.POST.get("base_url", ""),
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, "Provider key not saved: " + "; ".join(
            f"{field}: {', '.join(errs)}" for field, errs in exc.message_dict.items()
        ))  # fmt: skip
    else:
        messages.success(request, f"Your {key.provider} key ({key.masked}) is saved, encrypted. Your jobs use it.")
    return redirect(reverse("account") + "#provider-keys")


@login_required
@require_POST
def provider_key_remove(request, key_id: int):
    from autointerp.services import provider_key_delete

    if provider_key_delete(user=request.user, key_id=key_id):
        messages.success(request, "Provider key deleted.")
    else:
        messages.error(request, "No such provider key.")
    return redirect(reverse("account") + "#provider-keys")
