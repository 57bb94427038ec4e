"""The domain, after Neuronpedia's schema (shared/reference/neuronpedia.md §3).

Python names are snake_case; `features/fields.py` maps them to Neuronpedia's wire/export names
(camelCase plus its legacy snake_case columns), so an exported row maps 1:1 onto a table. Neuronpedia's
`layer` (a source id such as `6-res-jb`) is `Source.name` here, and rows point at their Source/Feature
by foreign key instead of repeating the (modelId, layer, index) strings.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models
from django.db.models import Q
from pgvector.django import HnswIndex, VectorField

from features.ids import new_id

USER = settings.AUTH_USER_MODEL
EMBEDDING_DIM_LOCAL = 384  # all-MiniLM-L6-v2, the offline default embedder
EMBEDDING_DIM_NEURONPEDIA = 256  # OpenAI text-embedding-3-large at 256-d, as in Neuronpedia's datasets


def float_array(**kwargs):
    return ArrayField(models.FloatField(), default=list, blank=True, **kwargs)


def int_array(**kwargs):
    return ArrayField(models.IntegerField(), default=list, blank=True, **kwargs)


def text_array(**kwargs):
    return ArrayField(models.TextField(), default=list, blank=True, **kwargs)


class Visibility(models.TextChoices):
    PUBLIC = "PUBLIC"
    UNLISTED = "UNLISTED"  # readable by anyone with the link, never listed or searched
    PRIVATE = "PRIVATE"  # readable by its creator (and staff) only


class VisibilityMixin(models.Model):
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC)
    creator = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        abstract = True


class Model(VisibilityMixin):
    id = models.SlugField(primary_key=True, max_length=128)
    display_name = models.CharField(max_length=255, blank=True)
    display_name_short = models.CharField(max_length=64, blank=True)
    tlens_id = models.CharField(max_length=255, blank=True)
    open_router_id = models.CharField(max_length=255, blank=True)
    dimension = models.IntegerField(null=True, blank=True)
    thinking = models.BooleanField(default=False)
    default_source_set_name = models.CharField(max_length=255, blank=True)
    default_source_id = models.CharField(max_length=255, blank=True)
    inference_enabled = models.BooleanField(default=False)
    instruct = models.BooleanField(default=False)
    layers = models.IntegerField(default=0)
    neurons_per_layer = models.IntegerField(default=0)
    owner = models.CharField(max_length=255, blank=True)
    website = models.CharField(max_length=512, blank=True)
    # How an inference worker loads this model: {"kind": "smollm2-gguf"|"tlens"|"hf-dir"|"tiny", ...}.
    loader = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["visibility"])]

    def __str__(self):
        return self.id


class SourceRelease(VisibilityMixin):
    name = models.CharField(primary_key=True, max_length=255)
    is_new_ui = models.BooleanField(default=False)
    featured = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    description_short = models.TextField(blank=True)
    urls = text_array()
    creator_email = models.CharField(max_length=255, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    creator_name_short = models.CharField(max_length=255, blank=True)
    default_source_set_name = models.CharField(max_length=255, blank=True)
    default_source_id = models.CharField(max_length=255, blank=True)
    default_umap_source_ids = text_array()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SourceSet(VisibilityMixin):
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="source_sets")
    name = models.CharField(max_length=255)
    release = models.ForeignKey(
        SourceRelease, null=True, blank=True, on_delete=models.SET_NULL, related_name="source_sets"
    )
    has_dashboards = models.BooleanField(default=True)
    allow_inference_search = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=64, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    creator_email = models.CharField(max_length=255, blank=True)
    urls = text_array()
    default_range = models.IntegerField(default=1)
    default_show_breaks = models.BooleanField(default=True)
    show_dfa = models.BooleanField(default=False)
    show_correlated = models.BooleanField(default=False)
    show_head_attribution = models.BooleanField(default=False)
    show_umap = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="sourceset_model_name_uniq")]

    def __str__(self):
        return f"{self.model_id}/{self.name}"


class Source(VisibilityMixin):
    """One SAE (or transcoder, or layer of neurons). `name` is Neuronpedia's source id: `6-res-jb`."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=255)
    source_set = models.ForeignKey(SourceSet, on_delete=models.CASCADE, related_name="sources")
    has_dashboards = models.BooleanField(default=True)
    inference_enabled = models.BooleanField(default=False)
    saelens_config = models.JSONField(null=True, blank=True)
    saelens_release = models.CharField(max_length=255, blank=True)
    saelens_sae_id = models.CharField(max_length=255, blank=True)
    hf_repo_id = models.CharField(max_length=255, blank=True)
    hf_folder_id = models.CharField(max_length=255, blank=True)
    # Local SAELens-format directory an inference worker loads this SAE from.
    sae_path = models.CharField(max_length=1024, blank=True)
    has_umap = models.BooleanField(default=False)
    has_umap_log_sparsity = models.BooleanField(default=False)
    has_umap_clusters = models.BooleanField(default=False)
    num_prompts = models.IntegerField(null=True, blank=True)
    num_tokens_in_prompt = models.IntegerField(null=True, blank=True)
    dataset = models.CharField(max_length=512, blank=True)
    notes = models.TextField(blank=True)
    cos_sim_match_model_id = models.CharField(max_length=128, blank=True)
    cos_sim_match_source_id = models.CharField(max_length=255, blank=True)
    # Training metrics (L0, explained variance, dead features, CE loss recovered) when trained here.
    metrics = models.JSONField(default=dict, blank=True)
    # Set by an import while some of the source's files are not loaded (failed, waiting for their features, or not
    # read yet): its pages and API say so instead of showing features without activations as if they had none.
    import_incomplete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="source_model_name_uniq")]
        indexes = [models.Index(fields=["source_set", "name"])]

    def __str__(self):
        return f"{self.model_id}/{self.name}"

    @property
    def layer_number(self) -> int | None:
        head = self.name.split("-", 1)[0]
        return int(head) if head.isdigit() else None

    @property
    def hook(self) -> str:
        """The hook the SAE reads (→ the one a transcoder writes). SAELens 6 keeps them under `metadata`; older
        configs at the top."""
        cfg = self.saelens_config or {}
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        hook_in = cfg.get("hook_name") or meta.get("hook_name") or ""
        hook_out = cfg.get("hook_name_out") or meta.get("hook_name_out")
        return f"{hook_in} → {hook_out}" if hook_in and hook_out else hook_in


