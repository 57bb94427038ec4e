"""Neuronpedia wire/export names ↔ our model fields, in one place.

The API serializers, the v1 importer and the exporter all read these maps, so a name is spelled once.
Keys are Neuronpedia's names (shared/reference/neuronpedia.md §3–4); values are our field names.
Relational names (`modelId`, `layer`, `index`, `creatorId`, ...) are handled by the caller, which
resolves them to foreign keys.
"""

MODEL_FIELDS = {
    "displayName": "display_name",
    "displayNameShort": "display_name_short",
    "tlensId": "tlens_id",
    "openRouterId": "open_router_id",
    "dimension": "dimension",
    "thinking": "thinking",
    "visibility": "visibility",
    "defaultSourceSetName": "default_source_set_name",
    "defaultSourceId": "default_source_id",
    "inferenceEnabled": "inference_enabled",
    "instruct": "instruct",
    "layers": "layers",
    "neuronsPerLayer": "neurons_per_layer",
    "owner": "owner",
    "website": "website",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}

RELEASE_FIELDS = {
    "visibility": "visibility",
    "isNewUi": "is_new_ui",
    "featured": "featured",
    "description": "description",
    "descriptionShort": "description_short",
    "urls": "urls",
    "creatorEmail": "creator_email",
    "creatorName": "creator_name",
    "creatorNameShort": "creator_name_short",
    "defaultSourceSetName": "default_source_set_name",
    "defaultSourceId": "default_source_id",
    "defaultUmapSourceIds": "default_umap_source_ids",
    "createdAt": "created_at",
}

SOURCE_SET_FIELDS = {
    "hasDashboards": "has_dashboards",
    "allowInferenceSearch": "allow_inference_search",
    "visibility": "visibility",
    "description": "description",
    "type": "type",
    "creatorName": "creator_name",
    "creatorEmail": "creator_email",
    "urls": "urls",
    "defaultRange": "default_range",
    "defaultShowBreaks": "default_show_breaks",
    "showDfa": "show_dfa",
    "showCorrelated": "show_correlated",
    "showHeadAttribution": "show_head_attribution",
    "showUmap": "show_umap",
    "createdAt": "created_at",
}

SOURCE_FIELDS = {
    "hasDashboards": "has_dashboards",
    "inferenceEnabled": "inference_enabled",
    "saelensConfig": "saelens_config",
    "saelensRelease": "saelens_release",
    "saelensSaeId": "saelens_sae_id",
    "hfRepoId": "hf_repo_id",
    "hfFolderId": "hf_folder_id",
    "visibility": "visibility",
    "hasUmap": "has_umap",
    "hasUmapLogSparsity": "has_umap_log_sparsity",
    "hasUmapClusters": "has_umap_clusters",
    "num_prompts": "num_prompts",
    "num_tokens_in_prompt": "num_tokens_in_prompt",
    "dataset": "dataset",
    "notes": "notes",
    "cosSimMatchModelId": "cos_sim_match_model_id",
    "cosSimMatchSourceId": "cos_sim_match_source_id",
    "createdAt": "created_at",
}

FEATURE_FIELDS = {
    "maxActApprox": "max_act_approx",
    "hasVector": "has_vector",
    "vector": "vector",
    "vectorLabel": "vector_label",
    "vectorDefaultSteerStrength": "vector_default_steer_strength",
    "hookName": "hook_name",
    "topkCosSimIndices": "topk_cos_sim_indices",
    "topkCosSimValues": "topk_cos_sim_values",
    "neuron_alignment_indices": "neuron_alignment_indices",
    "neuron_alignment_values": "neuron_alignment_values",
    "neuron_alignment_l1": "neuron_alignment_l1",
    "correlated_neurons_indices": "correlated_neurons_indices",
    "correlated_neurons_pearson": "correlated_neurons_pearson",
    "correlated_neurons_l1": "correlated_neurons_l1",
    "correlated_features_indices": "correlated_features_indices",
    "correlated_features_pearson": "correlated_features_pearson",
    "correlated_features_l1": "correlated_features_l1",
    "neg_str": "neg_str",
    "neg_values": "neg_values",
    "pos_str": "pos_str",
    "pos_values": "pos_values",
    "frac_nonzero": "frac_nonzero",
    "freq_hist_data_bar_heights": "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values": "freq_hist_data_bar_values",
    "logits_hist_data_bar_heights": "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values": "logits_hist_data_bar_values",
    "decoder_weights_dist": "decoder_weights_dist",
    "umap_cluster": "umap_cluster",
    "umap_log_feature_sparsity": "umap_log_feature_sparsity",
    "umap_x": "umap_x",
    "umap_y": "umap_y",
    "createdAt": "created_at",
}

ACTIVATION_FIELDS = {
    "id": "id",
    "tokens": "tokens",
    "values": "values",
    "dataIndex": "data_index",
    "dataSource": "data_source",
    "maxValue": "max_value",
    "maxValueTokenIndex": "max_value_token_index",
    "minValue": "min_value",
    "dfaValues": "dfa_values",
    "dfaTargetIndex": "dfa_target_index",
    "dfaMaxValue": "dfa_max_value",
    "zQIndices": "z_q_indices",
    "zKIndices": "z_k_indices",
    "zValues": "z_values",
    "lossValues": "loss_values",
    "logitContributions": "logit_contributions",
    "binMin": "bin_min",
    "binMax": "bin_max",
    "binContains": "bin_contains",
    "qualifyingTokenIndex": "qualifying_token_index",
    "createdAt": "created_at",
}

EXPLANATION_FIELDS = {
    "id": "id",
    "description": "description",
    "notes": "notes",
    "scoreV1": "score_v1",
    "scoreV2": "score_v2",
    "umap_x": "umap_x",
    "umap_y": "umap_y",
    "umap_cluster": "umap_cluster",
    "umap_log_feature_sparsity": "umap_log_feature_sparsity",
    "typeName": "type_id",
    "explanationModelName": "explanation_model_id",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}

# config/*.jsonl rows: same columns for the four lookup tables (extra keys are ignored)
EXPLANATION_TYPE_FIELDS = {
    "name": "name",
    "displayName": "display_name",
    "description": "description",
    "featured": "featured",
    "isAttention": "is_attention",
    "settings": "settings",
    "url": "url",
    "creatorName": "creator_name",
}
EXPLANATION_MODEL_TYPE_FIELDS = {
    "name": "name",
    "displayName": "display_name",
    "description": "description",
    "featured": "featured",
    "openRouterModelId": "open_router_model_id",
    "url": "url",
    "creatorName": "creator_name",
}
EXPLANATION_SCORE_TYPE_FIELDS = {
    "name": "name",
    "displayName": "display_name",
    "description": "description",
    "featured": "featured",
    "isAttention": "is_attention",
    "scoreDescription": "score_description",
    "scorerModel": "scorer_model",
    "settings": "settings",
    "url": "url",
    "creatorName": "creator_name",
}
EXPLANATION_SCORE_MODEL_FIELDS = EXPLANATION_MODEL_TYPE_FIELDS


def to_wire(obj, field_map: dict[str, str]) -> dict:
    """Serialize a model instance under Neuronpedia's names (datetimes as ISO strings)."""
    out = {}
    for wire, attr in field_map.items():
        value = getattr(obj, attr, None)
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        out[wire] = value
    return out
