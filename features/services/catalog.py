"""Users create models and source sets (Neuronpedia's /api/model/new and /api/source-set/new).

Both are UNLISTED and owned by their creator: reachable by anyone with the id, listed only to the owner, and
only the owner (or staff) uploads into them (imports/services/uploads.py checks the source set's creator).
"""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from features.models import Model, Source, SourceSet, Visibility
from features.selectors import site_top_level_paths

# Neuronpedia's rules (shared/reference/parity.md, C1/C2), less the '.' it allows: our pages address a model
# as a slug (`/<model>/...`), so a dotted id would have no pages.
MODEL_ID_RE = re.compile(r"[a-z][a-z0-9-]{1,31}")
MODEL_LAYERS_MAX = 127
MODEL_DISPLAY_NAME_MAX = 64
SOURCE_SET_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SOURCE_SET_DESCRIPTION_MAX = 128
URL_MAX = 512
# "neurons" is Neuronpedia's own; the vector sets are where /api/vector/new files every user's vectors.
RESERVED_SET_NAMES = {"neurons", "neuronpedia-resid-pre", "neuronpedia-resid-post"}


def model_create(*, user, model_id: str, layers: int, display_name: str | None = None, url: str | None = None) -> Model:
    if not MODEL_ID_RE.fullmatch(model_id):
        raise ValidationError(
            {"id": "must be 2–32 characters of a-z, 0-9 and '-', starting with a letter (e.g. gemma-2-2b)."}
        )
    if model_id in site_top_level_paths():
        raise ValidationError({"id": f"{model_id!r} is reserved (a page of this site lives at /{model_id})."})
    if not 1 <= layers <= MODEL_LAYERS_MAX:
        raise ValidationError({"layers": f"must be between 1 and {MODEL_LAYERS_MAX}."})
    try:
        with transaction.atomic():
            return Model.objects.create(
                id=model_id,
                layers=layers,
                # Neuronpedia's client sends null when no display name is given; the id then names the model.
                display_name=(display_name or model_id)[:MODEL_DISPLAY_NAME_MAX],
                website=url or "",
                owner="custom",
                visibility=Visibility.UNLISTED,
                creator=user,
            )
    except IntegrityError:
        raise ValidationError({"id": f"a model with id {model_id!r} already exists."}) from None


def source_set_create(
    *, user, model: Model, name: str, description: str | None = None, url: str | None = None
) -> SourceSet:
    """The set plus one source per layer of its model, named `<layer>-<name>` (Neuronpedia's convention)."""
    if not SOURCE_SET_NAME_RE.fullmatch(name):
        raise ValidationError({"name": "must be 1–64 characters of a-z, 0-9 and '-' (e.g. res-16k)."})
    if name in RESERVED_SET_NAMES:
        raise ValidationError({"name": f"{name!r} is reserved."})
    if model.layers < 1:
        raise ValidationError({"modelId": f"model {model.id} has no layers to make sources for."})
    if SourceSet.objects.filter(model=model, name=name).exists():
        raise ValidationError({"name": f"source set {model.id}/{name} already exists."})
    names = [f"{layer}-{name}" for layer in range(model.layers)]
    # `/<model>/<name>/` is a set's page or a source's: no new set or source may take the other kind's name
    taken = list(Source.objects.filter(model=model, name__in=[*names, name]).values_list("name", flat=True)[:1])
    taken += SourceSet.objects.filter(model=model, name__in=names).values_list("name", flat=True)[:1]
    if taken:
        raise ValidationError({"name": f"{model.id}/{taken[0]} already exists (a source set or a source)."})
    try:
        with transaction.atomic():
            source_set = SourceSet.objects.create(
                model=model,
                name=name,
                description=description or "",
                urls=[url] if url else [],
                visibility=Visibility.UNLISTED,
                creator=user,
                creator_name=user.get_username(),
            )
            Source.objects.bulk_create(
                Source(model=model, name=n, source_set=source_set, visibility=Visibility.UNLISTED, creator=user)
                for n in names
            )
    except IntegrityError:  # a concurrent request made the same set
        raise ValidationError({"name": f"source set {model.id}/{name} already exists."}) from None
    return source_set
