"""Server-rendered pages of the features app. Thin: reads through features.selectors (which decide
visibility), writes through features.services (which decide ownership and raise PermissionDenied/Http404/
ValidationError); these views only translate requests and messages."""

import json
from collections import defaultdict
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Prefetch, prefetch_related_objects
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_POST, require_safe
from rest_framework.exceptions import ValidationError as ApiValidationError

from features import hooks, selectors
from features.api.common import parse_index
from features.api.inputs import INT32_MAX
from features.forms import (
    ApiKeyForm,
    CommentForm,
    JumpForm,
    ListAddFeatureForm,
    ListForm,
    ModelNewForm,
    SignupForm,
    SourceSetNewForm,
)
from features.models import Explanation, Feature, Job
from features.services.api_keys import api_key_create, api_key_revoke
from features.services.bookmarks import bookmark_add, bookmark_delete
from features.services.comments import comment_create, comment_delete, list_comment_create, list_comment_delete
from features.services.lists import (
    LIST_NAME_MAX,
    list_add_features,
    list_create,
    list_create_with_features,
    list_delete,
    list_remove_feature,
    list_update,
)
from memicos_site.embed import embed_flag, embeddable

PAGE_SIZE = selectors.FEATURES_PAGE_SIZE
TOP_ACTIVATIONS_SHOWN = 200  # all top + interval samples a dashboard stores (SAEDashboard exports ≈ 20 + 10×5)


def _feature_url(feature: Feature) -> str:
    return reverse("feature", args=[feature.model_id, feature.source.name, feature.index])


def _validation_message(request, error: ValidationError) -> None:
    if hasattr(error, "message_dict"):
        for field, msgs in error.message_dict.items():
            messages.error(request, f"{field}: {' '.join(msgs)}")
    else:
        messages.error(request, " ".join(error.messages))


def _comment_from_form(request, create) -> None:
    """Post the comment form's text through `create(text)`, or say in a message why not."""
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A comment needs some text (at most 10,000 characters).")
        return
    try:
        create(form.cleaned_data["text"])
    except ValidationError as e:
        _validation_message(request, e)


def _back(request, fallback: str) -> HttpResponseRedirect:
    """Redirect to `next` when it is a local path, else to `fallback`."""
    nxt = request.POST.get("next") or ""
    return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else fallback)


def _index(raw: str) -> int:
    """A feature index from the path (ASCII digits, maybe a minus); beyond the column's range no feature has it."""
    try:
        return parse_index(raw)  # the API's parse, whose 400 is a page's 404
    except ApiValidationError:
        raise Http404("No such feature.") from None


def _with_top_explanation(features: list[Feature]) -> list[Feature]:
    # One query for the best explanation of every feature on the page (the features are already readable).
    prefetch_related_objects(
        features,
        Prefetch(
            "explanations",
            # unscored (NULL score_v2) last, as the feature page's list orders them: Postgres sorts NULLs first
            queryset=Explanation.objects.order_by(F("score_v2").desc(nulls_last=True), "-score_v1", "created_at"),
            to_attr="explanations_sorted",
        ),
    )
    for f in features:
        f.top_explanation = f.explanations_sorted[0] if f.explanations_sorted else None
    return features


# ---------------------------------------------------------------- sitemaps (sitemaps.org), robots.txt

_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def _origin(request) -> str:
    return f"{request.scheme}://{request.get_host()}"  # sitemaps need absolute URLs; the host is ALLOWED_HOSTS-checked


def _xml(tag: str, item: str, locs) -> HttpResponse:
    """A <urlset> or <sitemapindex> of escaped absolute URLs."""
    body = "".join(f"<{item}><loc>{loc}</loc></{item}>\n" for loc in locs)
    return HttpResponse(f"{_XML_HEAD}<{tag} {_NS}>\n{body}</{tag}>\n", content_type="application/xml; charset=utf-8")


