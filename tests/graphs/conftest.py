"""Fixtures for graphs: the tiny model with a transcoder set trained once per session and registered."""

import pytest

from tests.client.conftest import key, np_base, other_key  # noqa: F401 (fixtures)
from tests.imports.conftest import s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.inference.conftest import TINY_ID, TINY_LOADER, tiny_lm  # noqa: F401 (fixture)

TC_PARAMS = {"width": 64, "k": 4, "tokens": 4096, "batch_size_tokens": 256, "eval_contexts": 8, "lr": 3e-3}
SET_NAME = "tc-tiny"


@pytest.fixture(scope="session")
def tset_dir(tiny_lm, tmp_path_factory):  # noqa: F811
    """A transcoder set of the tiny model trained by the runtime (the job's own training is tested separately)."""
    from inference.runtime import transcoders as T
    from inference.runtime.corpus import corpus_contexts

    contexts = corpus_contexts(tiny_lm.tokenizer, "brown", context_size=32, max_tokens=16_384)
    out = tmp_path_factory.mktemp("tsets") / SET_NAME
    T.transcoders_train(tiny_lm, contexts, T.TranscoderParams(**TC_PARAMS), out, model_name=TINY_ID)
    return out


@pytest.fixture
def tiny_model(db):
    from tests.factories import ModelFactory

    return ModelFactory(id=TINY_ID, loader=TINY_LOADER, inference_enabled=True, layers=2, dimension=64)


@pytest.fixture
def tiny_graph_model(tiny_model, tset_dir):
    """The tiny model with its transcoder set registered (one Source per layer), as add_source would."""
    from graphs.services.transcoders import transcoder_set_register

    transcoder_set_register(model=tiny_model, set_dir=tset_dir, set_name=SET_NAME, dataset="brown")
    return tiny_model


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture(scope="session")
def tiny_graph_json(tiny_lm, tset_dir):  # noqa: F811
    """One real graph of the tiny model (circuit-tracer through the runtime), as a dict."""
    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T

    rm = G.replacement_model_build(tiny_lm, T.transcoder_set_load(tset_dir, scan=TINY_ID))
    result = G.graph_generate(
        tiny_lm, rm, prompt="The capital of France is", model_id=TINY_ID, slug="capital",
        params=G.GraphParams(max_feature_nodes=200), source_set=SET_NAME,
    )  # fmt: skip
    return result.graph
