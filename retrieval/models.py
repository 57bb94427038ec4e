"""Sparse memory retrieval: passages of a source and their sparse codes.

A *passage source* is any Source whose "contexts" can be whole passages: a passage SAE (an SAE trained on
sentence embeddings, one passage = one activation) or a language-model SAE whose per-passage code is the max
activation of each feature over the passage's tokens. Composite retrieval ("strongly on A and B, weakly on C,
not D") is then one SQL aggregate over PassageCode, served by the (source, feature_index) index.
"""

from django.db import models

from features.models import Source


class Passage(models.Model):
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="passages")
    # position in the source's passage list; Activation.data_index of a passage SAE's dashboards points here
    data_index = models.IntegerField()
    data_source = models.CharField(max_length=255, blank=True)  # "<document id>#<paragraph>", e.g. brown/ca01#3
    genre = models.CharField(max_length=64, blank=True)
    text = models.TextField()
    planted = models.BooleanField(default=False)  # added by hand (tests, demos), not from the corpus

    class Meta:
        ordering = ["source_id", "data_index"]
        constraints = [models.UniqueConstraint(fields=["source", "data_index"], name="passage_source_index_uniq")]
        indexes = [models.Index(fields=["source", "genre"], name="passage_source_genre_idx")]

    def __str__(self):
        return f"{self.source_id}#{self.data_index}"


class PassageCode(models.Model):
    """One nonzero entry of a passage's sparse code. `source` repeats the passage's for the index."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    passage = models.ForeignKey(Passage, on_delete=models.CASCADE, related_name="codes")
    feature_index = models.IntegerField()
    value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["passage", "feature_index"], name="passagecode_passage_feature_uniq")
        ]
        indexes = [models.Index(fields=["source", "feature_index", "-value"], name="passagecode_source_feat_idx")]
