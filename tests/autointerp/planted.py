"""Planted features for autointerp tests: each feature fires on the words of one topic in real sentences.

The texts are written here (labelled test data); activations mark the topic words, so each feature's
true explanation is known and a wrong one can be chosen from another topic.
"""

from features.models import Activation
from tests.factories import FeatureFactory, SourceFactory

TOPICS = {
    "birds": (
        "parrots and other birds",
        [
            ("The green", " parrot", " repeated every word the sailor said."),
            ("A flock of", " sparrows", " landed on the fence at dawn."),
            ("The", " eagle", " circled high above the valley looking for prey."),
            ("Her pet", " canary", " sang in its cage all morning."),
            ("Two", " pigeons", " fought over a crust of bread in the square."),
            ("The", " owl", " hooted softly from the old oak tree."),
        ],
    ),
    "money": (
        "taxes, invoices and money",
        [
            ("Please pay the", " invoice", " before the end of the month."),
            ("The quarterly", " tax", " return was filed late this year."),
            ("She deposited the", " check", " at the bank on Friday."),
            ("Our", " budget", " for the project was cut in half."),
            ("He owed the", " landlord", " three months of rent."),
            ("The company reported a", " profit", " of two million dollars."),
        ],
    ),
    "weather": (
        "rain, storms and weather",
        [
            ("Heavy", " rain", " flooded the streets overnight."),
            ("A violent", " storm", " knocked down power lines."),
            ("The", " snow", " kept falling until noon."),
            ("Thick", " fog", " covered the harbour all day."),
            ("A cold", " wind", " blew in from the north."),
            ("The", " thunder", " woke the whole village."),
        ],
    ),
}


def _tokens(before: str, word: str, after: str) -> tuple[list[str], list[float]]:
    head = before.split(" ")
    head = [head[0]] + [" " + w for w in head[1:]]
    tail = [" " + w for w in after.strip().split(" ")]
    tokens = head + [word] + tail
    values = [0.0] * len(head) + [6.0] + [0.4] + [0.0] * (len(tail) - 1)
    return tokens, values


def planted_source(**source_kwargs):
    """A source with one feature per topic (indexes 0, 1, 2); returns (source, {topic: feature})."""
    source = SourceFactory(**source_kwargs)
    features = {}
    for index, (topic, (_, sentences)) in enumerate(TOPICS.items()):
        feature = FeatureFactory(source=source, model=source.model, index=index)
        for k, sentence in enumerate(sentences):
            tokens, values = _tokens(*sentence)
            scale = 1.0 - 0.1 * k  # a spread of strengths so quantiles differ
            values = [v * scale for v in values]
            Activation.objects.create(
                feature=feature, tokens=tokens, values=values, max_value=max(values),
                max_value_token_index=values.index(max(values)),
            )  # fmt: skip
        features[topic] = feature
    return source, features