class Feature(models.Model):
    """One latent of a source (Neuronpedia's `Neuron`). Unique on (source, index), hence on (model, layer, index)."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="features")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="features")
    index = models.IntegerField()
    creator = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    max_act_approx = models.FloatField(null=True, blank=True)
    has_vector = models.BooleanField(default=False)
    vector = float_array()
    vector_label = models.CharField(max_length=255, blank=True)
    vector_default_steer_strength = models.FloatField(null=True, blank=True, default=10)
    hook_name = models.CharField(max_length=255, blank=True)
    topk_cos_sim_indices = int_array()
    topk_cos_sim_values = float_array()
    neuron_alignment_indices = int_array()
    neuron_alignment_values = float_array()
    neuron_alignment_l1 = float_array()
    correlated_neurons_indices = int_array()
    correlated_neurons_pearson = float_array()
    correlated_neurons_l1 = float_array()
    correlated_features_indices = int_array()
    correlated_features_pearson = float_array()
    correlated_features_l1 = float_array()
    neg_str = text_array()
    neg_values = float_array()
    pos_str = text_array()
    pos_values = float_array()
    frac_nonzero = models.FloatField(null=True, blank=True)
    freq_hist_data_bar_heights = float_array()
    freq_hist_data_bar_values = float_array()
    logits_hist_data_bar_heights = float_array()
    logits_hist_data_bar_values = float_array()
    decoder_weights_dist = float_array()
    umap_cluster = models.IntegerField(null=True, blank=True)
    umap_log_feature_sparsity = models.FloatField(null=True, blank=True)
    umap_x = models.FloatField(null=True, blank=True)
    umap_y = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "index"], name="feature_source_index_uniq")]
        indexes = [
            # the source page's browser pages through features that have dashboards, by index
            models.Index(fields=["source", "index"], condition=Q(max_act_approx__gt=0), name="feature_browse_idx"),
            models.Index(fields=["model", "has_vector"], name="feature_model_vector_idx"),
            models.Index(fields=["creator", "has_vector"], name="feature_creator_vector_idx"),
        ]

    def __str__(self):
        return f"{self.model_id}/{self.source.name}/{self.index}"


class Activation(models.Model):
    """One top-activating text snippet of a feature, with per-token values."""

    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="activations")
    tokens = text_array()
    values = float_array()
    data_index = models.BigIntegerField(null=True, blank=True)
    data_source = models.CharField(max_length=255, blank=True)
    max_value = models.FloatField(default=0)
    max_value_token_index = models.IntegerField(default=0)
    min_value = models.FloatField(default=0)
    dfa_values = float_array()
    dfa_target_index = models.IntegerField(null=True, blank=True)
    dfa_max_value = models.FloatField(null=True, blank=True)
    z_q_indices = int_array()
    z_k_indices = int_array()
    z_values = float_array()
    loss_values = float_array()
    logit_contributions = models.TextField(blank=True)
    bin_min = models.FloatField(null=True, blank=True)
    bin_max = models.FloatField(null=True, blank=True)
    bin_contains = models.FloatField(null=True, blank=True)
    qualifying_token_index = models.IntegerField(null=True, blank=True)
    creator = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # the dashboard reads a feature's activations strongest first
        indexes = [models.Index(fields=["feature", "-max_value"], name="activation_feature_max_idx")]


class ExplanationType(models.Model):
    name = models.CharField(primary_key=True, max_length=128)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    featured = models.BooleanField(default=False)
    is_attention = models.BooleanField(default=False)
    settings = models.JSONField(null=True, blank=True)
    url = models.CharField(max_length=512, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class ExplanationModelType(models.Model):
    name = models.CharField(primary_key=True, max_length=255)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    featured = models.BooleanField(default=False)
    open_router_model_id = models.CharField(max_length=255, blank=True)
    url = models.CharField(max_length=512, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class ExplanationScoreType(models.Model):
    name = models.CharField(primary_key=True, max_length=128)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    featured = models.BooleanField(default=False)
    is_attention = models.BooleanField(default=False)
    score_description = models.TextField(blank=True)
    scorer_model = models.CharField(max_length=255, blank=True)
    settings = models.JSONField(null=True, blank=True)
    url = models.CharField(max_length=512, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class ExplanationScoreModel(models.Model):
    name = models.CharField(primary_key=True, max_length=255)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    featured = models.BooleanField(default=False)
    open_router_model_id = models.CharField(max_length=255, blank=True)
    url = models.CharField(max_length=512, blank=True)
    creator_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Explanation(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="explanations")
    # model and source repeat the feature's so that search can be scoped without a join
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    description = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIM_LOCAL, null=True, blank=True)
    embedding_256 = VectorField(dimensions=EMBEDDING_DIM_NEURONPEDIA, null=True, blank=True)
    author = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    triggered_by = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notes = models.TextField(blank=True)
    score_v1 = models.FloatField(default=0)
    score_v2 = models.FloatField(null=True, blank=True)
    umap_x = models.FloatField(null=True, blank=True)
    umap_y = models.FloatField(null=True, blank=True)
    umap_cluster = models.IntegerField(null=True, blank=True)
    umap_log_feature_sparsity = models.FloatField(null=True, blank=True)
    type = models.ForeignKey(
        ExplanationType, null=True, blank=True, on_delete=models.SET_NULL, db_column="type_name", related_name="+"
    )
    explanation_model = models.ForeignKey(
        ExplanationModelType,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_column="explanation_model_name",
        related_name="+",
    )
    prompt_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["feature", "-score_v1"], name="explanation_feature_idx"),
            models.Index(fields=["model", "source"], name="explanation_model_source_idx"),
            models.Index(fields=["type", "explanation_model"], name="explanation_type_model_idx"),
            models.Index(fields=["created_at"], name="explanation_created_idx"),
            # ef_construction 128: clustered explanation embeddings need it for recall (migration 0002 says why)
            HnswIndex(
                name="explanation_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            HnswIndex(
                name="explanation_embedding256_hnsw",
                fields=["embedding_256"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            # exact-phrase matches rank first in explanation search
            # fastupdate off: a pending list would be scanned by every phrase search (migration 0003)
            GinIndex(
                SearchVector("description", config="english"), fastupdate=False, name="explanation_description_fts"
            ),
        ]


class ExplanationScore(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    explanation = models.ForeignKey(Explanation, on_delete=models.CASCADE, related_name="scores")
    score_type = models.ForeignKey(
        ExplanationScoreType, on_delete=models.CASCADE, db_column="explanation_score_type_name", related_name="+"
    )
    score_model = models.ForeignKey(
        ExplanationScoreModel, on_delete=models.CASCADE, db_column="explanation_score_model_name", related_name="+"
    )
    value = models.FloatField()
    json_details = models.TextField(blank=True)
    initiated_by = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["explanation", "score_type", "score_model"], name="explanationscore_uniq")
        ]


class Vote(models.Model):
    voter = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="votes")
    explanation = models.ForeignKey(Explanation, on_delete=models.CASCADE, related_name="votes")
    points = models.IntegerField(default=1)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["voter", "explanation"], name="vote_uniq")]


class List(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    default_test_text = models.TextField(blank=True)
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="feature_lists")
    # Lists are shared by URL (UNLISTED); PUBLIC ones also show on the owner's page; PRIVATE only to the owner.
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.UNLISTED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-updated_at"], name="list_user_idx")]

    def __str__(self):
        return self.name


class ListItem(models.Model):
    list = models.ForeignKey(List, on_delete=models.CASCADE, related_name="items")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="list_items")
    description = models.TextField(blank=True)
    user = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at"]
        constraints = [models.UniqueConstraint(fields=["list", "feature"], name="listitem_uniq")]


class Comment(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="comments")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="feature_comments")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["feature", "created_at"], name="comment_feature_idx")]


class ListComment(models.Model):
    """A comment on a list (Neuronpedia's ListComment): anyone who may read the list may comment."""

    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    list = models.ForeignKey(List, on_delete=models.CASCADE, related_name="comments")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="list_comments")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["list", "created_at"], name="listcomment_list_idx")]


