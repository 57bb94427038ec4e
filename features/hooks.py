"""Extension points of the features app's pages. features imports no other app (import-linter checks it), so an
app that adds to a page registers a function here from its AppConfig.ready()."""

from collections.abc import Callable

# (user, explanations) -> the dashboard's explain/score/vote controls for a signed-in user, or None
dashboard_work: list[Callable[..., dict | None]] = []
# (user) -> extra context for the account page (e.g. the user's LLM provider keys)
account_extras: list[Callable[..., dict]] = []
