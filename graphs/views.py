"""Graph pages: the viewer at Neuronpedia's `/<model>/graph?slug=…` (state in the URL: pinnedIds, supernodes,
clickedId, clerps, pruningThreshold, subgraph), the model's graph list with a generate form, and /graphs/."""

from urllib.parse import urlencode

from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from features.selectors import model_get
from graphs import selectors
from graphs.api.views import graph_wire, subgraph_wire
from graphs.services.graphs import GENERATE_LIMITS, MAX_PROMPT_TOKENS
from memicos_site.embed import embeddable

# The graph's state in the URL (Neuronpedia's names): the Embed snippet carries these, so it shows what is on screen.
GRAPH_STATE_PARAMS = ("slug", "subgraph", "pinnedIds", "supernodes", "clickedId", "clerps", "pruningThreshold")


@require_GET
@ensure_csrf_cookie
def graph_page(request, model_id: str):
    """A graph (`?slug=` or `?subgraph=`), else the model's graph list. Only a graph is an embed: the list with
    `?embed=true` stays a framable-nowhere page with its chrome."""
    if request.GET.get("slug") or request.GET.get("subgraph"):
        return _graph_view(request, model_id)
    model = model_get(model_id=model_id, user=request.user)
    graphs = selectors.graph_list(user=request.user, model_id=model.id)[:200]
    return render(
        request,
        "graphs/list.html",
        {
            "model": model, "graphs": [graph_wire(request, g) for g in graphs], "limits": GENERATE_LIMITS,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
        },
    )  # fmt: skip


@embeddable
def _graph_view(request, model_id: str):
    model = model_get(model_id=model_id, user=request.user)
    slug = request.GET.get("slug") or ""
    subgraph = None
    if request.GET.get("subgraph"):
        sub = selectors.subgraph_get(subgraph_id=request.GET["subgraph"], user=request.user)
        subgraph = subgraph_wire(sub)
        slug = sub.graph.slug
    # a PRIVATE graph is a 404 to everyone but its owner, embed or not (graph_get); its owner gets no Embed button
    graph = selectors.graph_get(model_id=model.id, slug=slug, user=request.user)
    wire = graph_wire(request, graph)
    # an embed is read-only, for its owner too: a framed page's posts would not carry this site's cookies
    wire["isOwner"] = bool(
        request.user.is_authenticated and graph.creator_id == request.user.pk and not request.is_embed
    )
    state = {k: request.GET[k] for k in GRAPH_STATE_PARAMS if request.GET.get(k)}
    wire["embedUrl"] = request.build_absolute_uri(request.path) + "?" + urlencode({**state, "embed": "true"})
    return render(request, "graphs/graph.html", {"model": model, "graph": wire, "subgraph": subgraph})


@require_GET
def graph_list_page(request):
    owner = request.GET.get("user") or None
    graphs = selectors.graph_list(user=request.user, owner_username=owner)[:500]
    return render(request, "graphs/list.html", {"graphs": [graph_wire(request, g) for g in graphs], "owner": owner})