class Bookmark(models.Model):
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="bookmarks")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="bookmarks")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "feature"], name="bookmark_uniq")]


class SteerOutput(models.Model):
    class Type(models.TextChoices):
        DEFAULT = "DEFAULT"
        STEERED = "STEERED"

    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    type = models.CharField(max_length=8, choices=Type.choices)
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="steer_outputs")
    steer_special_tokens = models.BooleanField(default=False)
    input_text = models.TextField(blank=True)
    input_text_md5 = models.CharField(max_length=32, blank=True)
    input_text_chat_template = models.TextField(blank=True)
    input_text_chat_template_md5 = models.CharField(max_length=32, blank=True)
    output_text = models.TextField(blank=True)
    output_text_chat_template = models.TextField(blank=True)
    temperature = models.FloatField(default=0.5)
    num_tokens = models.IntegerField(default=32)
    freq_penalty = models.FloatField(default=0)
    seed = models.BigIntegerField(default=16)
    strength_multiplier = models.FloatField(default=1)
    steer_method = models.CharField(max_length=32, default="SIMPLE_ADDITIVE")
    version = models.IntegerField(default=1)
    logprobs = models.TextField(blank=True)
    creator = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    connected_default_output = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="connected_steer_outputs"
    )
    # Cache key over every parameter that changes the output (prompt, settings, features and strengths).
    cache_key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["model", "type", "cache_key"], name="steeroutput_cache_idx"),
            models.Index(fields=["model", "input_text_md5"], name="steeroutput_input_idx"),
        ]