@require_safe
def sitemap_index(request):
    """/sitemap.xml: the browsing pages' sitemap, then each listed source's features in files of 50,000."""
    origin = escape(_origin(request))
    locs = [f"{origin}{escape(reverse('sitemap-pages'))}"]
    for source, n in selectors.sitemap_sources():
        if n:
            url = f"{origin}{escape(reverse('sitemap-features', args=[source.model_id, source.name]))}"
            pages = -(-n // selectors.SITEMAP_PAGE_SIZE)
            locs += [url] + [f"{url}?p={k}" for k in range(2, pages + 1)]
    return _xml("sitemapindex", "sitemap", locs)


@require_safe
def sitemap_pages(request):
    """Home, every listed model, source set and source (and its UMAP), and every PUBLIC list."""
    urls = [reverse("home")]
    urls += [reverse("model", args=[m.id]) for m in selectors.model_list(user=None)]
    urls += [reverse("set-or-source", args=[s.model_id, s.name]) for s in selectors.source_set_list(user=None)]
    for source in selectors.source_list(user=None).order_by("model_id", "name"):
        urls.append(reverse("set-or-source", args=[source.model_id, source.name]))
        if source.has_umap:
            urls.append(reverse("autointerp:umap", args=[source.model_id, source.name]))
    urls += [reverse("list", args=[lst.id]) for lst in selectors.sitemap_lists()]
    origin = _origin(request)
    # dict.fromkeys: a source named like a set of its model shares the set's URL (set_or_source_page)
    return _xml("urlset", "url", (escape(origin + u) for u in dict.fromkeys(urls)))


@require_safe
def sitemap_features(request, model_id, source_id):
    """One file of a listed source's feature pages (`?p=` from 1, as Django's sitemaps page); 404 beyond the last."""
    raw = request.GET.get("p", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        raise Http404("p is a page number from 1.")
    source = selectors.sitemap_source(model_id=model_id, source_id=source_id)
    page = int(raw)
    indexes = selectors.sitemap_feature_indexes(source=source, page=page)
    if not indexes and page > 1:
        raise Http404(f"Page {page} of this sitemap is empty.")
    prefix = escape(_origin(request) + reverse("feature", args=[source.model_id, source.name, 0]).removesuffix("0/"))
    return _xml("urlset", "url", (f"{prefix}{i}/" for i in indexes))


@require_safe
def robots_txt(request):
    lines = ["User-agent: *", "Disallow: /admin/", "Disallow: /api/", "Disallow: /accounts/", "Disallow: /account/",
             f"Sitemap: {_origin(request)}{reverse('sitemap')}"]  # fmt: skip
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")


# ---------------------------------------------------------------- browsing


def home(request):
    user = request.user
    models = list(selectors.model_list(user=user))
    # two grouped counts rather than one annotate over sources × features (a join that multiplies rows)
    n_sources = dict(
        selectors.source_list(user=user).values_list("model_id").annotate(n=Count("id")).values_list("model_id", "n")
    )
    n_features = dict(
        Feature.objects.filter(selectors.feature_listed_q(user))
        .values_list("model_id")
        .annotate(n=Count("id"))
        .values_list("model_id", "n")
    )
    for m in models:
        m.n_sources, m.n_features = n_sources.get(m.id, 0), n_features.get(m.id, 0)
    releases = list(selectors.releases_with_set_counts(user=user))
    jobs = list(selectors.jobs_recent(user=user, limit=8))
    live_since = timezone.now() - timedelta(minutes=10)
    return render(
        request,
        "features/home.html",
        {
            "models": models,
            "releases": releases,
            "n_features": sum(n_features.values()),
            "n_sources": sum(m.n_sources for m in models),
            "jobs": jobs,
            # the page refreshes itself while a job is live (a job silent for 10 minutes no longer counts)
            "jobs_running": any(
                j.status in (Job.Status.PENDING, Job.Status.RUNNING) and j.updated_at > live_since for j in jobs
            ),
        },
    )


def release_page(request, name):
    """A release: its source sets (those the viewer may list) with their sources, grouped by model."""
    release = selectors.release_get(name=name, user=request.user)
    sets = list(selectors.source_set_list(user=request.user, release=release))
    sources = selectors.sources_sorted(
        selectors.source_list(user=request.user).filter(source_set__in=sets).annotate(n_features=Count("features"))
    )
    by_set = defaultdict(list)
    for s in sources:
        by_set[s.source_set_id].append(s)
    return render(
        request,
        "features/release.html",
        {"release": release, "source_sets": [(ss, by_set.get(ss.pk, [])) for ss in sets], "n_sources": len(sources),
         "links": [u for u in release.urls if u.startswith(("https://", "http://"))]},  # no javascript: hrefs
    )  # fmt: skip


def model_page(request, model_id):
    model = selectors.model_get(model_id=model_id, user=request.user)
    sources = selectors.sources_sorted(
        selectors.source_list(user=request.user, model=model).annotate(n_features=Count("features"))
    )
    by_set = defaultdict(list)
    for s in sources:
        by_set[s.source_set_id].append(s)
    source_sets = [(ss, by_set.get(ss.pk, [])) for ss in selectors.source_set_list(user=request.user, model=model)]
    return render(request, "features/model.html", {"model": model, "source_sets": source_sets})


def set_or_source_page(request, model_id, name):
    """`/<model>/<name>/` is a source set when one has that name, else a source (as on Neuronpedia)."""
    try:
        source_set = selectors.source_set_get(model_id=model_id, name=name, user=request.user)
    except Http404:
        return _source_page(request, model_id, name)
    sources = selectors.sources_sorted(
        selectors.source_list(user=request.user, source_set=source_set).annotate(n_features=Count("features"))
    )
    return render(
        request, "features/source_set.html", {"source_set": source_set, "model": source_set.model, "sources": sources}
    )


# Training metrics shown as stats at the top of a source page (training.py's names), with their labels.
HEADLINE_METRICS = [("l0", "L0"), ("explained_variance", "explained variance"), ("ce_loss_score", "CE loss score")]
METRIC_TEXT_CHARS = 120


def _metric_display(value) -> str:
    """A training metric as text a narrow table cell holds: 4 significant digits, long lists and text cut short."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    text = str(value)
    return text if len(text) <= METRIC_TEXT_CHARS else text[: METRIC_TEXT_CHARS - 1] + "…"


def _source_page(request, model_id, source_id):
    source = selectors.source_get(model_id=model_id, source_id=source_id, user=request.user)
    jump = JumpForm(request.GET if "index" in request.GET else None)
    if jump.is_bound and jump.is_valid():
        return redirect("feature", source.model_id, source.name, jump.cleaned_data["index"])
    try:
        offset = int(request.GET.get("offset", 0))
    except ValueError:
        offset = 0
    # Postgres takes OFFSET as a bigint; past the int32 range of indexes every page is empty anyway.
    offset = min(max(0, offset), INT32_MAX)
    offset -= offset % PAGE_SIZE
    rows = selectors.features_page(source=source, offset=offset, limit=PAGE_SIZE + 1)
    has_next = len(rows) > PAGE_SIZE
    features = _with_top_explanation(rows[:PAGE_SIZE])
    total = selectors.features_page_count(source=source)  # what the pages list, so no page link leads nowhere
    n_pages = max(1, -(-total // PAGE_SIZE))
    current = offset // PAGE_SIZE
    # a window of page links around the current page, plus first and last
    window = sorted({0, n_pages - 1, *range(max(0, current - 2), min(n_pages, current + 3))})
    pages = [
        {
            "number": p + 1,
            "offset": p * PAGE_SIZE,
            "current": p == current,
            "gap_before": i > 0 and p - window[i - 1] > 1,
        }
        for i, p in enumerate(window)
    ]
    metrics = [(k, _metric_display(v)) for k, v in sorted((source.metrics or {}).items())]
    return render(
        request,
        "features/source.html",
        {
            "source": source,
            "model": source.model,
            "features": features,
            "offset": offset,
            "first_shown": offset + 1 if features else 0,
            "last_shown": offset + len(features),
            "total": total,
            "pages": pages,
            "prev_offset": max(0, offset - PAGE_SIZE) if offset else None,
            "next_offset": offset + PAGE_SIZE if has_next else None,
            "jump": jump,
            "metrics": metrics,
            "headline_metrics": [(label, dict(metrics)[k]) for k, label in HEADLINE_METRICS if k in dict(metrics)],
        },
    )


# The feature embed's switches, as Neuronpedia names them, and the Embed button's labels for them.
FEATURE_EMBED_SWITCHES = [
    ("embedexplanation", "Explanation"),
    ("embedactivations", "Top activations"),
    ("embedplots", "Plots"),
    ("embedtest", "Test box"),
    ("embedlink", "Link"),
]


def embed_url(request, path: str) -> str:
    """The absolute address of a page's embed, for its Embed button."""
    return request.build_absolute_uri(path) + "?embed=true"


@embeddable
def feature_page(request, model_id, source_id, index):
    user = request.user
    board = selectors.feature_dashboard(
        model_id=model_id, source_id=source_id, index=_index(index), user=user, limit=TOP_ACTIVATIONS_SHOWN
    )
    feature, activations = board.feature, board.activations
    scale = max([feature.max_act_approx or 0.0] + [a.max_value for a in activations])
    top, bins = [], defaultdict(list)
    for a in activations:
        # SAEDashboard marks the top group with binMin = -1; interval samples carry their bounds.
        if a.bin_min is None or a.bin_min < 0:
            top.append(a)
        else:
            bins[(a.bin_min, a.bin_max)].append(a)
    intervals = [
        {"bin_min": lo, "bin_max": hi, "rows": rows, "contains": rows[0].bin_contains}
        for (lo, hi), rows in sorted(bins.items(), key=lambda kv: -(kv[0][1] or 0))
    ]
    pos = list(zip(feature.pos_str, feature.pos_values, strict=False))
    neg = list(zip(feature.neg_str, feature.neg_values, strict=False))
    # Neighbours share this page's URL up to the index (one reverse() instead of one per neighbour: under a
    # threaded server the 25 calls were a tenth of the page's CPU).
    siblings = _feature_url(feature).removesuffix(f"{feature.index}/")
    similar = [
        {"index": i, "value": v, "url": f"{siblings}{i}/"}
        for i, v in zip(feature.topk_cos_sim_indices, feature.topk_cos_sim_values, strict=False)
        if i != feature.index
    ][:10]
    own_lists = []
    bookmarked = False
    work = None  # explain/score/vote controls: signed-in users only, so anonymous reads cost no statement more
    if user.is_authenticated:
        own_lists = list(selectors.lists_of_user(owner=user, user=user))
        bookmarked = feature.bookmarks.filter(user=user).exists()
        if not getattr(request, "is_embed", False):  # a framed embed is read-only
            for controls in hooks.dashboard_work:  # autointerp's (features/hooks.py)
                work = controls(user=user, explanations=board.explanations)
    context = {
        "feature": feature,
        "source": feature.source,
        "model": feature.model,
        "user": user,
        "top": top,
        "intervals": intervals,
        "scale": scale,
        "pos": pos,
        "neg": neg,
        "explanations": board.explanations,
        "lists": board.lists,
        "own_lists": own_lists,
        "comments": board.comments,
        "bookmarked": bookmarked,
        "work": work,
        "similar": similar,
        "api_url": f"/api/feature/{feature.model_id}/{feature.source.name}/{feature.index}",
        "show": {name.removeprefix("embed"): embed_flag(request, name) for name, _ in FEATURE_EMBED_SWITCHES},
        "default_test_text": request.GET.get("defaulttesttext", "")[:4096],
        "embed_url": embed_url(request, _feature_url(feature)),
        "embed_switches": FEATURE_EMBED_SWITCHES,
    }
    # A Jinja2 template (memicos_site/jinja2.py says why) extending base.html, which both engines render.
    return render(request, "features/feature.html", context, using="jinja2")


def _feature_for_write(request, model_id, source_id, index) -> Feature:
    return selectors.feature_get(model_id=model_id, source_id=source_id, index=_index(index), user=request.user)


@login_required
@require_POST
def feature_bookmark(request, model_id, source_id, index):
    feature = _feature_for_write(request, model_id, source_id, index)
    if request.POST.get("action") == "remove":
        bookmark_delete(user=request.user, feature=feature)
        messages.success(request, "Bookmark removed.")
    else:
        bookmark_add(user=request.user, feature=feature)
        messages.success(request, "Feature bookmarked.")
    return redirect(_feature_url(feature))


@login_required
@require_POST
def feature_comment(request, model_id, source_id, index):
    feature = _feature_for_write(request, model_id, source_id, index)
    _comment_from_form(request, lambda text: comment_create(user=request.user, feature=feature, text=text))
    return redirect(_feature_url(feature) + "#comments")


@login_required
@require_POST
def comment_remove(request, comment_id):
    comment_delete(user=request.user, comment_id=comment_id)
    messages.success(request, "Comment deleted.")
    return _back(request, reverse("home"))


@login_required
@require_POST
def feature_add_to_list(request, model_id, source_id, index):
    feature = _feature_for_write(request, model_id, source_id, index)
    list_id = request.POST.get("list_id", "")
    if "\x00" in list_id:  # no list has one, and Postgres would refuse it in a query (a 500)
        raise Http404("No such list.")
    added = list_add_features(user=request.user, list_id=list_id, features=[feature])
    feature_list = selectors.list_get(list_id=list_id, user=request.user)
    messages.success(request, f"Added to “{feature_list.name}”." if added else f"Already in “{feature_list.name}”.")
    return redirect(_feature_url(feature) + "#lists")


# ---------------------------------------------------------------- lists


@embeddable
def list_page(request, list_id):
    feature_list = selectors.list_get(list_id=list_id, user=request.user)
    items = list(selectors.list_items(feature_list=feature_list, user=request.user))
    _with_top_explanation([i.feature for i in items])
    is_owner = request.user.is_authenticated and request.user.pk == feature_list.user_id
    share_url = request.build_absolute_uri(reverse("list", args=[feature_list.id]))
    return render(
        request,
        "features/list.html",
        {
            "list": feature_list,
            "items": items,
            "is_owner": is_owner,
            "add_form": ListAddFeatureForm() if is_owner else None,
            "share_url": share_url,
            "embed_url": share_url + "?embed=true",
            "comments": selectors.list_comments(feature_list=feature_list),
        },
    )


@login_required
@require_POST
def list_comment(request, list_id):
    feature_list = selectors.list_get(list_id=list_id, user=request.user)  # 404 where the list is not readable
    _comment_from_form(
        request, lambda text: list_comment_create(user=request.user, feature_list=feature_list, text=text)
    )
    return redirect(reverse("list", args=[feature_list.id]) + "#comments")


@login_required
@require_POST
def list_comment_remove(request, comment_id):
    comment = list_comment_delete(user=request.user, comment_id=comment_id)
    messages.success(request, "Comment deleted.")
    return redirect(reverse("list", args=[comment.list_id]) + "#comments")


@login_required
def list_new(request):
    form = ListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            feature_list = list_create(user=request.user, **form.cleaned_data)
        except ValidationError as e:
            _validation_message(request, e)
        else:
            messages.success(request, "List created. Share it by its URL.")
            return redirect("list", feature_list.id)
    return render(request, "features/list_form.html", {"form": form, "creating": True})


@login_required
def create_page(request):
    """Create a model, or a source set with one source per layer, to upload features into (as /api/model/new and
    /api/source-set/new do, through the same services and rules)."""
    from features.services.catalog import model_create, source_set_create

    which = request.POST.get("create") if request.method == "POST" else None
    model_form = ModelNewForm(request.POST if which == "model" else None, prefix="model")
    set_form = SourceSetNewForm(
        request.POST if which == "set" else None, prefix="set", initial={"model_id": request.GET.get("model", "")}
    )
    try:
        if which == "model" and model_form.is_valid():
            d = model_form.cleaned_data
            model = model_create(user=request.user, model_id=d["id"], layers=d["layers"],
                                 display_name=d["display_name"] or None, url=d["url"] or None)  # fmt: skip
            messages.success(request, f"Model {model.id} created (unlisted). Now add a source set to upload into.")
            return redirect(f"{reverse('create')}?model={model.id}#new-set")
        if which == "set" and set_form.is_valid():
            d = set_form.cleaned_data
            model = selectors.model_get(model_id=d["model_id"], user=request.user)
            source_set = source_set_create(user=request.user, model=model, name=d["name"],
                                           description=d["description"], url=d["url"] or None)  # fmt: skip
            messages.success(request, f"Source set created with {model.layers} sources (unlisted).")
            return redirect("set-or-source", model.id, source_set.name)
    except ValidationError as e:
        form = model_form if which == "model" else set_form
        for field, errors in e.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    except Http404:
        set_form.add_error("model_id", "No such model, or it is not yours to open.")
    return render(request, "features/create.html", {"model_form": model_form, "set_form": set_form})


@login_required
def list_edit(request, list_id):
    feature_list = selectors.list_get(list_id=list_id, user=request.user)
    if feature_list.user_id != request.user.pk:
        raise PermissionDenied("Only the owner of a list can change it.")
    initial = {k: getattr(feature_list, k) for k in ("name", "description", "default_test_text", "visibility")}
    form = ListForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            list_update(user=request.user, list_id=list_id, **form.cleaned_data)
        except ValidationError as e:
            _validation_message(request, e)
        else:
            messages.success(request, "List saved.")
            return redirect("list", list_id)
    return render(request, "features/list_form.html", {"form": form, "list": feature_list, "creating": False})


@login_required
@require_POST
def list_remove(request, list_id):
    list_delete(user=request.user, list_id=list_id)
    messages.success(request, "List deleted.")
    return redirect("user", request.user.get_username())


@login_required
@require_POST
def list_add_feature(request, list_id):
    form = ListAddFeatureForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the feature as model, source and a non-negative index.")
        return redirect("list", list_id)
    d = form.cleaned_data
    try:
        feature = selectors.feature_get(
            model_id=d["model_id"].strip(), source_id=d["source_id"].strip(), index=d["index"], user=request.user
        )
    except Http404:
        messages.error(request, f"No feature {d['model_id']}/{d['source_id']}/{d['index']}.")
        return redirect("list", list_id)
    try:
        added = list_add_features(
            user=request.user, list_id=list_id, features=[feature], descriptions={feature.pk: d["description"]}
        )
    except ValidationError as e:
        _validation_message(request, e)
    else:
        messages.success(request, "Feature added." if added else "That feature is already in the list.")
    return redirect("list", list_id)


@login_required
@require_POST
def list_remove_item(request, list_id, feature_id):
    feature = get_object_or_404(Feature.objects.filter(selectors.feature_readable_q(request.user)), pk=feature_id)
    if list_remove_feature(user=request.user, list_id=list_id, feature=feature):
        messages.success(request, "Feature removed from the list.")
    return _back(request, reverse("list", args=[list_id]))


# ---------------------------------------------------------------- quick lists

QUICK_LIST_MAX = 150  # Neuronpedia's cap on a quick list's features
QUICK_LIST_ACTIVATIONS = 2  # top activations shown per feature


class QuickListError(ValueError):
    """What is wrong with a quick list's query, for its 400 page."""


def _quick_list_input(params) -> tuple[str, list[tuple[str, str, int]]]:
    """`name` and `features` as SAELens's get_neuronpedia_quick_list writes them: a JSON array of
    {modelId, layer, index} with the index a string or a number. Duplicates are dropped, order kept."""
    name = (params.get("name") or "").strip()
    if not name:
        raise QuickListError("The quick list needs a name (?name=…).")
    if len(name) > LIST_NAME_MAX:
        raise QuickListError(f"The name is longer than {LIST_NAME_MAX} characters.")
    raw = params.get("features")
    if not raw:
        raise QuickListError('The quick list needs features (?features=[{"modelId": …, "layer": …, "index": …}]).')
    try:
        items = json.loads(raw)
    except ValueError:
        raise QuickListError("features is not valid JSON.") from None
    if not isinstance(items, list) or not items:
        raise QuickListError("features must be a non-empty JSON array.")
    if len(items) > QUICK_LIST_MAX:
        raise QuickListError(f"A quick list holds at most {QUICK_LIST_MAX} features; this one has {len(items)}.")
    refs = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise QuickListError(f"Feature {n} is not an object with modelId, layer and index.")
        model_id, layer, index = item.get("modelId"), item.get("layer"), item.get("index")
        if not isinstance(model_id, str) or not model_id or not isinstance(layer, str) or not layer:
            raise QuickListError(f"Feature {n} needs modelId and layer as strings.")
        if isinstance(index, bool) or not isinstance(index, (int, str)) or not str(index).isascii() \
                or not str(index).isdigit() or int(index) > INT32_MAX:  # fmt: skip
            raise QuickListError(f"Feature {n}'s index must be a whole number from 0 to {INT32_MAX}.")
        if "\x00" in model_id + layer:
            raise QuickListError(f"Feature {n} has a NUL character.")
        refs.append((model_id, layer, int(index)))
    return name, list(dict.fromkeys(refs))


def _quick_list_rows(refs, user) -> list[dict]:
    """Each asked feature with its best explanation and top activations; `feature` None where it is unknown or
    not readable (the two look alike)."""
    found = selectors.features_get_many(keys=refs, user=user)
    features = _with_top_explanation(list(found.values()))
    acts = selectors.top_activations_by_feature(feature_ids=[f.pk for f in features], limit=QUICK_LIST_ACTIVATIONS)
    rows = []
    for ref in refs:
        f = found.get(ref)
        top = acts.get(f.pk, []) if f else []
        scale = max([f.max_act_approx or 0.0] + [a.max_value for a in top]) if f else 0.0
        rows.append({"ref": ref, "feature": f, "activations": top, "scale": scale})
    return rows


@embeddable
@require_safe
def quick_list(request):
    """/quick-list/?name=…&features=[…]: features named in the URL (SAELens opens it), shown as a list; nothing is
    stored until a signed-in user saves it."""
    try:
        name, refs = _quick_list_input(request.GET)
    except QuickListError as e:
        return render(request, "features/quick_list.html", {"error": str(e)}, status=400)
    rows = _quick_list_rows(refs, request.user)
    return render(
        request,
        "features/quick_list.html",
        {
            "name": name,
            "rows": rows,
            "n_found": sum(1 for r in rows if r["feature"]),
            "features_json": request.GET["features"],
            "embed_url": request.build_absolute_uri(request.path)
            + "?"
            + urlencode({"name": name, "features": request.GET["features"], "embed": "true"}),
        },
    )


@login_required
@require_POST
def quick_list_save(request):
    """Save a quick list as the user's own list (UNLISTED), with the features they may read."""
    try:
        name, refs = _quick_list_input(request.POST)
    except QuickListError as e:
        return render(request, "features/quick_list.html", {"error": str(e)}, status=400)
    found = selectors.features_get_many(keys=refs, user=request.user)
    feature_list = list_create_with_features(
        user=request.user, name=name, features=[found[r] for r in refs if r in found]
    )
    messages.success(request, f"Saved as a list with {len(found)} feature{'s' if len(found) != 1 else ''}.")
    return redirect("list", feature_list.id)


# ---------------------------------------------------------------- users and accounts


def user_page(request, username):
    owner = get_object_or_404(get_user_model(), username=username, is_active=True)
    lists = selectors.lists_with_counts(owner=owner, user=request.user)
    return render(
        request,
        "features/user.html",
        {"owner": owner, "lists": lists, "is_self": request.user.is_authenticated and request.user.pk == owner.pk},
    )


@login_required
def account(request):
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _key, raw = api_key_create(user=request.user, name=form.cleaned_data["name"])
        # Shown once: kept in the session only until the next page view reads it.
        request.session["new_api_key"] = raw
        return redirect("account")
    keys = request.user.api_keys.all()
    bookmarks = (
        request.user.bookmarks.filter(selectors.feature_readable_q(request.user, "feature__"))
        .select_related("feature", "feature__source")
        .order_by("-created_at")[:50]
    )
    context = {"form": form, "keys": keys, "new_key": request.session.pop("new_api_key", None), "bookmarks": bookmarks}
    for extra in hooks.account_extras:  # autointerp's provider keys (features/hooks.py)
        context.update(extra(user=request.user))
    return render(request, "features/account.html", context)


@login_required
@require_POST
def api_key_revoke_view(request, key_id):
    if api_key_revoke(user=request.user, key_id=key_id):
        messages.success(request, "API key revoked. Requests using it now get 401.")
    else:
        messages.error(request, "No such active key.")
    return redirect("account")


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}.")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


# --- SAE benchmarks ------------------------------------------------------------------------------------------

SAE_BENCH_X = "core||sparsity||l0"
SAE_BENCH_Y = (
    "core||reconstruction_quality||explained_variance",
    "core||model_performance_preservation||ce_loss_score",
)


def _csv_param(request, name: str) -> list[str]:
    return [v for v in (x.strip() for x in request.GET.get(name, "").split(",")) if v]


@require_safe
def sae_bench_page(request):
    """/sae-bench: every listed source's benchmarks as a table, and L0 against a fidelity metric as a scatter plot.
    Filters are query parameters with Neuronpedia's names (modelId, saeClass, dSae: comma lists; metricY; logX), so
    a filtered view is a shareable URL."""
    widths = [int(w) for w in _csv_param(request, "dSae") if w.isdigit()]
    data = selectors.sae_bench_table(
        user=request.user,
        model_ids=_csv_param(request, "modelId"),
        architectures=_csv_param(request, "saeClass"),
        widths=widths,
    )
    metric_y = request.GET.get("metricY", SAE_BENCH_Y[0])
    by_key = {m.key: m for m in data["metrics"]}
    y_choices = [by_key[k] for k in SAE_BENCH_Y if k in by_key]
    if metric_y not in by_key:
        metric_y = SAE_BENCH_Y[0]
    log_x = request.GET.get("logX", "true") != "false"
    points = [
        {
            "x": r.values[SAE_BENCH_X],
            "y": r.values[metric_y],
            "label": f"{r.source.model_id}/{r.source.name}",
            "group": r.architecture,
            "url": reverse("set-or-source", args=[r.source.model_id, r.source.name]),
        }
        for r in data["rows"]
        if isinstance(r.values.get(SAE_BENCH_X), (int, float)) and isinstance(r.values.get(metric_y), (int, float))
    ]
    plot = {
        "points": points,
        "x": {"key": SAE_BENCH_X, "title": by_key[SAE_BENCH_X].title if SAE_BENCH_X in by_key else "L0", "log": log_x},
        "y": {"key": metric_y, "title": by_key[metric_y].title if metric_y in by_key else metric_y, "log": False},
    }
    rows = [{"row": r, "cells": [r.values.get(m.key) for m in data["columns"]]} for r in data["rows"]]
    return render(
        request,
        "features/sae_bench.html",
        {
            "rows": rows,
            "columns": data["columns"],
            "choices": data["choices"],
            "selected": {
                "modelId": _csv_param(request, "modelId"),
                "saeClass": _csv_param(request, "saeClass"),
                "dSae": [str(w) for w in widths],
            },
            "metric_y": metric_y,
            "y_choices": y_choices,
            "log_x": log_x,
            "plot": plot,
        },
    )
