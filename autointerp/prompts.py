"""Every prompt of autointerp, in one place, versioned.

A prompt's version is stored on each Explanation (`prompt_version`) and in each score's details, so a
changed prompt gets a new version string here and old rows stay attributable. The texts follow the
published explainers/scorers (shared/reference/saelens_dashboard_delphi.md §3): OpenAI's
token/activation-pair explainer and simulator, Neuronpedia's max-activating-examples explainers,
delphi's default explainer (without its few-shot examples, which would triple the prompt for the small
local model) and delphi's detection and fuzzing classifiers.
"""

VERSIONS = {
    "oai_token-act-pair": "oai_token-act-pair@1",
    "np_max-act": "np_max-act@1",
    "np_max-act-logits": "np_max-act-logits@1",
    "eleuther_acts_top20": "delphi-default@1",
    "eleuther_recall": "delphi-detection@1",
    "eleuther_fuzz": "delphi-fuzz@1",
    "oai_simulation": "oai-simulation@1",
    "eleuther_embedding": "delphi-embedding@1",
}

OAI_EXPLAINER_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short "
    "document. Look at the parts of the document the neuron activates for and summarize in a single sentence "
    "what the neuron is looking for. Don't list examples of words.\n\n"
    "The activation format is token<tab>activation. Activation values range from 0 to 10. A neuron finding "
    "what it's looking for is represented by a non-zero activation value. The higher the activation value, "
    "the stronger the match."
)
OAI_EXPLAINER_TAIL = "Explanation of neuron behavior: the main thing this neuron does is find"

NP_MAX_ACT_SYSTEM = (
    "You are explaining a feature of a language model. You are shown text excerpts where the feature fires "
    "most strongly; the tokens where it fires are marked like <<this>>. Reply with a short explanation of "
    "what the feature detects, in a few words (at most one sentence). Do not mention the markers."
)
NP_MAX_ACT_USER = "Top activating excerpts:\n{examples}\n\nWhat does this feature detect? Explanation:"
NP_MAX_ACT_LOGITS_USER = (
    "Top activating excerpts:\n{examples}\n\nTokens this feature most promotes as the next token: {logits}\n\n"
    "What does this feature detect? Explanation:"
)

DELPHI_EXPLAINER_SYSTEM = (
    "You are a meticulous AI researcher conducting an important investigation into patterns found in "
    "language. Your task is to analyze text and provide an explanation that thoroughly encapsulates possible "
    "patterns found in it.\nGuidelines:\n\n"
    "You will be given a list of text examples on which special words are selected and between delimiters "
    "like <<this>>. If a sequence of consecutive tokens all are important, the entire sequence of tokens will "
    "be contained between delimiters <<just like this>>. How important each token is for the behavior is "
    "listed after each example in parentheses.\n\n"
    "- Try to produce a concise final description. Simply describe the text latents that are common in the "
    "examples, and what patterns you found.\n"
    "- If the examples are uninformative, you don't need to mention them. Don't focus on giving examples of "
    "important tokens, but try to summarize the patterns found in the examples.\n"
    "- Do not mention the marker tokens (<< >>) in your explanation.\n"
    "- Do not make lists of possible explanations. Keep your explanations short and concise.\n"
    "- The last line of your response must be the formatted explanation, using [EXPLANATION]:"
)

DETECTION_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher.\n\n"
    'You will be given a certain feature of text, such as "male pronouns" or "text with negative '
    'sentiment".\n\nYou will then be given several text examples. Your task is to determine which examples '
    "possess the feature.\n\nFor each example in turn, return 1 if the sentence is correctly labeled or 0 if "
    "the tokens are mislabeled. You must return your response in a valid Python list. Do not return anything "
    "else besides a Python list."
)
DETECTION_USER = "Feature explanation: {explanation}\n\nText examples:\n\n{examples}\n\nAnswer (a Python list of {n} values, 0 or 1):"

FUZZ_SYSTEM = (
    "You are an intelligent and meticulous linguistics researcher.\n\n"
    'You will be given a certain feature of text, such as "male pronouns" or "text with negative '
    'sentiment". You will be given a few examples of text that contain this feature. Portions of the sentence '
    "which strongly represent this feature are between tokens << and >>.\n\n"
    "Some examples might be mislabeled. Your task is to determine if every single token within << and >> is "
    "correctly labeled. Consider that all provided examples could be correct, none of the examples could be "
    "correct, or a mix. An example is only correct if every marked token is representative of the feature.\n\n"
    "For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. "
    "You must return your response in a valid Python list. Do not return anything else besides a Python list."
)
FUZZ_USER = DETECTION_USER
# one example per prompt, read from the logprobs of the first answer token (delphi's log_prob mode)
DETECTION_USER_SINGLE = "Feature explanation: {explanation}\n\nText example:\n\n{examples}\n\nAnswer 1 (yes) or 0 (no):"
FUZZ_USER_SINGLE = DETECTION_USER_SINGLE

SIMULATION_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short "
    "document. Look at an explanation of what the neuron does, and try to predict its activations on a "
    "particular token.\n\nThe activation format is token<tab>activation, activations go from 0 to 10. Most "
    "activations will be 0."
)
SIMULATION_TOKEN_USER = (
    "Neuron explanation: {explanation}\n\nText: {text}\n\n"
    "Activation (0 to 10) of the neuron on the token {token!r} at the end of: {prefix}\nActivation:"
)
SIMULATION_JSON_USER = (
    "Neuron explanation: {explanation}\n\nTokens: {tokens}\n\n"
    'Return a JSON object {{"activations": [...]}} with one integer from 0 to 10 per token, in order.'
)

# delphi's EmbeddingScorer asks the query side to retrieve matching sentences
EMBEDDING_QUERY = "Instruct: Retrieve sentences that could be related to the explanation.\nQuery: {explanation}"