class SteerOutputFeature(models.Model):
    steer_output = models.ForeignKey(SteerOutput, on_delete=models.CASCADE, related_name="steer_features")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    strength = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["steer_output", "feature", "strength"], name="steeroutputfeature_uniq")
        ]


class SavedSearch(models.Model):
    """Cache of a search-all query: same parameters ⇒ same stored result."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="+")
    query = models.TextField()
    query_key = models.CharField(max_length=64, db_index=True)
    tokens = text_array()
    source_set = models.CharField(max_length=255, blank=True)
    selected_layers = text_array()
    sort_by_indexes = int_array()
    ignore_bos = models.BooleanField(default=False)
    density_threshold = models.FloatField(default=-1)
    num_results = models.IntegerField(default=50)
    counts = models.JSONField(null=True, blank=True)
    result = models.JSONField(default=dict)
    user = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "query_key"], name="savedsearch_uniq")]


class ApiKey(models.Model):
    """An API key for the `x-api-key` header. Only a SHA-256 of the key is stored; the key is shown once."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=128, blank=True)
    prefix = models.CharField(max_length=16)  # first characters, to tell keys apart in the UI
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class Job(models.Model):
    """Progress and outcome of a long job (import, training, dashboards, autointerp…), read by UI and CLI."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        RUNNING = "RUNNING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        CANCELLED = "CANCELLED"

    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # What the job is about, by key: visibility joins these to the model and source, with the pages' rules. The
    # source (and, for an import or a training that creates it, the model) may not exist yet, so no constraint.
    model = models.ForeignKey(
        "Model", null=True, blank=True, on_delete=models.CASCADE, db_constraint=False, related_name="jobs"
    )
    source_name = models.CharField(max_length=256, blank=True)
    created_by = models.ForeignKey(USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["kind", "status"], name="job_kind_status_idx"),
            models.Index(fields=["model", "source_name"], name="job_subject_idx"),
        ]

    def __str__(self):
        return f"{self.kind} {self.subject} [{self.status}]"

    @property
    def subject(self) -> str:
        """`model/source` for people to read (never for deciding anything)."""
        return "/".join(x for x in (self.model_id, self.source_name) if x)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)


class EvalType(models.Model):
    """A kind of SAE benchmark (SAEBench's `eval_type_id`), as a row of the v1 `config/eval_type.jsonl`."""

    name = models.CharField(primary_key=True, max_length=128)
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    longer_description = models.TextField(blank=True)
    # SAEBench's JSON schema of the output: metric titles, and which ones a UI shows (`ui_default_display`)
    output_schema = models.JSONField(default=dict, blank=True)
    featured = models.BooleanField(default=False)
    url = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name


class Eval(models.Model):
    """One SAEBench result of one source: `output` is SAEBench's output JSON without `eval_result_details`, which
    is kept apart in `detailed_metrics` (as Neuronpedia stores it): a table reads the small part only."""

    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    type = models.ForeignKey(EvalType, on_delete=models.CASCADE, related_name="evals")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="evals")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="evals")
    output = models.JSONField(default=dict)
    detailed_metrics = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source_id", "type_id"]
        constraints = [models.UniqueConstraint(fields=["source", "type"], name="eval_source_type_uniq")]
        indexes = [models.Index(fields=["type", "created_at"], name="eval_type_created_idx")]

    def __str__(self):
        return f"{self.source} {self.type_id}"
