"""Factories for the features domain. Values are plausible but labelled as test data, never shown in the demo."""

import factory
from django.contrib.auth import get_user_model

from features import models as m


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")


class ModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Model

    id = factory.Sequence(lambda n: f"test-model-{n}")
    display_name = factory.LazyAttribute(lambda o: o.id.replace("-", " ").title())
    layers = 12
    dimension = 64


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.SourceRelease

    name = factory.Sequence(lambda n: f"test-release-{n}")
    description = "A release made by the test factories."


class SourceSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.SourceSet

    model = factory.SubFactory(ModelFactory)
    name = factory.Sequence(lambda n: f"res-t{n}")
    release = factory.SubFactory(ReleaseFactory)
    description = "Residual stream SAEs (test)"


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Source

    source_set = factory.SubFactory(SourceSetFactory)
    model = factory.LazyAttribute(lambda o: o.source_set.model)
    name = factory.LazyAttributeSequence(lambda o, n: f"{n % 12}-{o.source_set.name}")


class FeatureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Feature

    source = factory.SubFactory(SourceFactory)
    model = factory.LazyAttribute(lambda o: o.source.model)
    index = factory.Sequence(lambda n: n)
    max_act_approx = 5.5
    frac_nonzero = 0.0123
    pos_str = factory.LazyFunction(lambda: [" parrot", " birds", " feathers", " cage", " macaw"])
    pos_values = factory.LazyFunction(lambda: [0.91, 0.82, 0.77, 0.6, 0.52])
    neg_str = factory.LazyFunction(lambda: [" tax", " invoice", " quarterly", " bond", " ledger"])
    neg_values = factory.LazyFunction(lambda: [-0.71, -0.66, -0.6, -0.55, -0.4])
    freq_hist_data_bar_heights = factory.LazyFunction(lambda: [40, 31, 22, 15, 9, 5, 3, 2, 1, 1])
    freq_hist_data_bar_values = factory.LazyFunction(lambda: [0.3 + 0.55 * i for i in range(10)])
    logits_hist_data_bar_heights = factory.LazyFunction(lambda: [1, 3, 9, 20, 33, 28, 17, 8, 3, 1])
    logits_hist_data_bar_values = factory.LazyFunction(lambda: [-0.8 + 0.18 * i for i in range(10)])
    topk_cos_sim_indices = factory.LazyFunction(lambda: [])
    topk_cos_sim_values = factory.LazyFunction(lambda: [])


class ActivationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Activation

    feature = factory.SubFactory(FeatureFactory)
    tokens = factory.LazyFunction(lambda: ["The", " green", " parrot", " said", " hello", " to", " the", " birds"])
    values = factory.LazyFunction(lambda: [0.0, 0.4, 5.5, 1.2, 0.0, 0.0, 0.3, 3.1])
    max_value = 5.5
    max_value_token_index = 2
    min_value = 0.0


class ExplanationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Explanation

    feature = factory.SubFactory(FeatureFactory)
    model = factory.LazyAttribute(lambda o: o.feature.model)
    source = factory.LazyAttribute(lambda o: o.feature.source)
    description = "parrots and other talking birds"


class ListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.List

    name = factory.Sequence(lambda n: f"List {n}")
    description = "features worth a look"
    user = factory.SubFactory(UserFactory)
