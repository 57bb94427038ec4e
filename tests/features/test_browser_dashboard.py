"""The feature dashboard in headless Chromium: what a user sees on a factory-made feature.

(The README's docs/screenshot.png is taken from the demo's real SmolLM2 feature, never from this data.)
"""

import math

import pytest

from features.models import (
    Activation,
    ExplanationModelType,
    ExplanationScore,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
)
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ModelFactory,
    SourceFactory,
    SourceSetFactory,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BIRD_WORDS = {" parrot", " parrots", " macaw", " cockatoo", " budgie", " birds", " feathers", " parakeet"}
SNIPPETS = [
    "My grandmother kept a grey parrot that could whistle the national anthem and mimic the phone ringing.",
    "The macaw spread its bright red feathers and screeched at the visitors near the aviary gate.",
    "Our budgie learned to say hello after only two weeks, which surprised the whole family.",
    "Wild parrots gather in large flocks along the river banks at dawn to eat clay.",
    "He opened the cage and the cockatoo climbed onto his shoulder, bobbing its crest.",
    "Pet shops sell seed mixes for parakeet owners, along with mirrors and tiny bells.",
    "Birds such as the African grey parrot are known for their ability to learn words.",
    "The sailor's parrot sat on the rail, repeating the captain's orders word for word.",
]


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def _values(tokens: list[str], peak: float) -> list[float]:
    """Strong on bird words, a decaying tail after them: shaped like a real token-level feature."""
    out, carry = [], 0.0
    for tok in tokens:
        word = tok.rstrip(".,")
        v = peak if word in BIRD_WORDS else carry * 0.45
        carry = v
        out.append(round(v, 3))
    return out


def make_dashboard():
    model = ModelFactory(id="test-model", display_name="Test Model (factory data)", layers=12)
    source_set = SourceSetFactory(model=model, name="res-test", description="Residual stream SAEs (test data)")
    source = SourceFactory(source_set=source_set, model=model, name="6-res-test")
    feature = FeatureFactory(
        source=source,
        model=model,
        index=1337,
        max_act_approx=6.2,
        frac_nonzero=0.00431,
        pos_str=[" parrot", " parrots", " macaw", " cockatoo", " budgie", " feathers", " perch", " squawk"],
        pos_values=[1.12, 1.05, 0.98, 0.93, 0.87, 0.74, 0.69, 0.66],
        neg_str=[" invoice", " tax", " quarterly", " bond", " ledger", " audit", " fiscal", " payroll"],
        neg_values=[-0.81, -0.77, -0.72, -0.68, -0.64, -0.61, -0.58, -0.55],
        freq_hist_data_bar_values=[0.15 + 0.3 * i for i in range(20)],
        freq_hist_data_bar_heights=[int(900 * math.exp(-0.35 * i)) + 4 for i in range(20)],
        logits_hist_data_bar_values=[-0.9 + 0.09 * i for i in range(21)],
        logits_hist_data_bar_heights=[
            int(2400 * math.exp(-(((-0.9 + 0.09 * i) + 0.05) ** 2) / 0.08)) for i in range(21)
        ],
        topk_cos_sim_indices=[1337, 4021, 87, 2290, 3511],
        topk_cos_sim_values=[1.0, 0.62, 0.48, 0.41, 0.37],
    )
    for i, text in enumerate(SNIPPETS):
        tokens = _tokens(text)
        values = _values(tokens, peak=round(6.2 - 0.45 * i, 2))
        top = max(range(len(values)), key=values.__getitem__)
        ActivationFactory(
            feature=feature,
            tokens=tokens,
            values=values,
            max_value=values[top],
            max_value_token_index=top,
            bin_min=-1,
            bin_max=6.2,
            bin_contains=-1,
        )
    for j, text in enumerate(["The pet store had a budgie in the window.", "A parrot feather lay on the desk."]):
        tokens = _tokens(text)
        values = _values(tokens, peak=1.9 - 0.3 * j)
        top = max(range(len(values)), key=values.__getitem__)
        ActivationFactory(
            feature=feature,
            tokens=tokens,
            values=values,
            max_value=values[top],
            max_value_token_index=top,
            bin_min=1.24,
            bin_max=2.48,
            bin_contains=0.021,
        )
    etype = ExplanationType.objects.create(name="oai_token-act-pair", display_name="token-activation pairs")
    emodel = ExplanationModelType.objects.create(name="smollm2-1.7b-instruct", display_name="SmolLM2 1.7B")
    expl = ExplanationFactory(
        feature=feature,
        description="parrots and other talking pet birds",
        type=etype,
        explanation_model=emodel,
        score_v1=0.71,
    )
    ExplanationFactory(
        feature=feature, description="names of bird species", type=etype, explanation_model=emodel, score_v1=0.44
    )
    stype = ExplanationScoreType.objects.create(name="detection", display_name="detection")
    stype2 = ExplanationScoreType.objects.create(name="fuzz", display_name="fuzzing")
    smodel = ExplanationScoreModel.objects.create(name="smollm2-1.7b-instruct", display_name="SmolLM2 1.7B")
    ExplanationScore.objects.create(explanation=expl, score_type=stype, score_model=smodel, value=0.83)
    ExplanationScore.objects.create(explanation=expl, score_type=stype2, score_model=smodel, value=0.77)
    return feature


