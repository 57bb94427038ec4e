"""Neuronpedia's client as researchers script it: the object helpers (`Model.new`, `SourceSet.new/get`,
`Source.upload_batch`, `Feature.get`, `SAEFeature.get`, `NPList.*`, `NPVector.*`) under `neuronpedia.api_key(...)`,
which build their request objects themselves (no `api_key=`), against a live server."""

import json

import pytest
import requests

from features.models import Feature, List, ListItem, Model, SourceSet, Visibility


def test_the_object_helpers_create_upload_read_list_and_keep_vectors_under_the_key_context(np_base, key, user,
                                                                                          served_feature):  # fmt: skip
    import neuronpedia
    from neuronpedia.np_activation import Activation as NPActivation
    from neuronpedia.np_explanation import Explanation as NPExplanation
    from neuronpedia.np_feature import Feature as NPFeature
    from neuronpedia.np_list import NPList, NPListItem
    from neuronpedia.np_model import Model as NPModel
    from neuronpedia.np_sae_feature import SAEFeature
    from neuronpedia.np_source_set import SourceSet as NPSourceSet
    from neuronpedia.np_vector import NPVector

    with neuronpedia.api_key(key):
        model = NPModel.new("pup-model-3", 3, display_name="Pup 3", url="https://example.org/pup")
        assert (model.id, model.layers, model.display_name, model.url) == (
            "pup-model-3", 3, "Pup 3", "https://example.org/pup"
        )  # fmt: skip

        made = NPSourceSet.new("puppyscope-res", "pup-model-3", "Residual - 16k", "https://example.org/p")
        assert NPSourceSet.get("pup-model-3", "puppyscope-res") == made
        assert [s.id for s in made.sources] == [f"{layer}-puppyscope-res" for layer in range(3)]

        source = made.get_source_for_layer_number(1)
        key_of = {"modelId": "pup-model-3", "source": source.id, "index": 0}
        upload = NPFeature(
            **key_of, density=0.5,
            explanations=[NPExplanation(**key_of, text="puppies")],
            activations=[NPActivation(**key_of, tokens=["A", " puppy", " barks"], values=[0.0, 4.0, 0.5])],
        )  # fmt: skip
        assert source.upload_batch([upload])["message"] == "Uploaded 1 feature(s)."

        feature = NPFeature.get("pup-model-3", source.id, 0)
        assert (feature.modelId, feature.source, int(feature.index), feature.density) == (
            "pup-model-3", source.id, 0, 0.5
        )  # fmt: skip
        assert [e.text for e in feature.explanations] == ["puppies"]
        assert [a.values for a in feature.activations] == [[0.0, 4.0, 0.5]]
        sae_feature = SAEFeature.get("pup-model-3", source.id, "0")
        assert (sae_feature.modelId, sae_feature.source, str(sae_feature.index)) == ("pup-model-3", source.id, "0")
        assert json.loads(sae_feature.jsonData)["explanations"][0]["description"] == "puppies"

        pups = NPList.new("pups", "puppy features")
        pups.add_items([NPListItem(model_id="pup-model-3", source=source.id, index="0", description="the first")])
        assert [(i.model_id, i.source, str(i.index)) for i in pups.items] == [("pup-model-3", source.id, "0")]
        fetched = NPList.get(pups.id)
        assert (fetched.name, fetched.description) == ("pups", "puppy features")
        assert [(i.model_id, i.source, str(i.index)) for i in fetched.items] == [("pup-model-3", source.id, "0")]
        assert [(x.id, x.name) for x in NPList.get_owned()] == [(pups.id, "pups")]

        values = [0.5, -0.25] * 32  # the served feature's model has dimension 64
        vector = NPVector.new(label="birdness", model_id="gpt2-small", layer_num=6, hook_type="hook_resid_post",
                              vector=values)  # fmt: skip
        got = NPVector.get("gpt2-small", vector.source, vector.index)
        assert got == vector and got.values == values and got.hook_name == "blocks.6.hook_resid_post"
        assert NPVector.get_owned() == [vector]
        got.delete()
        assert NPVector.get_owned() == []
        with pytest.raises(requests.exceptions.HTTPError, match="404"):
            NPVector.get("gpt2-small", vector.source, vector.index)

    # what the helpers wrote belongs to the key's user
    assert Model.objects.get(pk="pup-model-3").creator == user
    assert SourceSet.objects.get(model_id="pup-model-3", name="puppyscope-res").visibility == Visibility.UNLISTED
    assert Feature.objects.get(model_id="pup-model-3", source__name=source.id, index=0).creator == user
    assert (
        List.objects.get(pk=pups.id).user == user and ListItem.objects.get(list_id=pups.id).description == "the first"
    )
