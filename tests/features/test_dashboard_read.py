"""features.selectors.feature_dashboard: the hand-written, prepared read behind the feature page and GET /api/feature
must decide visibility exactly as the ORM selectors do and return the same rows."""

import itertools
import random

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http import Http404

from features.models import (
    Activation,
    Comment,
    ExplanationScore,
    ExplanationScoreModel,
    ExplanationScoreType,
    Feature,
    ListItem,
    Source,
    Visibility,
)
from features.selectors import feature_dashboard, feature_get
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ListFactory,
    ModelFactory,
    SourceFactory,
    SourceSetFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _found(read, feature, user) -> bool:
    try:
        got = read(model_id=feature.model_id, source_id=feature.source.name, index=feature.index, user=user)
    except Http404:
        return False
    board_feature = getattr(got, "feature", got)
    assert board_feature.pk == feature.pk
    return True


def test_visibility_matches_the_orm_selector_for_every_combination_and_kind_of_user(user, other_user, staff_user):
    rng = random.Random(7)
    visibilities = list(Visibility)
    # every visibility combination of (model, source set, source), each with creators drawn at random
    features = []
    for k, (vm, vs, vsrc) in enumerate(itertools.product(visibilities, repeat=3)):
        for _ in range(2):
            creators = [rng.choice([user, other_user, None]) for _ in range(3)]
            model = ModelFactory(visibility=vm, creator=creators[0])
            source_set = SourceSetFactory(model=model, visibility=vs, creator=creators[1])
            source = SourceFactory(source_set=source_set, model=model, visibility=vsrc, creator=creators[2])
            features.append(FeatureFactory(source=source, model=model, index=k))
    readers = [AnonymousUser(), user, other_user, staff_user]
    seen = set()
    for feature, reader in itertools.product(features, readers):
        expected = _found(feature_get, feature, reader)
        assert _found(feature_dashboard, feature, reader) == expected, (
            feature.model.visibility,
            feature.source.source_set.visibility,
            feature.source.visibility,
            reader,
        )
        seen.add(expected)
    assert seen == {True, False}  # both outcomes occurred


def columns(instance) -> dict:
    """Every column's value with its type (the dashboard's statements read binary results, the ORM text ones):
    timestamps must carry the same time zone, JSON must decode alike, arrays must hold the same types."""

    def typed(value):
        if isinstance(value, list):
            return [typed(v) for v in value]
        return (type(value), value, getattr(value, "tzinfo", None))

    return {f.attname: typed(getattr(instance, f.attname)) for f in instance._meta.concrete_fields}


def test_rows_equal_the_orm_rows_and_stay_equal_once_the_statements_are_prepared(user, other_user):
    model = ModelFactory(loader={"kind": "hf", "dtype": "bfloat16"})
    source_set = SourceSetFactory(model=model)
    source = SourceFactory(source_set=source_set, model=model, saelens_config={"d_sae": 16, "hook": "x"})
    feature = FeatureFactory(source=source, model=model, index=3, creator=user)
    ActivationFactory.create_batch(6, feature=feature)
    ActivationFactory(feature=feature, max_value=99.0)
    low = ExplanationFactory(feature=feature, score_v1=0.2, author=user)
    high = ExplanationFactory(feature=feature, score_v1=0.9, triggered_by=other_user)
    score_type = ExplanationScoreType.objects.create(name="recall")
    score_model = ExplanationScoreModel.objects.create(name="gpt-4o-mini")
    ExplanationScore.objects.create(explanation=low, value=0.5, score_type=score_type, score_model=score_model)
    ListItem.objects.create(list=ListFactory(visibility=Visibility.PUBLIC), feature=feature)
    ListItem.objects.create(list=ListFactory(visibility=Visibility.PRIVATE, user=other_user), feature=feature)
    first = Comment.objects.create(feature=feature, user=other_user, text="first")
    second = Comment.objects.create(feature=feature, user=user, text="second")

    orm_activations = list(Activation.objects.filter(feature=feature).order_by("-max_value", "id"))
    for _ in range(8):  # psycopg prepares the statements after DB_PREPARE_THRESHOLD (5) uses on this connection
        board = feature_dashboard(model_id=model.id, source_id=source.name, index=3, user=user, limit=5)
        f = board.feature
        assert columns(f) == columns(Feature.objects.get(pk=feature.pk))
        assert f.model.loader == {"kind": "hf", "dtype": "bfloat16"}  # JSON decoded as the ORM decodes it
        assert columns(f.source) == columns(Source.objects.get(pk=source.pk))
        assert columns(f.model) == columns(type(f.model).objects.get(pk=model.pk))
        assert f.source.source_set.pk == source_set.pk and f.creator.pk == user.pk
        assert [a.pk for a in board.activations] == [a.pk for a in orm_activations[:5]]
        assert board.activations[0].max_value == 99.0
        assert [columns(a) for a in board.activations] == [columns(a) for a in orm_activations[:5]]
        orm_explanations = {e.pk: e for e in type(high).objects.filter(feature=feature)}
        assert all(columns(e) == columns(orm_explanations[e.pk]) for e in board.explanations)
        assert [e.pk for e in board.explanations] == [high.pk, low.pk]
        assert board.explanations[0].triggered_by.pk == other_user.pk and board.explanations[1].author.pk == user.pk
        assert board.explanations[0].author is None and board.explanations[1].triggered_by is None  # null FKs
        assert [s.score_type.name for s in board.explanations[1].scores.all()] == ["recall"]
        assert list(board.explanations[0].scores.all()) == []
        assert [lst.visibility for lst in board.lists] == [Visibility.PUBLIC]  # the other user's private list: not
        assert [c.pk for c in board.comments] == [first.pk, second.pk]
    assert connection.connection.prepare_threshold == 5


def test_a_plain_feature_costs_three_statements(django_assert_num_queries):
    feature = FeatureFactory()
    ActivationFactory.create_batch(3, feature=feature)
    ExplanationFactory(feature=feature)
    args = {"model_id": feature.model_id, "source_id": feature.source.name, "index": feature.index}
    with django_assert_num_queries(3) as ctx:
        board = feature_dashboard(**args, user=AnonymousUser())
    assert len(board.activations) == 3 and len(board.explanations) == 1 and not board.lists and not board.comments
    assert all(q["sql"].lstrip().startswith("SELECT") for q in ctx.captured_queries)
    with pytest.raises(Http404):
        feature_dashboard(**{**args, "index": feature.index + 1}, user=UserFactory())