def test_feature_dashboard_in_a_browser(live_server, page, tmp_path):
    feature = make_dashboard()
    page.goto(f"{live_server.url}/{feature.model_id}/{feature.source.name}/{feature.index}/")

    # top activations: every stored token is on the page, in order
    strongest = Activation.objects.filter(feature=feature).order_by("-max_value").first()
    row = page.locator("#top-activations .act-row").first
    shown = row.locator(".tok").evaluate_all("els => els.map(e => e.dataset.tok)")
    assert shown == strongest.tokens
    # the max token carries the strongest shading (background alpha = value / max)
    alphas = row.locator(".tok").evaluate_all(
        "els => els.map(e => { const m = getComputedStyle(e).backgroundColor.match(/rgba?\\(([^)]*)\\)/);"
        " const p = m[1].split(',').map(Number); return p.length === 4 ? p[3] : 1; })"
    )
    assert max(range(len(alphas)), key=alphas.__getitem__) == strongest.max_value_token_index
    assert alphas[strongest.max_value_token_index] == pytest.approx(1.0, abs=0.01)
    zero = strongest.values.index(0.0)
    assert alphas[zero] == 0

    # hovering a token shows its value
    max_tok = row.locator(".tok.max")
    max_tok.hover()
    popover = page.locator("#tok-pop")
    popover.wait_for(state="visible")
    assert f"{strongest.max_value:.3f}" in popover.inner_text()
    assert max_tok.get_attribute("title") == f"{strongest.max_value:.3f}"

    # both histograms render as SVG plots with one bar per bin
    assert page.locator("#density-hist svg rect.bar").count() == len(feature.freq_hist_data_bar_heights)
    assert page.locator("#logits-hist svg rect.bar").count() == len(feature.logits_hist_data_bar_heights)
    box = page.locator("#density-hist svg").bounding_box()
    assert box["width"] > 200 and box["height"] > 80
    assert page.locator("#logits-hist svg rect.bar-neg").count() > 0

    # logit tables list the tokens; the explanation and its scores are shown
    pos_text = page.inner_text("#pos-logits")
    neg_text = page.inner_text("#neg-logits")
    assert all(s.strip() in pos_text for s in feature.pos_str)
    assert all(s.strip() in neg_text for s in feature.neg_str)
    assert page.inner_text("#headline") == "parrots and other talking pet birds"
    assert "detection" in page.inner_text("#explanations") and "0.830" in page.inner_text("#explanations")

    # interval samples are grouped
    assert "Interval 1.24 – 2.48" in page.inner_text("#top-activations")

    path = tmp_path / "dashboard.png"
    page.set_viewport_size({"width": 1366, "height": 1040})
    page.mouse.move(0, 0)
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000


def test_long_snippet_shows_a_window_around_the_max_token_and_expands(live_server, page):
    tokens = [f" w{i}" for i in range(128)]
    values = [0.0] * 128
    values[90] = 4.0
    act = ActivationFactory(tokens=tokens, values=values, max_value=4.0, max_value_token_index=90)
    f = act.feature
    page.goto(f"{live_server.url}/{f.model_id}/{f.source.name}/{f.index}/")
    row = page.locator("#top-activations .act-row").first
    visible = row.locator(".tok:visible")
    assert visible.count() < 128
    assert row.locator(".tok.max").is_visible()
    row.locator("button.more").click()
    assert visible.count() == 128


def test_api_docs_render_in_a_browser(live_server, page):
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    assert page.locator(".swagger-ui .opblock").count() > 5
    assert "memicos API" in page.inner_text(".swagger-ui .info")
